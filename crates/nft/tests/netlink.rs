//! The netlink reads the agent's repair rests on, against the real kernel: the generation id
//! moves with every transaction of any process, and the fingerprint of Bulkhead's table moves
//! with every change to it (a rule added or replaced, a chain flushed, a mode map flipped) but
//! not with changes elsewhere. Runs as root in a network namespace of its own (the test re-runs
//! itself under `unshare --net`, so nothing outlives it); without root it prints SKIPPED, and
//! with BULKHEAD_REQUIRE_PRIVILEGED=1 (set by scripts/test.sh) it fails instead.

use bulkhead_nft::netlink::NfTables;
use std::process::Command;

const INSIDE: &str = "BULKHEAD_NETLINK_TEST_INSIDE";

const TABLE: &str = "table inet bulkhead {
  map break_glass { type nf_proto : verdict; }
  map deny_verdict { type nf_proto : verdict; elements = { ipv4 : drop, ipv6 : drop }; }
  set s_peers { type ipv4_addr; flags interval; elements = { 10.0.0.0/24 }; }
  chain input {
    type filter hook input priority filter; policy accept;
    counter
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    meta nfproto vmap @break_glass
    ip saddr @s_peers counter accept
    counter meta nfproto vmap @deny_verdict
  }
}
";

fn nft(script: &str) {
    use std::io::Write as _;
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("nft");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write");
    assert!(child.wait().expect("nft").success(), "nft -f: {script}");
}

fn handle_of_first_rule() -> String {
    let out = Command::new("nft")
        .args(["-a", "list", "chain", "inet", "bulkhead", "forward"])
        .output()
        .expect("nft list");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.contains("@s_peers"))
        .and_then(|l| l.rsplit("# handle ").next())
        .expect("a handle")
        .trim()
        .to_string()
}

#[test]
fn generation_and_fingerprint_follow_changes_to_the_table_only() {
    if std::env::var_os(INSIDE).is_none() {
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
            return;
        }
        let status = Command::new("unshare")
            .arg("--net")
            .arg(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "generation_and_fingerprint_follow_changes_to_the_table_only",
                "--nocapture",
            ])
            .env(INSIDE, "1")
            .status()
            .expect("unshare");
        assert!(
            status.success(),
            "the test inside the network namespace failed"
        );
        return;
    }

    let mut kernel = NfTables::open().expect("netlink socket");
    let small = ["break_glass", "deny_verdict"];
    assert_eq!(kernel.fingerprint("bulkhead", &small).expect("read"), None);

    let before = kernel.generation().expect("generation");
    nft(TABLE);
    let loaded = kernel.generation().expect("generation");
    assert_eq!(
        loaded,
        before.wrapping_add(1),
        "one nft -f is one transaction"
    );
    let print = kernel.fingerprint("bulkhead", &small).expect("read");
    assert!(print.is_some());
    assert_eq!(
        kernel.fingerprint("bulkhead", &small).expect("read"),
        print,
        "reading twice gives the same fingerprint"
    );
    assert_eq!(
        kernel.generation().expect("generation"),
        loaded,
        "reads commit nothing"
    );

    // Traffic moves the counters, not the fingerprint.
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status();
    assert!(up.is_ok_and(|s| s.success()), "ip link set lo up");
    let ping = Command::new("ping")
        .args(["-c", "2", "-i", "0.2", "-W", "1", "127.0.0.1"])
        .output()
        .expect("ping");
    assert!(ping.status.success(), "ping over lo");
    let counted = Command::new("nft")
        .args(["list", "chain", "inet", "bulkhead", "input"])
        .output()
        .expect("nft list");
    assert!(
        !String::from_utf8_lossy(&counted.stdout).contains("packets 0 "),
        "the input counter saw the pings"
    );
    assert_eq!(kernel.fingerprint("bulkhead", &small).expect("read"), print);

    // Another table: the generation moves, Bulkhead's fingerprint does not.
    nft("table inet other { chain c { type filter hook forward priority 10; policy accept; }; }\n");
    assert_ne!(kernel.generation().expect("generation"), loaded);
    assert_eq!(kernel.fingerprint("bulkhead", &small).expect("read"), print);

    // Every kind of change to Bulkhead's table moves the fingerprint.
    let mut seen = vec![print];
    let mut changed = |what: &str, script: String| {
        nft(&script);
        let now = kernel.fingerprint("bulkhead", &small).expect("read");
        assert!(
            !seen.contains(&now),
            "{what} did not change the fingerprint"
        );
        seen.push(now);
    };
    changed(
        "a rule inserted",
        "insert rule inet bulkhead forward accept\n".into(),
    );
    changed(
        "a rule replaced in place",
        format!(
            "replace rule inet bulkhead forward handle {} ip saddr @s_peers counter drop\n",
            handle_of_first_rule()
        ),
    );
    changed(
        "break-glass flipped",
        "add element inet bulkhead break_glass { ipv4 : accept }\n".into(),
    );
    changed(
        "audit flipped",
        "flush map inet bulkhead deny_verdict\nadd element inet bulkhead deny_verdict { ipv4 : return, ipv6 : return }\n".into(),
    );
    changed(
        "a chain flushed",
        "flush chain inet bulkhead forward\n".into(),
    );
    changed("a chain added", "add chain inet bulkhead extra\n".into());
    nft("delete table inet bulkhead\n");
    assert_eq!(kernel.fingerprint("bulkhead", &small).expect("read"), None);
}
