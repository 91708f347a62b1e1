//! BH104 metadata-service-reachable.
//!
//! ## What it flags
//! Egress-isolated pods that can still reach the cloud metadata service 169.254.169.254,
//! typically through an egress rule to `0.0.0.0/0` (or any CIDR containing it) without an
//! `except` for it. Decided by asking the engine for the flow, so the open rule may be an
//! `ipBlock`, Calico `nets`, or the `networks` of an AdminNetworkPolicy,
//! BaselineAdminNetworkPolicy or ClusterNetworkPolicy.
//!
//! ## Why it matters
//! The metadata service hands out the node's cloud credentials; a compromised pod that can
//! reach it can act as the node. Egress allowlists are written to prevent exactly that.
//!
//! ## Example
//! `to: [{ipBlock: {cidr: 0.0.0.0/0}}]`
//!
//! ## Fix
//! `ipBlock: {cidr: 0.0.0.0/0, except: [169.254.169.254/32]}`, or a higher-priority deny
//! (AdminNetworkPolicy, Calico GlobalNetworkPolicy).

use crate::lint::{LintContext, RuleInfo};
use bulkhead_engine::{Endpoint, Flow};
use bulkhead_model::{Diagnostic, Direction, Protocol, Severity};
use rayon::prelude::*;
use std::collections::BTreeMap;

pub const RULE: RuleInfo = RuleInfo {
    code: "BH104",
    name: "metadata-service-reachable",
    severity: Severity::Error,
    summary: "egress-isolated pods can reach the cloud metadata service 169.254.169.254",
    doc: include_str!("metadata_service_reachable.rs"),
};

pub const METADATA: &str = "169.254.169.254";

pub fn check(ctx: &LintContext<'_>) -> Vec<Diagnostic> {
    let Ok(ip) = METADATA.parse() else {
        return Vec::new();
    };
    let mut by_rule: BTreeMap<
        (String, String, Option<bulkhead_model::SourceLocation>),
        BTreeMap<String, usize>,
    > = BTreeMap::new();
    // The egress-isolated pods that reach the address, asked in parallel, in pod order.
    let reaching: Vec<(usize, bulkhead_engine::Verdict)> = ctx
        .engine
        .pod_endpoints()
        .into_par_iter()
        .filter_map(|i| {
            ctx.engine
                .applying_policy_refs(i, Direction::Egress)
                .next()?;
            let flow = Flow {
                src: Endpoint::Pod(i),
                dst: Endpoint::External(ip),
                protocol: Protocol::Tcp,
                port: Some(80),
                icmp: None,
            };
            // Explained only when allowed: the finding names the rule that allows it.
            ctx.engine
                .allows(&flow)
                .then(|| (i, ctx.engine.evaluate(&flow)))
        })
        .collect();
    for (i, verdict) in reaching {
        let Some(rule) = verdict.egress.decided_by.last() else {
            continue;
        };
        let res = ctx.engine_resource(rule.kind, rule.namespace.as_deref(), &rule.name);
        let pod = &ctx.cluster.pods[i];
        *by_rule
            .entry((
                res,
                rule.rule.clone().unwrap_or_default(),
                rule.source.clone(),
            ))
            .or_default()
            .entry(pod.workload_key())
            .or_default() += 1;
    }
    by_rule
        .into_iter()
        .map(|((res, rule, source), workloads)| {
            ctx.finding(&RULE, Some(res.clone()), source.as_ref(), format!("{res} {rule} lets {} reach the cloud metadata service {METADATA}", super::list(&workloads)), "add except: [169.254.169.254/32] to the ipBlock, or deny it in a tier that runs first")
        })
        .collect()
}
