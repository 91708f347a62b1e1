//! BH111 named-port-undefined.
//!
//! ## What it flags
//! A named port in a rule that no destination pod defines with that name and protocol: for
//! ingress the pods the policy selects, for egress the pods the rule's peers select.
//!
//! ## Why it matters
//! A named port resolves on the destination pod; if no pod has it, the entry matches nothing,
//! and the traffic it was meant to allow is dropped.
//!
//! ## Example
//! `ports: [{port: http}]` while the container port is named `web`.
//!
//! ## Fix
//! Use the container port's name (`kubectl get pod -o jsonpath='{..ports}'`), or a number.

use crate::lint::{LintContext, RuleInfo, resource};
use bulkhead_engine::matching::{Peer, peer_matches};
use bulkhead_model::{Cluster, Diagnostic, Direction, NetworkPolicyPeer, Pod, PortSpec, Severity};

/// Whether a `to` entry selects pod `q`, as the engine matches peers: selectors on the pod,
/// an ipBlock on any of its addresses (a pod without an address is not in any ipBlock here).
fn selects(cluster: &Cluster, namespace: &str, peer: &NetworkPolicyPeer, q: &Pod) -> bool {
    let matches = |ip| {
        peer_matches(
            cluster,
            namespace,
            peer,
            Peer { pod: Some(q), ip },
            &mut Vec::new(),
        )
    };
    match peer {
        NetworkPolicyPeer::Pods { .. } => matches(None),
        NetworkPolicyPeer::IpBlock(_) => q.ips.iter().any(|ip| matches(Some(*ip))),
    }
}

pub const RULE: RuleInfo = RuleInfo {
    code: "BH111",
    name: "named-port-undefined",
    severity: Severity::Warning,
    summary: "a named port that no destination pod defines",
    doc: include_str!("named_port_undefined.rs"),
};

pub fn check(ctx: &LintContext<'_>) -> Vec<Diagnostic> {
    let cluster = ctx.cluster;
    let mut out = Vec::new();
    for policy in &cluster.network_policies {
        let res = resource("NetworkPolicy", Some(&policy.namespace), &policy.name);
        let subjects: Vec<_> = cluster
            .pods
            .iter()
            .filter(|p| {
                p.is_endpoint()
                    && !p.host_network
                    && p.namespace == policy.namespace
                    && policy.pod_selector.matches(&p.labels)
            })
            .collect();
        if subjects.is_empty() {
            continue;
        }
        for direction in [Direction::Ingress, Direction::Egress] {
            for (i, rule) in policy.rules(direction).iter().enumerate() {
                let destinations: Vec<_> = match direction {
                    Direction::Ingress => subjects.clone(),
                    Direction::Egress => cluster
                        .pods
                        .iter()
                        .filter(|q| q.is_endpoint() && !q.host_network)
                        .filter(|q| {
                            rule.peers.as_ref().is_none_or(|peers| {
                                peers
                                    .iter()
                                    .any(|peer| selects(cluster, &policy.namespace, peer, q))
                            })
                        })
                        .collect(),
                };
                if destinations.is_empty() {
                    continue;
                }
                for port in rule.ports.iter().flatten() {
                    let PortSpec::Named(name) = &port.port else {
                        continue;
                    };
                    if !destinations
                        .iter()
                        .any(|d| d.named_port(name, port.protocol).is_some())
                    {
                        out.push(ctx.finding(&RULE, Some(res.clone()), rule.location.as_ref().or(policy.source.as_ref()), format!("{res} {direction}[{i}]: no destination pod defines a {} port named {name:?}", port.protocol), "use the container port's name and protocol, or the number"));
                    }
                }
            }
        }
    }
    out
}
