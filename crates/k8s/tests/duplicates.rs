//! An object defined twice: the first definition is used, and the second is still checked, so
//! a mistake in it is never hidden behind the duplicate warning.

use bulkhead_k8s::input::Input;
use bulkhead_k8s::load::{LoadOptions, load};
use bulkhead_model::Severity;

const GOOD: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - ports: [{port: 80}]
";

const BAD: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - ports: [{port: 70000}]
";

fn codes(snapshot: &bulkhead_k8s::load::Snapshot) -> Vec<(&'static str, Severity, String)> {
    snapshot
        .diagnostics
        .iter()
        .map(|d| {
            let at = d
                .location
                .as_ref()
                .map(|l| format!("{}:{}", l.file, l.line))
                .unwrap_or_default();
            (d.code, d.severity, at)
        })
        .collect()
}

#[test]
fn across_files_the_first_wins_and_the_second_is_still_validated() {
    let snapshot = load(
        &[Input::new("a.yaml", GOOD), Input::new("b.yaml", BAD)],
        &LoadOptions::default(),
    );
    let found = codes(&snapshot);
    assert!(
        found.contains(&("BH010", Severity::Warning, "b.yaml:3".to_string())),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|(code, severity, at)| *severity == Severity::Error
                && at == "b.yaml:7"
                && code.starts_with("BH")),
        "the invalid port in the second definition is reported: {found:?}"
    );
    assert_eq!(snapshot.cluster.policies.len(), 1);
    let ports = format!("{:?}", snapshot.cluster.policies[0]);
    assert!(
        ports.contains("80"),
        "the first definition is used: {ports}"
    );
}

#[test]
fn in_one_file_a_second_definition_is_an_error_and_is_not_used() {
    let text = format!("{GOOD}---\n{BAD}");
    let snapshot = load(&[Input::new("a.yaml", text)], &LoadOptions::default());
    let found = codes(&snapshot);
    assert!(
        found.contains(&("BH010", Severity::Error, "a.yaml:11".to_string())),
        "{found:?}"
    );
    assert!(
        found.iter().any(|(code, severity, at)| *code != "BH010"
            && *severity == Severity::Error
            && at == "a.yaml:15"),
        "{found:?}"
    );
    assert_eq!(snapshot.cluster.policies.len(), 1);
}

#[test]
fn a_duplicate_workload_does_not_add_a_second_pod() {
    let pod = "apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: shop, labels: {app: web}}
spec: {containers: [{name: web, image: web}]}
status: {podIP: 10.0.0.5}
";
    let snapshot = load(
        &[Input::new("a.yaml", pod), Input::new("b.yaml", pod)],
        &LoadOptions::default(),
    );
    assert_eq!(snapshot.cluster.pods.len(), 1, "{:?}", codes(&snapshot));
}
