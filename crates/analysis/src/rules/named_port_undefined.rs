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
    let mut out = Vec::new();
    for policy in cluster
        .policies
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
                                RuleMatcher::Kubernetes(k) => k.ports = None,
                            }
                        }
                        pods.iter()
                            .copied()
                            .filter(|&q| {
                                subjects.iter().any(|&s| {
                                    s != q
                                        && !engine
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
