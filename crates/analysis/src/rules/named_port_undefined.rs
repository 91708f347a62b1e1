//! BH111 named-port-undefined.
//!
//! ## What it flags
//! A named port in a rule that no destination pod defines with that name and protocol: for
//! ingress the pods the policy selects, for egress the pods the rule's peers select. The same
//! for the named destination ports of Calico rules and the `namedPort` entries of
//! AdminNetworkPolicy, BaselineAdminNetworkPolicy and ClusterNetworkPolicy rules (whose named
//! ports match a container port of any protocol).
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
    out.extend(tiered(ctx));
    out
}

/// Named ports of Calico and ANP/BANP/CNP rules, resolved on the destination pods the rule's
/// peers reach (asked of the engine with the ports left out) or, for ingress, on the pods the
/// policy applies to.
fn tiered(ctx: &LintContext<'_>) -> Vec<Diagnostic> {
    use bulkhead_engine::Endpoint;
    use bulkhead_model::{CalicoPort, ClusterPort, Protocol, RuleMatcher};
    let cluster = ctx.cluster;
    let engine = &ctx.engine;
    let pods: Vec<usize> = engine.pod_endpoints();
    let mut out = Vec::new();
    for policy in cluster
        .tiered_policies
        .iter()
        .filter(|p| p.staged.is_none() && !p.host_endpoints_only)
    {
        let res = resource(
            policy.kind.as_str(),
            policy.namespace.as_deref(),
            &policy.name,
        );
        for direction in [Direction::Ingress, Direction::Egress] {
            let subjects: Vec<usize> = pods
                .iter()
                .copied()
                .filter(|&i| {
                    engine.applying_policies(i, direction).iter().any(|a| {
                        a.name == policy.name
                            && a.namespace.as_deref() == policy.namespace.as_deref()
                    })
                })
                .collect();
            if subjects.is_empty() {
                continue;
            }
            for (i, rule) in policy.rules(direction).iter().enumerate() {
                // (name, protocol the container port must have; None: any).
                let named: Vec<(String, Option<Protocol>)> = match &rule.matcher {
                    RuleMatcher::Calico(c) => c
                        .destination
                        .ports
                        .iter()
                        .filter_map(|p| match p {
                            CalicoPort::Named(n) => Some((n.clone(), c.protocol)),
                            CalicoPort::Range(_) => None,
                        })
                        .collect(),
                    RuleMatcher::Cluster(c) => c
                        .ports
                        .iter()
                        .flatten()
                        .filter_map(|p| match p {
                            ClusterPort::Named(n) => Some((n.clone(), None)),
                            _ => None,
                        })
                        .collect(),
                };
                if named.is_empty() {
                    continue;
                }
                let destinations: Vec<usize> = match direction {
                    Direction::Ingress => subjects.clone(),
                    Direction::Egress => {
                        // The same rule without its port match: which pods do its peers reach?
                        let mut any_port = policy.clone();
                        if let Some(r) = any_port.egress.get_mut(i) {
                            match &mut r.matcher {
                                RuleMatcher::Calico(c) => {
                                    c.destination.ports.clear();
                                    c.destination.not_ports.clear();
                                    c.protocol = None;
                                }
                                RuleMatcher::Cluster(c) => c.ports = None,
                            }
                        }
                        pods.iter()
                            .copied()
                            .filter(|&q| {
                                subjects.iter().any(|&s| {
                                    s != q
                                        && !engine
                                            .tiered_rule_ports(
                                                &any_port,
                                                direction,
                                                i,
                                                s,
                                                Endpoint::Pod(q),
                                                Protocol::Tcp,
                                            )
                                            .is_empty()
                                })
                            })
                            .collect()
                    }
                };
                if destinations.is_empty() {
                    continue;
                }
                for (name, protocol) in named {
                    let defined = destinations.iter().any(|&d| {
                        cluster.pods[d].ports.iter().any(|p| {
                            p.name.as_deref() == Some(name.as_str())
                                && protocol.is_none_or(|want| want == p.protocol)
                        })
                    });
                    if !defined {
                        let what = protocol.map_or_else(String::new, |p| format!("{p} "));
                        out.push(ctx.finding(
                            &RULE,
                            Some(res.clone()),
                            rule.location.as_ref().or(policy.source.as_ref()),
                            format!("{res} {direction}[{i}]: no destination pod defines a {what}port named {name:?}"),
                            "use the container port's name and protocol, or the number",
                        ));
                    }
                }
            }
        }
    }
    out
}
