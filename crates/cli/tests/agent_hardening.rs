//! The agent as root, in a network namespace of the test's own: one agent per node, and
//! directories others can write refused. Runs as root (CI does); without root it prints
//! SKIPPED, and with BULKHEAD_REQUIRE_PRIVILEGED=1 (set by scripts/test.sh) it fails instead.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Netns(String);

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
    let netns = Netns(format!("bh-lock-{}", std::process::id()));
    assert!(
        Command::new("ip")
            .args(["netns", "add", &netns.0])
            .status()
            .expect("ip")
            .success()
    );
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
