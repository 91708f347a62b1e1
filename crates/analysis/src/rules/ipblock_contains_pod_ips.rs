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

pub const RULE: RuleInfo = RuleInfo {
    code: "BH110",
    name: "ipblock-contains-pod-ips",
    severity: Severity::Warning,
    summary: "an ipBlock range contains pod IPs",
    doc: include_str!("ipblock_contains_pod_ips.rs"),
};

pub fn check(ctx: &LintContext<'_>) -> Vec<Diagnostic> {
    let ips: Vec<std::net::IpAddr> = ctx
        .cluster
        .pods
        .iter()
        .filter(|p| p.is_endpoint() && !p.host_network)
        .flat_map(|p| p.ips.iter().copied())
        .collect();
    let mut out = Vec::new();
    // A Deny of the pod range is deliberate; an Allow of it is the surprise.
    for r in crate::lint::policy_rules(ctx.cluster)
        .filter(|r| r.rule.action == bulkhead_model::Action::Allow)
    {
        let (field, nets): (&str, Vec<ipnet::IpNet>) = match &r.rule.matcher {
            RuleMatcher::Kubernetes(rule) => {
                let field = match r.direction {
                    Direction::Ingress => "from",
                    Direction::Egress => "to",
                };
                for (j, peer) in rule.peers.iter().flatten().enumerate() {
                    let NetworkPolicyPeer::IpBlock(block) = peer else {
                        continue;
                    };
                    let count = ips.iter().filter(|ip| block.contains(**ip)).count();
                    if count > 0 {
                        out.push(ctx.finding(
                            &RULE,
                            Some(r.resource.clone()),
                            r.source(),
                            format!(
                                "{} {}[{}].{field}[{j}] ipBlock {block} contains {count} pod IP{}",
                                r.resource,
                                r.direction,
                                r.index,
                                if count == 1 { "" } else { "s" }
                            ),
                            "match pods with selectors; except the pod CIDR from broad ipBlocks",
                        ));
                    }
                }
                continue;
            }
            RuleMatcher::Calico(c) => match r.direction {
                Direction::Egress => ("destination", c.destination.nets.clone()),
                Direction::Ingress => ("source", c.source.nets.clone()),
            },
            RuleMatcher::Cluster(c) => (
                "networks",
                c.peers
                    .iter()
                    .flat_map(|p| match p {
                        ClusterPeer::Networks(n) => n.clone(),
                        _ => Vec::new(),
                    })
                    .collect(),
            ),
        };
        for net in nets {
            let count = ips.iter().filter(|ip| net.contains(*ip)).count();
            if count > 0 {
                out.push(ctx.finding(
                    &RULE,
                    Some(r.resource.clone()),
                    r.source(),
                    format!(
                        "{} {}[{}] {field} net {net} contains {count} pod IP{}",
                        r.resource,
                        r.direction,
                        r.index,
                        if count == 1 { "" } else { "s" }
                    ),
                    "match pods with selectors; leave the pod CIDR out of broad nets (notNets, or a narrower range)",
                ));
            }
        }
    }
    out
}
