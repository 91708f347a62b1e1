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
use bulkhead_model::{Diagnostic, Direction, Severity};

pub const RULE: RuleInfo = RuleInfo {
    code: "BH111",
    name: "named-port-undefined",
    severity: Severity::Warning,
    summary: "a named port that no destination pod defines",
    doc: include_str!("named_port_undefined.rs"),
};

/// Named ports of any rule, resolved on the destination pods the rule's peers reach (asked of
/// the engine with the ports left out) or, for ingress, on the pods the policy applies to.
pub fn check(ctx: &LintContext<'_>) -> Vec<Diagnostic> {
    use bulkhead_engine::Endpoint;
    use bulkhead_model::{CalicoPort, ClusterPort, PortSpec, Protocol, RuleMatcher};
    let cluster = ctx.cluster;
    let engine = &ctx.engine;
    let pods: Vec<usize> = engine.pod_endpoints();
    // Who each policy selects, per direction, from one pass over the pods (asking per policy
    // and pod would be policies x pods lookups).
    // A policy reference's index is its offset in the cluster's vector (the engine hands out
    // references into it): no map of 300,000 addresses.
    let index_of = |policy: &bulkhead_model::Policy| {
        cluster
            .policies
            .as_ptr_range()
            .contains(&std::ptr::from_ref(policy))
            .then(|| {
                (std::ptr::from_ref(policy) as usize - cluster.policies.as_ptr() as usize)
                    / std::mem::size_of::<bulkhead_model::Policy>()
            })
    };
    let mut selected: Vec<[Vec<usize>; 2]> = vec![[Vec::new(), Vec::new()]; cluster.policies.len()];
    for &pod in &pods {
        for (d, direction) in [Direction::Ingress, Direction::Egress]
            .into_iter()
            .enumerate()
        {
            for policy in engine.applying_policy_refs(pod, direction) {
                if let Some(i) = index_of(policy) {
                    selected[i][d].push(pod);
                }
            }
        }
    }
    // The pods that define each port name: the only destinations that can matter; and the
    // same per namespace, for rules whose peers stay in the policy's namespace.
    let mut defining: std::collections::HashMap<&str, Vec<usize>> =
        std::collections::HashMap::new();
    let mut defining_in: std::collections::HashMap<(&str, &str), Vec<usize>> =
        std::collections::HashMap::new();
    let mut pods_in: std::collections::HashMap<&str, Vec<usize>> = std::collections::HashMap::new();
    for &pod in &pods {
        pods_in
            .entry(cluster.pods[pod].namespace.as_str())
            .or_default()
            .push(pod);
        for port in &cluster.pods[pod].ports {
            if let Some(name) = port.name.as_deref() {
                defining.entry(name).or_default().push(pod);
                defining_in
                    .entry((cluster.pods[pod].namespace.as_str(), name))
                    .or_default()
                    .push(pod);
            }
        }
    }
    let mut out = Vec::new();
    for (index, policy) in cluster
        .policies
        .iter()
        .enumerate()
        .filter(|(_, p)| p.staged.is_none() && !p.host_endpoints_only)
    {
        let res = || {
            resource(
                policy.kind.as_str(),
                policy.namespace.as_deref(),
                &policy.name,
            )
        };
        for (d, direction) in [Direction::Ingress, Direction::Egress]
            .into_iter()
            .enumerate()
        {
            let subjects = &mut selected[index][d];
            subjects.sort_unstable();
            let subjects = &*subjects;
            if subjects.is_empty() {
                continue;
            }
            for (i, rule) in policy.rules(direction).iter().enumerate() {
                // (name, protocol the container port must have; None: any).
                let named: Vec<(String, Option<Protocol>)> = match &rule.matcher {
                    RuleMatcher::Kubernetes(k) => k
                        .ports
                        .iter()
                        .flatten()
                        .filter_map(|p| match &p.port {
                            PortSpec::Named(n) => Some((n.clone(), Some(p.protocol))),
                            _ => None,
                        })
                        .collect(),
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
                // The same rule without its port match, for egress: which pods do its peers
                // reach? Asked only of the pods that define the name.
                let mut any_port = policy.clone();
                if let Some(r) = any_port.egress.get_mut(i) {
                    match &mut r.matcher {
                        RuleMatcher::Calico(c) => {
                            c.destination.ports.clear();
                            c.destination.not_ports.clear();
                            c.protocol = None;
                        }
                        RuleMatcher::Cluster(c) => c.ports = None,
                        RuleMatcher::Kubernetes(k) => k.ports = None,
                    }
                }
                // Kubernetes and ANP/BANP/CNP peers do not depend on the sending pod, only on
                // the flow's address family, so one sender per family profile answers for all;
                // a Calico rule's source match does depend on it, so every sender is asked.
                let every_sender = matches!(rule.matcher, RuleMatcher::Calico(_));
                let profile = |s: usize| {
                    let ips = &cluster.pods[s].ips;
                    usize::from(ips.iter().any(std::net::IpAddr::is_ipv4))
                        + 2 * usize::from(ips.iter().any(std::net::IpAddr::is_ipv6))
                };
                let is_destination = |q: usize| match direction {
                    Direction::Ingress => subjects.binary_search(&q).is_ok(),
                    Direction::Egress => {
                        let mut asked = [false; 4];
                        subjects
                            .iter()
                            .filter(|&&s| s != q)
                            .filter(|&&s| {
                                every_sender || !std::mem::replace(&mut asked[profile(s)], true)
                            })
                            .any(|&s| {
                                !engine
                                    .policy_rule_ports(
                                        &any_port,
                                        direction,
                                        i,
                                        s,
                                        Endpoint::Pod(q),
                                        Protocol::Tcp,
                                    )
                                    .is_empty()
                            })
                    }
                };
                for (name, protocol) in named {
                    // Egress to pods of the policy's own namespace only (every peer a
                    // podSelector without namespaceSelector): the candidates there.
                    let own_namespace = direction == Direction::Egress
                        && match &rule.matcher {
                            RuleMatcher::Kubernetes(k) => k.peers.as_ref().is_some_and(|peers| {
                                !peers.is_empty()
                                    && peers.iter().all(|p| {
                                        matches!(
                                            p,
                                            bulkhead_model::NetworkPolicyPeer::Pods {
                                                namespace_selector: None,
                                                ..
                                            }
                                        )
                                    })
                            }),
                            _ => false,
                        };
                    // Ingress: the destinations are the policy's own pods, few; ask them.
                    let candidates = if direction == Direction::Ingress {
                        Some(subjects)
                    } else if own_namespace {
                        defining_in.get(&(
                            policy.namespace.as_deref().unwrap_or_default(),
                            name.as_str(),
                        ))
                    } else {
                        defining.get(name.as_str())
                    };
                    let defined = candidates
                        .into_iter()
                        .flatten()
                        .filter(|&&q| {
                            cluster.pods[q].ports.iter().any(|p| {
                                p.name.as_deref() == Some(name.as_str())
                                    && protocol.is_none_or(|want| want == p.protocol)
                            })
                        })
                        .any(|&q| is_destination(q));
                    // A rule whose peers reach no pod at all is left to BH102 (its selector
                    // matches nothing); asked only now, since it scans every pod.
                    let reachable = if own_namespace {
                        pods_in.get(policy.namespace.as_deref().unwrap_or_default())
                    } else {
                        Some(&pods)
                    };
                    if !defined && !reachable.into_iter().flatten().any(|&q| is_destination(q)) {
                        continue;
                    }
                    if !defined {
                        let what = protocol.map_or_else(String::new, |p| format!("{p} "));
                        out.push(ctx.finding(
                            &RULE,
                            Some(res()),
                            rule.location.as_ref().or(policy.source.as_ref()),
                            format!("{} {direction}[{i}]: no destination pod defines a {what}port named {name:?}", res()),
                            "use the container port's name and protocol, or the number",
                        ));
                    }
                }
            }
        }
    }
    out
}
