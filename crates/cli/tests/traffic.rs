//! `bulkhead audit` resolves flow records exactly (issue "Traffic you can trust").

use assert_cmd::Command;
use serde_json::Value;
use std::path::PathBuf;

fn path(p: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(p)
        .to_string_lossy()
        .into_owned()
}

fn run(args: &[&str]) -> (i32, String) {
    let output = Command::cargo_bin("bulkhead")
        .expect("binary")
        .args(args)
        .output()
        .expect("runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn the_demo_records_resolve_by_name_and_the_metadata_flow_is_denied() {
    let demo = path("../../examples/three-tier");
    let flows = path("tests/traffic/demo-flows.jsonl");
    let (code, out) = run(&["audit", &demo, "--flows", &flows, "-o", "json"]);
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["unresolved_records"], 0, "{v}");
    assert_eq!(v["allowed"], 1, "frontend -> backend on 8080: {v}");
    let metadata = v["denied"]
        .as_array()
        .expect("denied")
        .iter()
        .find(|d| d["to"] == "169.254.169.254")
        .expect("the metadata flow is denied")
        .clone();
    assert_eq!(metadata["from"], "development/deployment/api-client");
    assert!(
        metadata["denied_by"][0]
            .as_str()
            .is_some_and(|r| r.starts_with("egress: NetworkPolicy development/")),
        "{metadata}"
    );
    let (code, _) = run(&["audit", &demo, "--flows", &flows, "--fail-on-deny"]);
    assert_eq!(code, 1);
}

#[test]
fn live_pod_names_find_their_templates_and_unknown_names_stay_unresolved() {
    let demo = path("../../examples/three-tier");
    let dir = tempfile::tempdir().expect("tempdir");
    let flows = dir.path().join("flows.jsonl");
    std::fs::write(
        &flows,
        concat!(
            // A Deployment's live pod name, a StatefulSet ordinal, Calico's aggregated name.
            r#"{"src_ip": "10.1.0.1", "dst_ip": "10.1.0.2", "dst_port": 8080, "protocol": "TCP", "src": "development/frontend-5d8f7c9b4-x7k2p", "dst": "development/backend-6b9f8d7c5-abcde"}"#,
            "\n",
            r#"{"src_ip": "10.1.0.2", "dst_ip": "10.1.0.3", "dst_port": 5432, "protocol": "TCP", "src": "development/backend-6b9f8d7c5-*", "dst": "development/database-0"}"#,
            "\n",
            r#"{"src_ip": "10.1.0.9", "dst_ip": "10.1.0.3", "dst_port": 5432, "protocol": "TCP", "src": "development/cache-0"}"#,
            "\n",
        ),
    )
    .expect("write");
    let flows = flows.to_string_lossy().into_owned();
    let (_, out) = run(&["audit", &demo, "--flows", &flows, "-o", "json"]);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["allowed"], 2, "{v}");
    assert_eq!(v["unresolved_records"], 1, "{v}");
    assert!(
        v["unresolved"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("development/cache-0"))
    );
    // Unresolved records fail --fail-on-deny unless they are allowed explicitly.
    assert_eq!(
        run(&["audit", &demo, "--flows", &flows, "--fail-on-deny"]).0,
        1
    );
    assert_eq!(
        run(&[
            "audit",
            &demo,
            "--flows",
            &flows,
            "--fail-on-deny",
            "--allow-unresolved"
        ])
        .0,
        0
    );
    let (_, md) = run(&["audit", &demo, "--flows", &flows, "-o", "markdown"]);
    assert!(
        md.contains("**Unresolved**") && md.contains("development/cache-0"),
        "{md}"
    );
}
