//! BH101 missing-dns-egress.
//!
//! ## What it flags
//! Pods that are isolated for egress but cannot reach the cluster's DNS pods (label
//! `k8s-app: kube-dns`) on UDP/53 and TCP/53, as the engine decides it. Because the engine
//! decides it, the isolation may come from any API: a NetworkPolicy, a Calico policy, or a
//! Deny in an AdminNetworkPolicy, BaselineAdminNetworkPolicy or ClusterNetworkPolicy; the
//! finding names the policy that isolates the pods.
//!
//! ## Why it matters
//! Every name lookup fails: the application breaks in ways that look unrelated to policy.
//! A default-deny egress policy without a DNS allow is the most common rollout outage.
//!
//! ## Example
//! `podSelector: {}` with `policyTypes: [Egress]` and no rule to `kube-system`.
//!
//! ## Fix
//! Add an egress rule to `namespaceSelector: {matchLabels: {kubernetes.io/metadata.name:
//! kube-system}}` + `podSelector: {matchLabels: {k8s-app: kube-dns}}` on UDP and TCP 53
//! (`bulkhead scaffold NAMESPACE` writes it).

use crate::lint::{LintContext, RuleInfo};
use bulkhead_engine::{Endpoint, Flow};
use bulkhead_model::{Diagnostic, Direction, Protocol, Severity};
use rayon::prelude::*;
use std::collections::BTreeMap;

pub const RULE: RuleInfo = RuleInfo {
    code: "BH101",
    name: "missing-dns-egress",
    severity: Severity::Error,
    summary: "egress-isolated pods that cannot reach cluster DNS on UDP and TCP 53",
    doc: include_str!("missing_dns_egress.rs"),
};

/// The isolating policy a finding is reported at.
type PolicyKey = (String, Option<bulkhead_model::SourceLocation>);

pub fn check(ctx: &LintContext<'_>) -> Vec<Diagnostic> {
    let cluster = ctx.cluster;
    let dns = crate::dns::servers(&ctx.engine);
    if dns.is_empty() {
        return Vec::new();
    }
    // Each egress-isolated pod is asked on its own, in parallel: at 100,000 pods these four
    // evaluations a pod were the longest rule of a check. The pod, its first isolating
    // policy and what it misses, in pod order.
    let missing_per_pod: Vec<(usize, &bulkhead_model::Policy, Vec<&str>)> = ctx
        .engine
        .pod_endpoints()
        .into_par_iter()
        .filter_map(|i| {
            let first = ctx
                .engine
                .applying_policy_refs(i, Direction::Egress)
                .next()?;
            let reaches = |protocol: Protocol| {
                dns.iter().any(|&d| {
                    ctx.engine.allows(&Flow {
                        src: Endpoint::Pod(i),
                        dst: Endpoint::Pod(d),
                        protocol,
                        port: Some(53),
                        icmp: None,
                    })
                })
            };
            let missing: Vec<&str> = [(Protocol::Udp, "UDP/53"), (Protocol::Tcp, "TCP/53")]
                .into_iter()
                .filter(|(p, _)| !reaches(*p))
                .map(|(_, n)| n)
                .collect();
            (!missing.is_empty()).then_some((i, first, missing))
        })
        .collect();
    // Policy that isolates -> (workload -> pods), missing protocols.
    let mut by_policy: BTreeMap<PolicyKey, (BTreeMap<String, usize>, Vec<&str>)> = BTreeMap::new();
    for (i, first, missing) in missing_per_pod {
        let key = (
            ctx.engine_resource(
                first.kind.display_name(),
                first.namespace.as_deref(),
                &first.name,
            ),
            first.source.clone(),
        );
        let entry = by_policy.entry(key).or_default();
        *entry
            .0
            .entry(format!(
                "{}/{}",
                cluster.pods[i].namespace, cluster.pods[i].workload
            ))
            .or_default() += 1;
        for m in missing {
            if !entry.1.contains(&m) {
                entry.1.push(m);
            }
        }
    }
    let dns_name = cluster.pods[dns[0]].key();
    by_policy
        .into_iter()
        .map(|((policy, source), (workloads, missing))| {
            ctx.finding(
                &RULE,
                Some(policy.clone()),
                source.as_ref(),
                format!(
                    "{} {} egress-isolated by {policy} but cannot reach DNS ({dns_name}) on {}",
                    super::list(&workloads),
                    if workloads.values().sum::<usize>() > 1 { "are" } else { "is" },
                    missing.join(" and ")
                ),
                "allow egress to namespaceSelector kubernetes.io/metadata.name=kube-system + podSelector k8s-app=kube-dns on UDP and TCP 53",
            )
        })
        .collect()
}
