//! BH109 broad-peer-in-narrow-policy.
//!
//! ## What it flags
//! A policy that selects specific pods but has a rule that allows everything: a rule with no
//! peers and no ports (`ingress: [{}]`), or a peer `namespaceSelector: {}` without a narrowing
//! `podSelector` (every pod of every namespace). For Calico, a policy whose `selector` is not
//! `all()` with an Allow rule that constrains nothing on the peer side and no protocol, or a
//! peer `namespaceSelector: all()` without a `selector`; for AdminNetworkPolicy,
//! BaselineAdminNetworkPolicy and ClusterNetworkPolicy, a subject that names pods with an Allow
//! rule whose peer is every namespace (`namespaces: {}`).
//!
//! ## Why it matters
//! The policy reads as narrow (its name and selector say `db`), but one rule opens it to the
//! whole cluster. `namespaceSelector: {}` is often written meaning "this namespace".
//!
//! ## Example
//! `podSelector: {matchLabels: {app: db}}` with `from: [{namespaceSelector: {}}]`.
//!
//! ## Fix
//! Name the namespaces and pods that need access; omit `namespaceSelector` for the policy's
//! own namespace.

use crate::lint::{LintContext, RuleInfo, resource};
use bulkhead_model::{
    Action, CalicoSelector, ClusterPeer, Diagnostic, Direction, NetworkPolicyPeer, RuleMatcher,
    Severity, Subject,
};

pub const RULE: RuleInfo = RuleInfo {
    code: "BH109",
    name: "broad-peer-in-narrow-policy",
    severity: Severity::Warning,
    summary: "a narrow policy has a rule that allows every pod or every source",
    doc: include_str!("broad_peer_in_narrow_policy.rs"),
};

pub fn check(ctx: &LintContext<'_>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for policy in &ctx.cluster.policies {
        let narrow = match &policy.subject {
            Subject::PodsInNamespace(pod_selector) if !pod_selector.is_empty() => {
                Narrow::Pods(pod_selector)
            }
            Subject::Calico { selector, .. } if !matches!(selector, CalicoSelector::All) => {
                Narrow::Calico(selector)
            }
            Subject::Pods { pod_selector, .. } if !pod_selector.is_empty() => {
                Narrow::AdminPods(pod_selector)
            }
            _ => continue,
        };
        let res = || {
            resource(
                policy.kind.as_str(),
                policy.namespace.as_deref(),
                &policy.name,
            )
        };
        for direction in [Direction::Ingress, Direction::Egress] {
            if !policy.types.contains(direction) {
                continue;
            }
            for (i, rule) in policy.rules(direction).iter().enumerate() {
                if rule.action != Action::Allow {
                    continue;
                }
                let what = match &rule.matcher {
                    RuleMatcher::Kubernetes(rule) => match (&rule.peers, &rule.ports) {
                        (None, None) => Some("allows everything (no peers, no ports)".to_string()),
                        (Some(peers), _) => peers.iter().find_map(|p| match p {
                            NetworkPolicyPeer::Pods {
                                namespace_selector: Some(ns),
                                pod_selector,
                            } if ns.is_empty()
                                && pod_selector.as_ref().is_none_or(|s| s.is_empty()) =>
                            {
                                Some(
                                    "allows every pod of every namespace (namespaceSelector: {})"
                                        .to_string(),
                                )
                            }
                            _ => None,
                        }),
                        _ => None,
                    },
                    RuleMatcher::Calico(c) => {
                        let peer = match direction {
                            Direction::Ingress => &c.source,
                            Direction::Egress => &c.destination,
                        };
                        let unconstrained = peer.nets.is_empty()
                            && peer.not_nets.is_empty()
                            && peer.selector.is_none()
                            && peer.not_selector.is_none()
                            && peer.namespace_selector.is_none()
                            && peer.service_accounts.is_none()
                            && !peer.services
                            && c.destination.ports.is_empty()
                            && c.protocol.is_none();
                        if unconstrained {
                            Some("allows everything (no peer, no protocol, no port)".to_string())
                        } else if matches!(peer.namespace_selector, Some(CalicoSelector::All))
                            && peer.selector.is_none()
                        {
                            Some("allows every endpoint of every namespace (namespaceSelector: all())".to_string())
                        } else {
                            None
                        }
                    }
                    RuleMatcher::Cluster(c) => c.peers.iter().find_map(|p| match p {
                        ClusterPeer::Namespaces(ns) if ns.is_empty() => {
                            Some("allows every pod of every namespace (namespaces: {})".to_string())
                        }
                        _ => None,
                    }),
                };
                if let Some(what) = what {
                    out.push(ctx.finding(
                        &RULE,
                        Some(res()),
                        rule.location.as_ref().or(policy.source.as_ref()),
                        format!(
                            "{} {direction}[{i}] {what}, though the policy selects {narrow}",
                            res()
                        ),
                        if policy.is_kubernetes() {
                            "name the namespaces and pods that need access"
                        } else {
                            "name the namespaces and endpoints that need access"
                        },
                    ));
                }
            }
        }
    }
    out
}

/// The narrow subject of a policy, as a finding quotes it. Written out only for a finding:
/// most policies are narrow and most rules are not broad.
enum Narrow<'p> {
    /// A NetworkPolicy's `podSelector`, as written.
    Pods(&'p bulkhead_model::LabelSelector),
    /// A Calico `selector`, quoted.
    Calico(&'p CalicoSelector),
    /// An AdminNetworkPolicy's (or CNP's) `pods` subject.
    AdminPods(&'p bulkhead_model::LabelSelector),
}

impl std::fmt::Display for Narrow<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Narrow::Pods(selector) => write!(f, "{selector}"),
            Narrow::Calico(selector) => write!(f, "`{selector}`"),
            Narrow::AdminPods(selector) => write!(f, "pods `{selector}`"),
        }
    }
}
