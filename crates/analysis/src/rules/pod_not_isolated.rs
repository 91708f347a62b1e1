//! BH106 pod-not-isolated.
//!
//! ## What it flags
//! Workloads in namespaces that do use policies, whose pods no policy isolates in a direction
//! (everything is allowed that way).
//!
//! ## Why it matters
//! Coverage gaps: a namespace looks protected because it has policies, but these pods accept
//! or send anything.
//!
//! ## Example
//! Namespace `shop` isolates `app=web` for ingress; `app=cron` is selected by nothing.
//!
//! ## Fix
//! Add a default-deny policy for the namespace, or a policy selecting these pods.

use crate::lint::{LintContext, RuleInfo};
use bulkhead_model::{Diagnostic, Direction, Severity};
use rayon::prelude::*;
use std::collections::BTreeMap;

pub const RULE: RuleInfo = RuleInfo {
    code: "BH106",
    name: "pod-not-isolated",
    severity: Severity::Info,
    summary: "pods in a namespace that uses policies are not isolated in a direction",
    doc: include_str!("pod_not_isolated.rs"),
};

pub fn check(ctx: &LintContext<'_>) -> Vec<Diagnostic> {
    let cluster = ctx.cluster;
    let mut groups: BTreeMap<(String, &str), (usize, Option<&bulkhead_model::SourceLocation>)> =
        BTreeMap::new();
    // The namespaces that use NetworkPolicies, once (not every policy per pod).
    let with_policies: std::collections::HashSet<&str> = cluster
        .policies
        .iter()
        .filter(|p| p.is_kubernetes() && p.staged.is_none())
        .filter_map(|p| p.namespace.as_deref())
        .collect();
    // Each pod's two probes are independent evaluations: asked in parallel, kept in pod order.
    let states: Vec<(usize, crate::default_deny::DefaultDeny)> = ctx
        .engine
        .pod_endpoints()
        .into_par_iter()
        .filter(|&i| with_policies.contains(cluster.pods[i].namespace.as_str()))
        .map(|i| (i, crate::default_deny::pod(&ctx.engine, i)))
        .collect();
    for (i, state) in states {
        let pod = &cluster.pods[i];
        for (direction, name) in [
            (Direction::Ingress, "ingress"),
            (Direction::Egress, "egress"),
        ] {
            let denied = match direction {
                Direction::Ingress => state.ingress,
                Direction::Egress => state.egress,
            };
            if !denied {
                let entry = groups
                    .entry((pod.workload_key(), name))
                    .or_insert((0, pod.source.as_ref()));
                entry.0 += 1;
            }
        }
    }
    groups
        .into_iter()
        .map(|((workload, direction), (count, source))| {
            ctx.finding(
                &RULE,
                Some(workload.clone()),
                source,
                format!("{workload} ({count} pod{}) is not isolated for {direction}: everything is allowed that way", if count == 1 { "" } else { "s" }),
                "add a default-deny policy for the namespace or a policy selecting these pods",
            )
        })
        .collect()
}
