//! A clean application written the way our users' playbook writes it (namespace default-deny,
//! DNS, three tiers, bare Pods from Git without an IP) gets no finding at all. Before bare Pods
//! were endpoints, `check` said the database policy selects nothing; before rules were judged
//! for the namespace's next pod too, it told users to delete their default-deny.

use bulkhead_analysis::{Config, lint};
use bulkhead_k8s::{Input, LoadOptions, load};

fn app() -> bulkhead_k8s::Snapshot {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clean-app/app.yaml");
    let text = std::fs::read_to_string(path).expect("fixture");
    load(&[Input::new("app.yaml", text)], &LoadOptions::default())
}

#[test]
fn a_clean_application_with_a_namespace_default_deny_has_no_finding() {
    let snapshot = app();
    assert!(
        snapshot
            .diagnostics
            .iter()
            .all(|d| d.severity != bulkhead_model::Severity::Error),
        "{:#?}",
        snapshot.diagnostics
    );
    let findings: Vec<String> = lint(&snapshot.cluster, &Config::default())
        .into_iter()
        .map(|d| format!("{} {}", d.code, d.message))
        .collect();
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn bare_pods_without_an_ip_are_endpoints() {
    let snapshot = app();
    let keys: Vec<String> = snapshot
        .cluster
        .pods
        .iter()
        .filter(|p| p.is_endpoint())
        .map(|p| p.key())
        .collect();
    assert!(
        keys.contains(&"development/database".to_string()),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"development/network-test-frontend".to_string()),
        "{keys:?}"
    );
}

#[test]
fn a_succeeded_pod_is_still_not_an_endpoint() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: done, namespace: x}\nspec: {containers: [{name: c, image: i}]}\nstatus: {phase: Succeeded, podIP: 10.0.0.9}\n";
    let snapshot = load(&[Input::new("p.yaml", text)], &LoadOptions::default());
    assert!(!snapshot.cluster.pods[0].is_endpoint());
}

#[test]
fn the_ignore_annotation_silences_a_calico_policy_too() {
    let app = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clean-app/app.yaml"
    ))
    .expect("fixture");
    let policy = |annotations: &str| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: orphan\n  namespace: development\n{annotations}spec:\n  selector: tier == 'cache'\n  types: [Ingress]\n"
        )
    };
    let findings = |text: String| -> Vec<String> {
        let snapshot = load(
            &[
                Input::new("app.yaml", app.clone()),
                Input::new("p.yaml", text),
            ],
            &LoadOptions::default(),
        );
        lint(&snapshot.cluster, &Config::default())
            .into_iter()
            .filter(|d| d.code == "BH103")
            .map(|d| d.message)
            .collect()
    };
    let loud = findings(policy(""));
    assert_eq!(loud.len(), 1, "{loud:?}");
    assert!(
        loud[0].starts_with("CalicoNetworkPolicy development/orphan"),
        "{loud:?}"
    );
    let quiet = findings(policy("  annotations: {bulkhead.io/ignore: BH103}\n"));
    assert!(quiet.is_empty(), "{quiet:?}");
}
