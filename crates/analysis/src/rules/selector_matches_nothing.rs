//! BH102 selector-matches-nothing.
//!
//! ## What it flags
//! A `namespaceSelector` in a rule that matches no namespace of the snapshot, or a
//! `podSelector` that matches no pod in the namespaces it looks in.
//!
//! ## Why it matters
//! The rule allows nothing, silently. The classic case is the playbook's
//! `namespaceSelector: {matchLabels: {name: kube-system}}`: real clusters label namespaces with
//! `kubernetes.io/metadata.name`, not `name`, so DNS stays blocked.
//!
//! ## Example
//! `to: [{namespaceSelector: {matchLabels: {name: kube-system}}}]`
//!
//! ## Fix
//! Select namespaces by `kubernetes.io/metadata.name`, or add the label the selector expects.
//! Only judged when the snapshot defines namespaces (or pods) to match against.

use crate::lint::{LintContext, RuleInfo, resource};
use bulkhead_model::{Diagnostic, Direction, NetworkPolicyPeer, Severity};

pub const RULE: RuleInfo = RuleInfo {
    code: "BH102",
    name: "selector-matches-nothing",
    severity: Severity::Warning,
    summary: "a rule's namespaceSelector or podSelector matches nothing in the snapshot",
    doc: include_str!("selector_matches_nothing.rs"),
};

pub fn check(ctx: &LintContext<'_>) -> Vec<Diagnostic> {
    let cluster = ctx.cluster;
    let namespaces_known = cluster.namespaces.iter().any(|n| n.defined);
    let mut out = Vec::new();
    for policy in &cluster.network_policies {
        let res = resource("NetworkPolicy", Some(&policy.namespace), &policy.name);
        for direction in [Direction::Ingress, Direction::Egress] {
            let field = if direction == Direction::Ingress {
                "from"
            } else {
                "to"
            };
            for (i, rule) in policy.rules(direction).iter().enumerate() {
                for (j, peer) in rule.peers.iter().flatten().enumerate() {
                    let NetworkPolicyPeer::Pods {
                        namespace_selector,
                        pod_selector,
                    } = peer
                    else {
                        continue;
                    };
                    let scope: Vec<&str> = match namespace_selector {
                        None => vec![policy.namespace.as_str()],
                        Some(s) => cluster
                            .namespaces
                            .iter()
                            .filter(|n| s.matches(&n.labels))
                            .map(|n| n.name.as_str())
                            .collect(),
                    };
                    let place = format!("{direction}[{i}].{field}[{j}]");
                    if let Some(s) = namespace_selector
                        && scope.is_empty()
                        && namespaces_known
                    {
                        {
                            let labels: Vec<String> = cluster
                                .namespaces
                                .iter()
                                .filter(|n| n.defined)
                                .take(3)
                                .map(|n| format!("{}: {:?}", n.name, n.labels))
                                .collect();
                            out.push(ctx.finding(
                                &RULE,
                                Some(res.clone()),
                                rule.location.as_ref().or(policy.source.as_ref()),
                                format!("{res} {place}: namespaceSelector {s} matches no namespace (namespaces carry e.g. {})", labels.join("; ")),
                                "select namespaces by kubernetes.io/metadata.name=<name>, which the API server sets on every namespace",
                            ));
                            continue;
                        }
                    }
                    if let Some(s) = pod_selector {
                        let has_pods = scope.iter().any(|ns| ctx.namespace_has_pods(ns));
                        let matched = cluster.pods.iter().any(|p| {
                            p.is_endpoint()
                                && !p.host_network
                                && scope.contains(&p.namespace.as_str())
                                && s.matches(&p.labels)
                        });
                        if has_pods && !matched {
                            out.push(ctx.finding(
                                &RULE,
                                Some(res.clone()),
                                rule.location.as_ref().or(policy.source.as_ref()),
                                format!("{res} {place}: podSelector {s} matches no pod in {}", scope.join(", ")),
                                "check the labels of the pods you mean (kubectl get pods --show-labels)",
                            ));
                        }
                    }
                }
            }
        }
    }
    out
}
