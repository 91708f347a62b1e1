//! BH105 namespace-without-default-deny.
//!
//! ## What it flags
//! A namespace with pods but no default-deny policy (a NetworkPolicy with `podSelector: {}`)
//! for ingress or for egress.
//!
//! ## Why it matters
//! Zero trust starts from deny: without a namespace-wide default, every new workload in the
//! namespace is open until someone remembers to write its policy.
//!
//! ## Example
//! Namespace `shop` has policies for `web` and `db` only; a new `debug` pod is reachable from
//! everywhere.
//!
//! ## Fix
//! `bulkhead scaffold shop` writes the default-deny and DNS pair.

use crate::lint::{LintContext, RuleInfo};
use bulkhead_model::{Diagnostic, Direction, Severity};

pub const RULE: RuleInfo = RuleInfo {
    code: "BH105",
    name: "namespace-without-default-deny",
    severity: Severity::Warning,
    summary: "a namespace with pods has no default-deny policy for ingress or egress",
    doc: include_str!("namespace_without_default_deny.rs"),
};

/// Whether `namespace` has a policy isolating all its pods for `direction`.
pub fn has_default_deny(ctx: &LintContext<'_>, namespace: &str, direction: Direction) -> bool {
    ctx.cluster.network_policies.iter().any(|p| {
        p.namespace == namespace && p.pod_selector.is_empty() && p.policy_types.contains(direction)
    })
}

pub fn check(ctx: &LintContext<'_>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for ns in &ctx.cluster.namespaces {
        if !ctx.namespace_has_pods(&ns.name) || ns.name.starts_with("kube-") {
            continue;
        }
        let missing: Vec<&str> = [
            (Direction::Ingress, "ingress"),
            (Direction::Egress, "egress"),
        ]
        .into_iter()
        .filter(|(d, _)| !has_default_deny(ctx, &ns.name, *d))
        .map(|(_, n)| n)
        .collect();
        if missing.is_empty() {
            continue;
        }
        // The Namespace object when the input has it, else the first pod in the namespace.
        let source = ns.source.as_ref().or_else(|| {
            ctx.cluster
                .pods
                .iter()
                .find(|p| p.namespace == ns.name)
                .and_then(|p| p.source.as_ref())
        });
        out.push(ctx.finding(
            &RULE,
            Some(format!("Namespace {}", ns.name)),
            source,
            format!(
                "namespace {} has no default-deny {} policy",
                ns.name,
                missing.join(" or ")
            ),
            "bulkhead scaffold NAMESPACE writes default-deny ingress and egress plus DNS",
        ));
    }
    out
}
