//! BH113 policy-sprawl.
//!
//! ## What it flags
//! A namespace with more NetworkPolicies than `thresholds.policies_per_namespace` (default
//! 10), or more cluster-wide policies (GlobalNetworkPolicy, AdminNetworkPolicy, ...) than
//! `thresholds.global_policies` (default 20).
//!
//! ## Why it matters
//! Policies are additive and easy to add, hard to remove: past a handful per namespace nobody
//! can tell what the namespace allows any more, and reviews stop catching mistakes.
//!
//! ## Example
//! One policy per incident, never consolidated.
//!
//! ## Fix
//! Merge policies that select the same pods; delete orphaned and redundant ones (BH103, BH107,
//! BH108 point at them).

use crate::lint::{LintContext, RuleInfo};
use bulkhead_model::{Diagnostic, Severity};
use std::collections::HashMap;

pub const RULE: RuleInfo = RuleInfo {
    code: "BH113",
    name: "policy-sprawl",
    severity: Severity::Warning,
    summary: "too many policies in a namespace or cluster-wide",
    doc: include_str!("policy_sprawl.rs"),
};

pub fn check(ctx: &LintContext<'_>) -> Vec<Diagnostic> {
    let t = &ctx.config.thresholds;
    // Per namespace: how many policies, and the last one (where the finding points).
    let mut per_namespace: HashMap<&str, (usize, Option<&bulkhead_model::SourceLocation>)> =
        HashMap::new();
    for p in ctx.cluster.policies.iter().filter(|p| p.staged.is_none()) {
        if let Some(ns) = &p.namespace {
            let (count, last) = per_namespace.entry(ns).or_default();
            *count += 1;
            *last = p.source.as_ref();
        }
    }
    // Hashed, then the few namespaces over the threshold sorted: a BTreeMap compared names
    // 300,000 times for 50,000 namespaces.
    let mut crowded: Vec<_> = per_namespace
        .into_iter()
        .filter(|(_, (count, _))| *count > t.policies_per_namespace)
        .collect();
    crowded.sort_unstable_by_key(|(ns, _)| *ns);
    let mut out: Vec<Diagnostic> = crowded
        .into_iter()
        .map(|(ns, (count, last))| {
            ctx.finding(
                &RULE,
                Some(format!("Namespace {ns}")),
                last,
                format!(
                    "namespace {ns} has {count} policies (threshold {})",
                    t.policies_per_namespace
                ),
                "merge policies that select the same pods; delete orphaned and redundant ones",
            )
        })
        .collect();
    let global: Vec<_> = ctx
        .cluster
        .policies
        .iter()
        .filter(|p| p.namespace.is_none() && p.staged.is_none())
        .collect();
    if global.len() > t.global_policies {
        out.push(ctx.finding(
            &RULE,
            None,
            global.last().and_then(|p| p.source.as_ref()),
            format!(
                "{} cluster-wide policies (threshold {})",
                global.len(),
                t.global_policies
            ),
            "consolidate cluster-wide policies into fewer, clearly ordered ones",
        ));
    }
    out
}
