//! Privileged tests that run in a network namespace of their own: the test re-runs itself
//! under `unshare --net`, so no table, link or address it makes outlives it, even when it
//! fails. Without root it prints SKIPPED; with BULKHEAD_REQUIRE_PRIVILEGED (set by
//! scripts/test.sh) it fails instead. Shared by the nft and index test crates.

use std::process::Command;

/// Set in the re-run process.
const INSIDE: &str = "BULKHEAD_TEST_IN_OWN_NETNS";

/// Whether this process is the one inside the test's own network namespace; otherwise runs
/// `test` again under `unshare --net` (or skips without root) and returns false.
pub fn inside_own_netns(test: &str) -> bool {
    if std::env::var_os(INSIDE).is_some() {
        return true;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let tools = Command::new("nft").arg("--version").output().is_ok()
        && Command::new("unshare").arg("--version").output().is_ok();
    if !(root && tools) {
        assert!(
            std::env::var_os("BULKHEAD_REQUIRE_PRIVILEGED").is_none(),
            "root, nft and unshare are required (BULKHEAD_REQUIRE_PRIVILEGED is set)"
        );
        eprintln!("SKIPPED: needs root, nft and unshare");
        return false;
    }
    let status = Command::new("unshare")
        .arg("--net")
        .arg(std::env::current_exe().expect("test binary"))
        .args(["--exact", test, "--nocapture"])
        .env(INSIDE, "1")
        .status()
        .expect("unshare");
    assert!(
        status.success(),
        "the test inside the network namespace failed"
    );
    false
}
