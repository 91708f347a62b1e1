//! Default deny is decided by what a new pod would experience, whatever API wrote it.

use bulkhead_analysis::default_deny::{DefaultDeny, namespaces};
use bulkhead_engine::{Engine, EngineOptions};
use bulkhead_k8s::{Input, LoadOptions, load};

const BASE: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: kube-system}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web-0, namespace: shop, labels: {app: web}}\nspec: {containers: [{name: c, image: i}]}\nstatus: {podIP: 10.0.1.1}\n";

fn shop(policies: &str) -> DefaultDeny {
    let snapshot = load(
        &[
            Input::new("base.yaml", BASE),
            Input::new("p.yaml", policies),
        ],
        &LoadOptions::default(),
    );
    assert!(snapshot.error_count() == 0, "{:?}", snapshot.diagnostics);
    let engine = Engine::new(
        &snapshot.cluster,
        EngineOptions::for_cluster(&snapshot.cluster),
    );
    namespaces(&engine)["shop"]
}

#[test]
fn a_networkpolicy_selecting_all_pods_is_default_deny() {
    let np = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: shop}\nspec: {podSelector: {}, policyTypes: [Ingress, Egress]}\n";
    assert_eq!(
        shop(np),
        DefaultDeny {
            ingress: true,
            egress: true
        }
    );
}

#[test]
fn a_policy_for_some_pods_only_is_not() {
    let np = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: shop}\nspec: {podSelector: {matchLabels: {app: web}}, policyTypes: [Ingress]}\n";
    assert_eq!(shop(np), DefaultDeny::default());
}

#[test]
fn a_calico_global_default_deny_counts() {
    let gnp = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: default-deny}\nspec:\n  selector: projectcalico.org/namespace != 'kube-system'\n  types: [Ingress, Egress]\n";
    assert_eq!(
        shop(gnp),
        DefaultDeny {
            ingress: true,
            egress: true
        }
    );
}

#[test]
fn a_baseline_admin_network_policy_deny_counts() {
    let banp = "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: BaselineAdminNetworkPolicy\nmetadata: {name: default}\nspec:\n  subject: {namespaces: {}}\n  ingress:\n  - {name: deny, action: Deny, from: [{namespaces: {}}]}\n  egress:\n  - {name: deny, action: Deny, to: [{networks: [0.0.0.0/0]}]}\n";
    // The ingress rule denies pods only; an outside address is not denied.
    assert_eq!(
        shop(banp),
        DefaultDeny {
            ingress: false,
            egress: true
        }
    );
}

#[test]
fn an_isolating_policy_that_allows_everything_is_not_default_deny() {
    let np = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: open, namespace: shop}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress, Egress]\n  ingress: [{}]\n  egress: [{}]\n";
    assert_eq!(shop(np), DefaultDeny::default());
}

/// A selector that needs a label to be absent still selects a new pod (no labels); the probe
/// engine keeps such a policy while it leaves out those that need a label.
#[test]
fn a_policy_for_pods_without_a_label_selects_the_new_pod() {
    let np = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: unlabelled, namespace: shop}\nspec:\n  podSelector: {matchExpressions: [{key: app, operator: DoesNotExist}]}\n  policyTypes: [Ingress]\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: shop}\nspec:\n  podSelector: {matchExpressions: [{key: app, operator: NotIn, values: [db]}]}\n  policyTypes: [Egress]\n";
    assert_eq!(
        shop(np),
        DefaultDeny {
            ingress: true,
            egress: true
        }
    );
}
