//! `bulkhead.io/mode` on a policy: `audit` keeps it out of enforcement (the "what if"
//! verdict and the kernel's would-be logs still evaluate it), `enforce` or nothing enforces,
//! anything else is an error rather than a silent choice.

use bulkhead_k8s::input::Input;
use bulkhead_k8s::load::{LoadOptions, load};
use bulkhead_model::{Severity, StagedAction};

fn policy(kind_and_api: &str, mode: Option<&str>) -> String {
    let annotations = mode
        .map(|m| format!("\n  annotations: {{bulkhead.io/mode: {m}}}"))
        .unwrap_or_default();
    match kind_and_api {
        "NetworkPolicy" => format!(
            "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: p
  namespace: shop{annotations}
spec:
  podSelector: {{}}
  policyTypes: [Ingress]
"
        ),
        "AdminNetworkPolicy" => format!(
            "apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata:
  name: p{annotations}
spec:
  priority: 10
  subject: {{namespaces: {{}}}}
  ingress:
  - action: Deny
    from: [{{namespaces: {{}}}}]
"
        ),
        "GlobalNetworkPolicy" => format!(
            "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: p{annotations}
spec:
  selector: all()
  types: [Ingress]
"
        ),
        other => panic!("{other}"),
    }
}

#[test]
fn audit_takes_a_policy_of_any_api_out_of_enforcement() {
    for kind in ["NetworkPolicy", "AdminNetworkPolicy", "GlobalNetworkPolicy"] {
        for (mode, staged) in [
            (Some("audit"), Some(StagedAction::Audit)),
            (Some("enforce"), None),
            (None, None),
        ] {
            let snapshot = load(
                &[Input::new("p.yaml", policy(kind, mode))],
                &LoadOptions::default(),
            );
            assert_eq!(
                snapshot.error_count(),
                0,
                "{kind} {mode:?}: {:#?}",
                snapshot.diagnostics
            );
            assert_eq!(snapshot.cluster.policies.len(), 1, "{kind}");
            assert_eq!(
                snapshot.cluster.policies[0].staged, staged,
                "{kind} {mode:?}"
            );
            // An audited policy is named, so a review sees it is on trial.
            let noted = snapshot
                .diagnostics
                .iter()
                .any(|d| d.code == "BH030" && d.severity == Severity::Info);
            assert_eq!(
                noted,
                staged.is_some(),
                "{kind} {mode:?}: {:#?}",
                snapshot.diagnostics
            );
        }
    }
}

#[test]
fn a_mode_that_is_neither_audit_nor_enforce_is_an_error_at_its_line() {
    let snapshot = load(
        &[Input::new("p.yaml", policy("NetworkPolicy", Some("audti")))],
        &LoadOptions::default(),
    );
    let d = snapshot
        .diagnostics
        .iter()
        .find(|d| d.code == "BH019")
        .expect("BH019");
    assert_eq!(d.severity, Severity::Error);
    assert_eq!(d.location.as_ref().map(|l| l.line), Some(6), "{d:?}");
    assert!(d.message.contains("\"audti\""), "{}", d.message);
    assert!(
        d.message.contains("\"audit\" or \"enforce\""),
        "{}",
        d.message
    );
    // Not audited on a guess: the policy stays as written (enforced), the error stops CI.
    assert_eq!(snapshot.cluster.policies[0].staged, None);
}

#[test]
fn the_mode_on_something_that_is_not_a_policy_is_a_warning() {
    let text = "apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
  annotations: {bulkhead.io/mode: audit}
";
    let snapshot = load(&[Input::new("pod.yaml", text)], &LoadOptions::default());
    let d = snapshot
        .diagnostics
        .iter()
        .find(|d| d.code == "BH019")
        .expect("BH019");
    assert_eq!(d.severity, Severity::Warning);
    assert!(
        d.message.contains("only applies to policies"),
        "{}",
        d.message
    );
}
