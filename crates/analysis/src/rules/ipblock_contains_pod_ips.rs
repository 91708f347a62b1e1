//! BH110 ipblock-contains-pod-ips.
//!
//! ## What it flags
//! An `ipBlock` whose range (minus its excepts) contains pod IPs of the snapshot; the same for
//! the `nets` of a Calico rule's peer side and the `networks` peers of AdminNetworkPolicy,
//! BaselineAdminNetworkPolicy and ClusterNetworkPolicy rules that allow (a Deny of the pod
//! range is deliberate).
//!
//! ## Why it matters
//! The Kubernetes documentation recommends ipBlock for cluster-external addresses: pod IPs are
//! ephemeral, and CNIs differ in whether traffic between pods is matched by ipBlock (SNAT,
//! overlays). `0.0.0.0/0` meant as "the internet" also allows every pod.
//!
//! ## Example
//! `to: [{ipBlock: {cidr: 10.0.0.0/8}}]` where pods live in 10.244.0.0/16.
//!
//! ## Fix
//! Use pod and namespace selectors for pods; `except` the pod CIDR from broad blocks.

use crate::lint::{LintContext, RuleInfo};
use bulkhead_model::{
    ClusterPeer, Diagnostic, Direction, NetworkPolicyPeer, RuleMatcher, Severity,
};
use rayon::prelude::*;

const NETS_HELP: &str = "match pods with selectors; leave the pod CIDR out of broad nets (notNets, or a narrower range)";

pub const RULE: RuleInfo = RuleInfo {
    code: "BH110",
    name: "ipblock-contains-pod-ips",
    severity: Severity::Warning,
    summary: "an ipBlock range contains pod IPs",
    doc: include_str!("ipblock_contains_pod_ips.rs"),
};

pub fn check(ctx: &LintContext<'_>) -> Vec<Diagnostic> {
    let mut ips: Vec<std::net::IpAddr> = ctx
        .cluster
        .pods
        .iter()
        .filter(|p| p.is_endpoint() && !p.host_network)
        .flat_map(|p| p.ips.iter().copied())
        .collect();
    // Sorted, so the pod IPs inside a range are one slice (found by two binary searches)
    // instead of a scan of every pod per ipBlock.
    ips.sort_unstable();
    let within = |net: ipnet::IpNet| -> &[std::net::IpAddr] {
        let (first, last) = (net.network(), net.broadcast());
        let start = ips.partition_point(|ip| *ip < first);
        let end = ips.partition_point(|ip| *ip <= last);
        &ips[start..end.max(start)]
    };
    // A policy repository without pods (the usual CI run) has no pod IP to contain.
    if ips.is_empty() {
        return Vec::new();
    }
    // A part of the policies at a time, in parallel and in order, as BH102 does: walking
    // 300,000 policies' rules on one core was this rule's tail after the others had finished.
    let part = crate::lint::policy_part_len(ctx.cluster);
    ctx.cluster
        .policies
        .par_chunks(part)
        .flat_map_iter(|policies| findings(ctx, policies, &within))
        .collect()
}

/// BH110's findings on the rules of `policies`; `within` gives the pod IPs in a range.
fn findings<'i>(
    ctx: &LintContext<'_>,
    policies: &[bulkhead_model::Policy],
    within: &(impl Fn(ipnet::IpNet) -> &'i [std::net::IpAddr] + Sync),
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    // A Deny of the pod range is deliberate; an Allow of it is the surprise.
    for r in
        crate::lint::rules_of(policies).filter(|r| r.rule.action == bulkhead_model::Action::Allow)
    {
        // Ranges holding no pod IP are neither named nor kept: most hold none.
        let nets = |field: &str, nets: &[ipnet::IpNet]| -> Vec<(String, usize)> {
            nets.iter()
                .filter_map(|n| {
                    let count = within(*n).len();
                    (count > 0).then(|| (format!(" {field} net {n}"), count))
                })
                .collect()
        };
        // Each range the rule allows, named as the user wrote it, with the pod IPs it holds.
        let (ranges, help) = match &r.rule.matcher {
            RuleMatcher::Kubernetes(rule) => {
                let field = match r.direction {
                    Direction::Ingress => "from",
                    Direction::Egress => "to",
                };
                let blocks = rule
                    .peers
                    .iter()
                    .flatten()
                    .enumerate()
                    .filter_map(|(j, peer)| {
                        let NetworkPolicyPeer::IpBlock(block) = peer else {
                            return None;
                        };
                        let count = within(block.cidr())
                            .iter()
                            .filter(|ip| block.contains(**ip))
                            .count();
                        (count > 0).then(|| (format!(".{field}[{j}] ipBlock {block}"), count))
                    });
                (
                    blocks.collect(),
                    "match pods with selectors; except the pod CIDR from broad ipBlocks",
                )
            }
            RuleMatcher::Calico(c) => (
                match r.direction {
                    Direction::Egress => nets("destination", &c.destination.nets),
                    Direction::Ingress => nets("source", &c.source.nets),
                },
                NETS_HELP,
            ),
            RuleMatcher::Cluster(c) => {
                let networks: Vec<ipnet::IpNet> = c
                    .peers
                    .iter()
                    .flat_map(|p| match p {
                        ClusterPeer::Networks(n) => n.clone(),
                        _ => Vec::new(),
                    })
                    .collect();
                (nets("networks", &networks), NETS_HELP)
            }
        };
        for (what, count) in ranges.into_iter().filter(|(_, count)| *count > 0) {
            out.push(ctx.finding(
                &RULE,
                Some(r.resource()),
                r.source(),
                format!(
                    "{} {}[{}]{what} contains {count} pod IP{}",
                    r.resource(),
                    r.direction,
                    r.index,
                    if count == 1 { "" } else { "s" }
                ),
                help,
            ));
        }
    }
    out
}
