//! BH109 broad-peer-in-narrow-policy.
//!
//! ## What it flags
//! A policy that selects specific pods but has a rule that allows everything: a rule with no
//! peers and no ports (`ingress: [{}]`), or a peer `namespaceSelector: {}` without a narrowing
//! `podSelector` (every pod of every namespace).
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
use bulkhead_model::{Diagnostic, Direction, NetworkPolicyPeer, Severity};

pub const RULE: RuleInfo = RuleInfo {
    code: "BH109",
    name: "broad-peer-in-narrow-policy",
    severity: Severity::Warning,
    summary: "a narrow policy has a rule that allows every pod or every source",
    doc: include_str!("broad_peer_in_narrow_policy.rs"),
};

pub fn check(ctx: &LintContext<'_>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for policy in &ctx.cluster.network_policies {
        if policy.pod_selector.is_empty() {
            continue;
        }
        let res = resource("NetworkPolicy", Some(&policy.namespace), &policy.name);
        for direction in [Direction::Ingress, Direction::Egress] {
            if !policy.policy_types.contains(direction) {
                continue;
            }
            for (i, rule) in policy.rules(direction).iter().enumerate() {
                let what = match (&rule.peers, &rule.ports) {
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
                };
                if let Some(what) = what {
                    out.push(ctx.finding(
                        &RULE,
                        Some(res.clone()),
                        rule.location.as_ref().or(policy.source.as_ref()),
                        format!(
                            "{res} {direction}[{i}] {what}, though the policy selects {}",
                            policy.pod_selector
                        ),
                        "name the namespaces and pods that need access",
                    ));
                }
            }
        }
    }
    out
}
