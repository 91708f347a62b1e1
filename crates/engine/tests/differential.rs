//! Differential tests on random clusters: the compiled (identity) engine, the per-flow engine
//! and, for Kubernetes NetworkPolicy, an independent brute-force reference written straight from
//! semantics.md §1.10 must agree on every pod pair, a sample of ports, and external addresses.

#[path = "support/random_cluster.rs"]
mod random_cluster;

use bulkhead_engine::{Endpoint, Engine, EngineOptions, Flow, Semantics};
use bulkhead_model::{
    Cluster, Direction, NetworkPolicyPeer, NetworkPolicyRule, PortSpec, Protocol, RuleMatcher,
    Subject,
};
use proptest::prelude::*;
use random_cluster::{PORTS, cluster_strategy};
use std::net::IpAddr;

/// semantics.md §1.10, written independently of the engine: NetworkPolicy only.
fn reference_allows(
    cluster: &Cluster,
    src: Option<usize>,
    src_ip: IpAddr,
    dst: Option<usize>,
    dst_ip: IpAddr,
    protocol: Protocol,
    port: u16,
) -> bool {
    if src.is_some() && src == dst {
        return true;
    }
    let direction_allows = |subject: usize,
                            peer: Option<usize>,
                            peer_ip: IpAddr,
                            direction: Direction|
     -> bool {
        let pod = &cluster.pods[subject];
        // The Kubernetes policies as written: namespace, podSelector and their rules.
        let policies: Vec<(&str, Vec<&NetworkPolicyRule>)> = cluster
            .policies
            .iter()
            .filter(|p| {
                let Subject::PodsInNamespace(pod_selector) = &p.subject else {
                    return false;
                };
                p.namespace.as_deref() == Some(pod.namespace.as_str())
                    && pod_selector.matches(&pod.labels)
                    && p.types.contains(direction)
            })
            .map(|p| {
                let rules = p
                    .rules(direction)
                    .iter()
                    .filter_map(|r| match &r.matcher {
                        RuleMatcher::Kubernetes(k) => Some(k),
                        _ => None,
                    })
                    .collect();
                (p.namespace.as_deref().unwrap_or_default(), rules)
            })
            .collect();
        if policies.is_empty() {
            return true;
        }
        let destination = match direction {
            Direction::Ingress => Some(pod),
            Direction::Egress => peer.map(|p| &cluster.pods[p]),
        };
        policies.iter().any(|(policy_namespace, rules)| {
            rules.iter().any(|rule| {
                let peer_ok = match &rule.peers {
                    None => true,
                    Some(peers) => peers.iter().any(|e| match e {
                        NetworkPolicyPeer::IpBlock(b) => b.contains(peer_ip),
                        NetworkPolicyPeer::Pods {
                            namespace_selector,
                            pod_selector,
                        } => match peer {
                            None => false,
                            Some(q) => {
                                let q = &cluster.pods[q];
                                let ns_ok = match namespace_selector {
                                    None => q.namespace == *policy_namespace,
                                    Some(s) => s.matches(
                                        &cluster.namespace(&q.namespace).expect("namespace").labels,
                                    ),
                                };
                                ns_ok && pod_selector.as_ref().is_none_or(|s| s.matches(&q.labels))
                            }
                        },
                    }),
                };
                let port_ok = match &rule.ports {
                    None => true,
                    Some(ports) => ports.iter().any(|p| {
                        p.protocol == protocol
                            && match &p.port {
                                PortSpec::Any => true,
                                PortSpec::Range(r) => r.contains(port),
                                PortSpec::Named(n) => {
                                    destination.and_then(|d| d.named_port(n, protocol))
                                        == Some(port)
                                }
                            }
                    }),
                };
                peer_ok && port_ok
            })
        })
    };
    let egress = src.is_none_or(|s| direction_allows(s, dst, dst_ip, Direction::Egress));
    let ingress = dst.is_none_or(|d| direction_allows(d, src, src_ip, Direction::Ingress));
    egress && ingress
}

const EXTERNAL: [&str; 2] = ["203.0.113.7", "203.0.113.200"];

/// Addresses inside, at the edges of and outside every CIDR the random clusters use.
const EXTERNAL_WIDE: [&str; 9] = [
    "203.0.113.7",
    "203.0.113.200",
    "203.0.113.128",
    "10.0.0.5",
    "10.0.0.9",
    "10.0.0.15",
    "10.0.0.16",
    "8.8.8.8",
    "169.254.169.254",
];

fn check(
    cluster: &Cluster,
    semantics: Semantics,
    with_reference: bool,
) -> Result<(), TestCaseError> {
    let engine = Engine::new(
        cluster,
        EngineOptions {
            semantics,
            self_traffic_allowed: true,
        },
    );
    let compiled = engine.compile();
    let n = cluster.pods.len();
    for s in 0..n {
        for d in 0..n {
            for protocol in [Protocol::Tcp, Protocol::Udp] {
                for port in PORTS {
                    let flow = Flow {
                        src: Endpoint::Pod(s),
                        dst: Endpoint::Pod(d),
                        protocol,
                        port: Some(port),
                        icmp: None,
                    };
                    let evaluated = engine.evaluate(&flow).allowed;
                    prop_assert_eq!(
                        engine.allows(&flow),
                        evaluated,
                        "allows() differs from evaluate()"
                    );
                    let by_identity = compiled.ports(s, d, protocol).contains(port);
                    prop_assert_eq!(
                        evaluated,
                        by_identity,
                        "{} -> {} {}/{}",
                        cluster.pods[s].key(),
                        cluster.pods[d].key(),
                        protocol,
                        port
                    );
                    if with_reference {
                        let reference = reference_allows(
                            cluster,
                            Some(s),
                            cluster.pods[s].ips[0],
                            Some(d),
                            cluster.pods[d].ips[0],
                            protocol,
                            port,
                        );
                        prop_assert_eq!(
                            evaluated,
                            reference,
                            "reference: {} -> {} {}/{}",
                            cluster.pods[s].key(),
                            cluster.pods[d].key(),
                            protocol,
                            port
                        );
                    }
                }
            }
        }
        // `map --from`: the external rows agree with per-flow egress on every sample address.
        let rows = engine.external_connectivity(&bulkhead_engine::ConnectivityOptions {
            from: Some(vec![s]),
            ..Default::default()
        });
        let regions = engine.external_regions();
        for external in EXTERNAL_WIDE {
            let ext: IpAddr = external.parse().expect("ip");
            if cluster.pods.iter().any(|p| p.ips.contains(&ext)) {
                continue;
            }
            let region = regions
                .iter()
                .find(|r| r.cidr.contains(&ext) && !r.except.iter().any(|e| e.contains(&ext)))
                .expect("every address is in one region");
            for protocol in [Protocol::Tcp, Protocol::Udp] {
                let row = rows
                    .iter()
                    .find(|c| c.to == region.label() && c.protocol == protocol);
                for port in PORTS {
                    let egress = engine
                        .evaluate(&Flow {
                            src: Endpoint::Pod(s),
                            dst: Endpoint::External(ext),
                            protocol,
                            port: Some(port),
                            icmp: None,
                        })
                        .egress
                        .allowed;
                    prop_assert_eq!(
                        egress,
                        row.is_some_and(|c| c.ports.contains(port)),
                        "{} -> {} ({}) {}/{}",
                        cluster.pods[s].key(),
                        ext,
                        region.label(),
                        protocol,
                        port
                    );
                }
            }
        }
        if with_reference {
            for external in EXTERNAL {
                let ext: IpAddr = external.parse().expect("ip");
                for port in PORTS {
                    let out = engine.evaluate(&Flow {
                        src: Endpoint::Pod(s),
                        dst: Endpoint::External(ext),
                        protocol: Protocol::Tcp,
                        port: Some(port),
                        icmp: None,
                    });
                    prop_assert_eq!(
                        out.allowed,
                        reference_allows(
                            cluster,
                            Some(s),
                            cluster.pods[s].ips[0],
                            None,
                            ext,
                            Protocol::Tcp,
                            port
                        )
                    );
                    let inbound = engine.evaluate(&Flow {
                        src: Endpoint::External(ext),
                        dst: Endpoint::Pod(s),
                        protocol: Protocol::Tcp,
                        port: Some(port),
                        icmp: None,
                    });
                    prop_assert_eq!(
                        inbound.allowed,
                        reference_allows(
                            cluster,
                            None,
                            ext,
                            Some(s),
                            cluster.pods[s].ips[0],
                            Protocol::Tcp,
                            port
                        )
                    );
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn network_policy_engine_matches_the_reference_and_the_compiled_engine(cluster in cluster_strategy(false, false)) {
        check(&cluster, Semantics::Kubernetes, true)?;
        // semantics.md §4: Kubernetes-only input gives the same verdicts in Calico mode.
        check(&cluster, Semantics::Calico, true)?;
    }

    #[test]
    fn admin_policies_compiled_engine_matches_per_flow(cluster in cluster_strategy(true, false)) {
        check(&cluster, Semantics::Kubernetes, false)?;
    }

    #[test]
    fn calico_tiers_compiled_engine_matches_per_flow(cluster in cluster_strategy(true, true)) {
        check(&cluster, Semantics::Calico, false)?;
    }
}
