//! The agent as root, in a network namespace of the test's own: one agent per node, and
//! directories others can write refused. Runs as root (CI does); without root it prints
//! SKIPPED, and with BULKHEAD_REQUIRE_PRIVILEGED=1 (set by scripts/test.sh) it fails instead.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Netns(String);

impl Netns {
    /// A network namespace of this test (`bh-TAG-PID`), deleted when dropped.
    fn add(tag: &str) -> Self {
        let netns = Self(format!("bh-{tag}-{}", std::process::id()));
        assert!(
            Command::new("ip")
                .args(["netns", "add", &netns.0])
                .status()
                .expect("ip")
                .success()
        );
        netns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn privileged() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let tools = [("nft", "--version"), ("ip", "-V")].iter().all(|(t, f)| {
        Command::new(t)
            .arg(f)
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !(root && tools) {
        assert!(
            std::env::var_os("BULKHEAD_REQUIRE_PRIVILEGED").is_none(),
            "root, nft and ip are required (BULKHEAD_REQUIRE_PRIVILEGED is set)"
        );
        eprintln!("SKIPPED: needs root, nft and ip");
    }
    root && tools
}

const MANIFEST: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x}\nspec: {nodeName: n1, containers: [{name: c, image: i}]}\nstatus: {podIP: 10.1.2.3}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: x}\nspec: {podSelector: {}}\n";

fn agent(netns: &str, manifests: &std::path::Path, state: &std::path::Path) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", netns])
        .arg(support::bin())
        .args([
            "agent",
            "--node",
            "n1",
            "--interface",
            "x/a=veth-a",
            "--manifests",
        ])
        .arg(manifests)
        .arg("--state-dir")
        .arg(state);
    c
}

#[test]
fn a_second_agent_on_the_node_exits_and_the_first_keeps_its_table() {
    if !privileged() {
        return;
    }
    let netns = Netns::add("lock");
    let dir = tempfile::tempdir().expect("temp");
    let manifests = dir.path().join("manifests");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&manifests).expect("dir");
    std::fs::write(manifests.join("all.yaml"), MANIFEST).expect("write");
    let first = Killed(
        agent(&netns.0, &manifests, &state)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("first agent"),
    );
    let table = || {
        Command::new("ip")
            .args([
                "netns", "exec", &netns.0, "nft", "list", "table", "inet", "bulkhead",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !table() {
        assert!(
            Instant::now() < deadline,
            "the first agent never installed its table"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = agent(&netns.0, &manifests, &state)
        .output()
        .expect("second agent");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "the second agent must exit");
    assert!(stderr.contains("another bulkhead agent (pid"), "{stderr}");
    assert!(table(), "the first agent's table stays");
    drop(first);
    // World-writable manifests: refused with the reason, before anything is applied.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&manifests, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let refused = agent(&netns.0, &manifests, &state).output().expect("agent");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("can be written by any user"), "{stderr}");
}

/// Symlinks planted where root writes (the break-glass marker, the metrics file's temporary
/// name) are replaced by the agent's own file, never followed: their targets stay as they were.
#[test]
fn symlinks_planted_at_the_marker_or_the_metrics_temp_file_leave_their_targets_untouched() {
    if !privileged() {
        return;
    }
    let netns = Netns::add("links");
    let dir = tempfile::tempdir().expect("temp");
    let manifests = dir.path().join("manifests");
    let state = dir.path().join("state");
    let metrics_dir = dir.path().join("metrics");
    for d in [&manifests, &state, &metrics_dir] {
        std::fs::create_dir_all(d).expect("dir");
    }
    std::fs::write(manifests.join("all.yaml"), MANIFEST).expect("write");
    let target = dir.path().join("precious");
    std::fs::write(&target, "keep me\n").expect("target");
    let untouched = || std::fs::read_to_string(&target).ok().as_deref() == Some("keep me\n");

    // The marker: `agent break-glass on` writes it.
    let marker = state.join("break-glass");
    std::os::unix::fs::symlink(&target, &marker).expect("symlink");
    let on = Command::new("ip")
        .args(["netns", "exec", &netns.0])
        .arg(support::bin())
        .args(["agent", "break-glass", "on", "--state-dir"])
        .arg(&state)
        .output()
        .expect("break-glass on");
    assert!(
        on.status.success(),
        "{}",
        String::from_utf8_lossy(&on.stderr)
    );
    let marker_meta = std::fs::symlink_metadata(&marker).expect("marker");
    assert!(
        marker_meta.file_type().is_file(),
        "the marker is the agent's own file now"
    );
    assert!(untouched(), "the marker's symlink target was not written");
    std::fs::remove_file(&marker).expect("break-glass off by hand");

    // The metrics file's temporary name: `ip netns exec` execs the agent, so the child's pid
    // is the agent's, and with it the temporary name.
    let metrics = metrics_dir.join("bulkhead.prom");
    let mut command = agent(&netns.0, &manifests, &state);
    command.arg("--metrics-file").arg(&metrics);
    let running = Killed(
        command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("agent"),
    );
    let tmp = metrics_dir.join(format!(".bulkhead.prom.{}.tmp", running.0.id()));
    std::os::unix::fs::symlink(&target, &tmp).expect("symlink");
    // Planted before the refresh after the first (every 5 s): wait for a write after it.
    let planted = std::time::SystemTime::now();
    let deadline = Instant::now() + Duration::from_secs(15);
    let written_after = || {
        std::fs::symlink_metadata(&metrics)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t > planted)
    };
    while !written_after() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(running);
    assert!(
        written_after(),
        "the agent wrote its metrics file after the plant"
    );
    let text = std::fs::read_to_string(&metrics).expect("metrics");
    assert!(text.contains("bulkhead_table_installed 1"), "{text}");
    assert!(
        std::fs::symlink_metadata(&tmp).is_err(),
        "the agent used the planted temporary name (and removed the link, not its target)"
    );
    assert!(
        untouched(),
        "the temporary name's symlink target was not written"
    );
}
