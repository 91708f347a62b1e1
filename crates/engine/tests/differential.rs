//! Differential tests on random clusters: the compiled (identity) engine, the per-flow engine
//! and, for Kubernetes NetworkPolicy, an independent brute-force reference written straight from
//! semantics.md §1.10 must agree on every pod pair, a sample of ports, and external addresses.

use bulkhead_engine::{Endpoint, Engine, EngineOptions, Flow, Semantics};
use bulkhead_model::cluster::ContainerPort;
use bulkhead_model::{
    Action, CalicoSelector, Cluster, ClusterPeer, ClusterPort, ClusterRule, Direction, IpBlock,
    LabelSelector, Labels, Namespace, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicyRule, Operator, Pod, PodOrigin, PolicyTypes, PortRange, PortSpec, Protocol,
    Requirement, RuleMatcher, Subject, TieredKind, TieredPolicy, TieredRule, WorkloadRef,
};
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

const NAMESPACES: [&str; 3] = ["a", "b", "c"];
const APPS: [&str; 3] = ["web", "api", "db"];
const PORTS: [u16; 4] = [53, 80, 443, 8080];

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn selector_strategy() -> impl Strategy<Value = LabelSelector> {
    prop_oneof![
        Just(LabelSelector::everything()),
        (0..APPS.len()).prop_map(|a| LabelSelector::from_requirements(vec![Requirement {
            key: "app".into(),
            operator: Operator::In(BTreeSet::from([APPS[a].to_string()])),
        }])),
        (0..APPS.len()).prop_map(|a| LabelSelector::from_requirements(vec![Requirement {
            key: "app".into(),
            operator: Operator::NotIn(BTreeSet::from([APPS[a].to_string()])),
        }])),
        Just(LabelSelector::from_requirements(vec![Requirement {
            key: "tier".into(),
            operator: Operator::Exists
        }])),
    ]
}

fn ns_selector_strategy() -> impl Strategy<Value = LabelSelector> {
    prop_oneof![
        Just(LabelSelector::everything()),
        (0..NAMESPACES.len()).prop_map(|n| LabelSelector::from_requirements(vec![Requirement {
            key: "kubernetes.io/metadata.name".into(),
            operator: Operator::In(BTreeSet::from([NAMESPACES[n].to_string()])),
        }])),
    ]
}

fn ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
}

fn peer_strategy() -> impl Strategy<Value = NetworkPolicyPeer> {
    prop_oneof![
        (
            proptest::option::of(ns_selector_strategy()),
            proptest::option::of(selector_strategy())
        )
            .prop_filter("a peer sets a field", |(n, p)| n.is_some() || p.is_some())
            .prop_map(
                |(namespace_selector, pod_selector)| NetworkPolicyPeer::Pods {
                    namespace_selector,
                    pod_selector
                }
            ),
        (0u8..3, proptest::bool::ANY).prop_map(|(which, except)| {
            let (cidr, hole) = match which {
                0 => ("0.0.0.0/0", "10.0.0.0/28"),
                1 => ("10.0.0.0/28", "10.0.0.4/30"),
                _ => ("203.0.113.0/24", "203.0.113.128/25"),
            };
            let excepts = if except {
                vec![hole.parse().expect("cidr")]
            } else {
                vec![]
            };
            NetworkPolicyPeer::IpBlock(
                IpBlock::new(cidr.parse().expect("cidr"), excepts).expect("valid"),
            )
        }),
    ]
}

fn port_strategy() -> impl Strategy<Value = NetworkPolicyPort> {
    prop_oneof![
        (
            0..PORTS.len(),
            prop_oneof![Just(Protocol::Tcp), Just(Protocol::Udp)]
        )
            .prop_map(|(p, protocol)| NetworkPolicyPort {
                protocol,
                port: PortSpec::Range(PortRange::single(PORTS[p]))
            }),
        Just(NetworkPolicyPort {
            protocol: Protocol::Tcp,
            port: PortSpec::Range(PortRange::new(80, 443).expect("range"))
        }),
        Just(NetworkPolicyPort {
            protocol: Protocol::Tcp,
            port: PortSpec::Named("http".into())
        }),
        Just(NetworkPolicyPort {
            protocol: Protocol::Udp,
            port: PortSpec::Any
        }),
    ]
}

fn rule_strategy() -> impl Strategy<Value = NetworkPolicyRule> {
    (
        proptest::option::of(proptest::collection::vec(peer_strategy(), 1..3)),
        proptest::option::of(proptest::collection::vec(port_strategy(), 1..3)),
    )
        .prop_map(|(peers, ports)| NetworkPolicyRule { peers, ports })
}

fn policy_strategy() -> impl Strategy<Value = NetworkPolicy> {
    (
        0..NAMESPACES.len(),
        selector_strategy(),
        proptest::bool::ANY,
        proptest::bool::ANY,
        proptest::collection::vec(rule_strategy(), 0..3),
        proptest::collection::vec(rule_strategy(), 0..3),
    )
        .prop_map(
            |(n, pod_selector, ingress, egress, ingress_rules, egress_rules)| NetworkPolicy {
                namespace: NAMESPACES[n].into(),
                name: String::new(),
                pod_selector,
                policy_types: PolicyTypes {
                    ingress: ingress || !egress,
                    egress,
                    defaulted: false,
                },
                ingress: ingress_rules,
                egress: egress_rules,
                source: None,
            },
        )
}

fn anp_strategy() -> impl Strategy<Value = TieredPolicy> {
    let rule = (
        prop_oneof![Just(Action::Allow), Just(Action::Deny), Just(Action::Pass)],
        prop_oneof![
            ns_selector_strategy().prop_map(ClusterPeer::Namespaces),
            (ns_selector_strategy(), selector_strategy()).prop_map(
                |(namespace_selector, pod_selector)| ClusterPeer::Pods {
                    namespace_selector,
                    pod_selector
                }
            ),
            Just(ClusterPeer::Networks(vec![
                "10.0.0.0/29".parse().expect("cidr")
            ])),
        ],
        proptest::option::of(Just(vec![ClusterPort::Range {
            protocol: Protocol::Tcp,
            range: PortRange::single(80),
        }])),
    )
        .prop_map(|(action, peer, ports)| TieredRule {
            name: None,
            action,
            matcher: RuleMatcher::Cluster(ClusterRule {
                peers: vec![peer],
                ports,
            }),
        });
    (
        0u8..3,
        ns_selector_strategy(),
        proptest::collection::vec(rule.clone(), 0..3),
        proptest::collection::vec(rule, 0..3),
        proptest::bool::ANY,
    )
        .prop_map(|(priority, subject, ingress, egress, baseline)| {
            let (kind, tier) = if baseline {
                (TieredKind::BaselineAdminNetworkPolicy, "kube-baseline")
            } else {
                (TieredKind::AdminNetworkPolicy, "kube-admin")
            };
            let strip_pass = |rules: Vec<TieredRule>| -> Vec<TieredRule> {
                rules
                    .into_iter()
                    .map(|mut r| {
                        if baseline && r.action == Action::Pass {
                            r.action = Action::Deny;
                        }
                        r
                    })
                    .collect()
            };
            let (ingress, egress) = (strip_pass(ingress), strip_pass(egress));
            TieredPolicy {
                kind,
                namespace: None,
                name: String::new(),
                tier: tier.into(),
                order: Some(f64::from(priority)),
                staged: None,
                subject: Subject::Namespaces(subject),
                types: PolicyTypes {
                    ingress: !ingress.is_empty(),
                    egress: !egress.is_empty(),
                    defaulted: false,
                },
                ingress,
                egress,
                host_endpoints_only: false,
                source: None,
            }
        })
}

fn gnp_strategy() -> impl Strategy<Value = TieredPolicy> {
    let rule = (
        prop_oneof![
            Just(Action::Allow),
            Just(Action::Deny),
            Just(Action::Pass),
            Just(Action::Log)
        ],
        proptest::option::of((0..APPS.len()).prop_map(|a| {
            CalicoSelector::parse(&format!("app == '{}'", APPS[a])).expect("selector")
        })),
        proptest::option::of(Just(vec![bulkhead_model::CalicoPort::Range(
            PortRange::new(80, 443).expect("range"),
        )])),
    )
        .prop_map(|(action, selector, ports)| {
            let protocol = ports.as_ref().map(|_| Protocol::Tcp);
            TieredRule {
                name: None,
                action,
                matcher: RuleMatcher::Calico(Box::new(bulkhead_model::CalicoRule {
                    protocol,
                    not_protocol: None,
                    ip_version: None,
                    icmp: None,
                    not_icmp: None,
                    source: bulkhead_model::EntityRule {
                        selector,
                        ..Default::default()
                    },
                    destination: bulkhead_model::EntityRule {
                        ports: ports.unwrap_or_default(),
                        ..Default::default()
                    },
                    has_http_match: false,
                })),
            }
        });
    (
        0u8..3,
        0..APPS.len(),
        proptest::collection::vec(rule, 0..3),
        proptest::bool::ANY,
    )
        .prop_map(|(order, app, ingress, custom_tier)| TieredPolicy {
            kind: TieredKind::GlobalNetworkPolicy,
            namespace: None,
            name: String::new(),
            tier: if custom_tier {
                "security".into()
            } else {
                "default".into()
            },
            order: Some(f64::from(order) * 600.0),
            staged: None,
            subject: Subject::Calico {
                selector: CalicoSelector::parse(&format!("app == '{}'", APPS[app]))
                    .expect("selector"),
                namespace_selector: None,
                service_account_selector: None,
            },
            types: PolicyTypes {
                ingress: true,
                egress: false,
                defaulted: false,
            },
            ingress,
            egress: vec![],
            host_endpoints_only: false,
            source: None,
        })
}

fn cluster_strategy(with_anp: bool, with_calico: bool) -> impl Strategy<Value = Cluster> {
    (
        proptest::collection::vec(
            (
                0..NAMESPACES.len(),
                0..APPS.len(),
                proptest::bool::ANY,
                proptest::bool::ANY,
            ),
            2..7,
        ),
        proptest::collection::vec(policy_strategy(), 0..5),
        proptest::collection::vec(anp_strategy(), 0..if with_anp { 3 } else { 1 }),
        proptest::collection::vec(gnp_strategy(), 0..if with_calico { 3 } else { 1 }),
    )
        .prop_map(move |(pods, mut policies, mut anps, mut gnps)| {
            let mut cluster = Cluster::default();
            for n in NAMESPACES {
                cluster.namespaces.push(Namespace {
                    name: n.into(),
                    labels: labels(&[("kubernetes.io/metadata.name", n)]),
                    defined: true,
                });
            }
            for (i, (n, app, tier, http)) in pods.into_iter().enumerate() {
                let mut l = labels(&[("app", APPS[app])]);
                if tier {
                    l.insert("tier".into(), "x".into());
                }
                let name = format!("p{i}");
                cluster.pods.push(Pod {
                    namespace: NAMESPACES[n].into(),
                    name: name.clone(),
                    labels: l,
                    ips: vec![ip(u8::try_from(i + 1).expect("small"))],
                    node: Some("node-1".into()),
                    host_network: false,
                    service_account: "default".into(),
                    ports: vec![ContainerPort {
                        name: Some("http".into()),
                        port: if http { 80 } else { 8080 },
                        protocol: Protocol::Tcp,
                    }],
                    phase: Some("Running".into()),
                    origin: PodOrigin::Live,
                    workload: WorkloadRef {
                        kind: "pod".into(),
                        name,
                    },
                    source: None,
                });
            }
            for (i, p) in policies.iter_mut().enumerate() {
                p.name = format!("np{i}");
            }
            for (i, p) in anps.iter_mut().enumerate() {
                p.name = if p.kind == TieredKind::BaselineAdminNetworkPolicy {
                    "default".into()
                } else {
                    format!("anp{i}")
                };
            }
            anps.dedup_by(|a, b| {
                a.kind == TieredKind::BaselineAdminNetworkPolicy
                    && b.kind == TieredKind::BaselineAdminNetworkPolicy
            });
            for (i, p) in gnps.iter_mut().enumerate() {
                p.name = format!("gnp{i}");
            }
            cluster.network_policies = policies;
            if with_anp {
                cluster.tiered_policies.extend(anps);
            }
            if with_calico {
                cluster.tiered_policies.extend(gnps);
            }
            cluster.finish();
            cluster
        })
}

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
        let policies: Vec<&NetworkPolicy> = cluster
            .network_policies
            .iter()
            .filter(|p| {
                p.namespace == pod.namespace
                    && p.pod_selector.matches(&pod.labels)
                    && p.policy_types.contains(direction)
            })
            .collect();
        if policies.is_empty() {
            return true;
        }
        let destination = match direction {
            Direction::Ingress => Some(pod),
            Direction::Egress => peer.map(|p| &cluster.pods[p]),
        };
        policies.iter().any(|policy| {
            policy.rules(direction).iter().any(|rule| {
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
                                    None => q.namespace == policy.namespace,
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
