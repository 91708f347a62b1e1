//! `bulkhead blast-radius` and the blast-radius part of `diff`, on the demo (issue "Blast
//! radius": a compromised frontend reaches the backend in 1 hop and the database in 2).

use assert_cmd::Command;
use serde_json::Value;
use std::path::PathBuf;

fn example(path: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(path)
        .to_string_lossy()
        .into_owned()
}

fn json(args: &[&str]) -> (i32, Value) {
    let output = Command::cargo_bin("bulkhead")
        .expect("binary")
        .args(args)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}{}", String::from_utf8_lossy(&output.stderr)));
    (output.status.code().unwrap_or(-1), value)
}

#[test]
fn a_compromised_frontend_reaches_the_backend_in_one_hop_and_the_database_in_two() {
    let demo = example("three-tier");
    let (code, report) = json(&[
        "blast-radius",
        &demo,
        "--from",
        "development/deployment/frontend",
        "--target",
        "app=database",
        "-o",
        "json",
    ]);
    assert_eq!(code, 0);
    let w = &report["workloads"][0];
    assert_eq!(w["workload"], "development/deployment/frontend");
    assert_eq!(w["reached_workloads"]["development/deployment/backend"], 1);
    assert_eq!(
        w["reached_workloads"]["development/statefulset/database"],
        2
    );
    let path = w["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .find(|p| p["target"] == "development/database")
        .expect("a path to the database");
    let hops = path["hops"].as_array().expect("hops");
    assert_eq!(hops.len(), 2);
    assert_eq!(hops[0]["to"], "development/backend");
    assert_eq!(hops[1]["ports"], "5432");
    for hop in hops {
        let rules: Vec<&str> = hop["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            rules.iter().any(|r| r.starts_with("egress: NetworkPolicy")),
            "{rules:?}"
        );
        assert!(
            rules
                .iter()
                .any(|r| r.starts_with("ingress: NetworkPolicy")),
            "{rules:?}"
        );
    }
    let score = report["score"].as_f64().expect("score");
    assert!((0.0..=1.0).contains(&score));
}

#[test]
fn diff_reports_the_grown_reach_and_the_new_path() {
    let demo = example("three-tier");
    let change = example("changes/demo-frontend-to-database.yaml");
    let (code, diff) = json(&[
        "diff", "--base", &demo, "--head", &demo, &change, "-o", "json",
    ]);
    assert_eq!(code, 0);
    let radius = &diff["blast_radius"];
    assert!(radius["score_after"].as_f64() > radius["score_before"].as_f64());
    let frontend = radius["grown"]
        .as_array()
        .expect("grown")
        .iter()
        .find(|g| g["workload"] == "development/deployment/frontend")
        .expect("frontend's reach grew");
    assert_eq!(
        frontend["newly_reached"]["development/statefulset/database"],
        1
    );
    let path = &frontend["paths"][0];
    assert_eq!(path["target"], "development/database");
    assert_eq!(path["hops"].as_array().map(Vec::len), Some(1));
    // The blast radius after the change, asked directly, agrees.
    let (_, after) = json(&[
        "blast-radius",
        &demo,
        &change,
        "--from",
        "development/deployment/frontend",
        "-o",
        "json",
    ]);
    assert_eq!(
        after["workloads"][0]["reached_workloads"]["development/statefulset/database"],
        1
    );
}

#[test]
fn crown_jewels_are_targets_without_a_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(format!("{}/three-tier.yaml", example("three-tier")))
        .expect("demo")
        .replace(
            "  name: database\n  namespace: development\n",
            "  name: database\n  namespace: development\n  annotations: {bulkhead.io/crown-jewel: \"true\"}\n",
        );
    assert!(text.contains("crown-jewel"), "the demo's StatefulSet moved");
    std::fs::write(dir.path().join("demo.yaml"), text).expect("write");
    let (_, report) = json(&[
        "blast-radius",
        &dir.path().to_string_lossy(),
        "--from",
        "development/deployment/frontend",
        "-o",
        "json",
    ]);
    let targets: Vec<&str> = report["workloads"][0]["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .filter_map(|p| p["target"].as_str())
        .collect();
    assert!(targets.contains(&"development/database"), "{targets:?}");
}
