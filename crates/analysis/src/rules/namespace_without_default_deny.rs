//! BH105 namespace-without-default-deny.
//!
//! ## What it flags
//! A namespace with pods where a new pod would not be default-denied for ingress or for egress.
//! Decided with the engine: a pod with no labels is added to the namespace and must be neither
//! reachable from nor able to reach an outside address on an unused port. A NetworkPolicy with
//! `podSelector: {}`, a Calico GlobalNetworkPolicy or tier, or a BaselineAdminNetworkPolicy all
//! count; a policy that isolates but allows everything does not.
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

pub fn check(ctx: &LintContext<'_>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let judged = |ns: &bulkhead_model::Namespace| {
        ctx.namespace_has_pods(&ns.name) && !ns.name.starts_with("kube-")
    };
    let defaults = crate::default_deny::namespaces_where(&ctx.engine, judged);
    for ns in &ctx.cluster.namespaces {
        if !judged(ns) {
            continue;
        }
        let missing: Vec<&str> = [
            (Direction::Ingress, "ingress"),
            (Direction::Egress, "egress"),
        ]
        .into_iter()
        .filter(|(d, _)| {
            let state = defaults.get(&ns.name).copied().unwrap_or_default();
            match d {
                Direction::Ingress => !state.ingress,
                Direction::Egress => !state.egress,
            }
        })
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
