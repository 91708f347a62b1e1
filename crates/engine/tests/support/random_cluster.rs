//! Random clusters for property tests (shared by the engine and nftables differential tests).
#![allow(dead_code, reason = "each test file uses a different part")]

use bulkhead_model::cluster::ContainerPort;
use bulkhead_model::{
    Action, CalicoSelector, Cluster, ClusterPeer, ClusterPort, ClusterRule, IpBlock, LabelSelector,
    Labels, Namespace, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicyRule,
    Operator, Pod, PodOrigin, Policy, PolicyKind, PolicyRule, PolicyTypes, PortRange, PortSpec,
    Protocol, Requirement, RuleMatcher, Subject, ValueSet, WorkloadRef,
};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr};

pub const NAMESPACES: [&str; 3] = ["a", "b", "c"];
pub const APPS: [&str; 3] = ["web", "api", "db"];
pub const PORTS: [u16; 4] = [53, 80, 443, 8080];

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn selector_strategy() -> impl Strategy<Value = LabelSelector> {
    prop_oneof![
        Just(LabelSelector::everything()),
        (0..APPS.len()).prop_map(|a| LabelSelector::from_requirements(vec![Requirement {
            key: "app".into(),
            operator: Operator::In(ValueSet::from([APPS[a].to_string()])),
        }])),
        (0..APPS.len()).prop_map(|a| LabelSelector::from_requirements(vec![Requirement {
            key: "app".into(),
            operator: Operator::NotIn(ValueSet::from([APPS[a].to_string()])),
        }])),
        Just(LabelSelector::from_requirements(vec![Requirement {
            key: "tier".into(),
            operator: Operator::Exists
        }])),
    ]
}

pub fn ns_selector_strategy() -> impl Strategy<Value = LabelSelector> {
    prop_oneof![
        Just(LabelSelector::everything()),
        (0..NAMESPACES.len()).prop_map(|n| LabelSelector::from_requirements(vec![Requirement {
            key: "kubernetes.io/metadata.name".into(),
            operator: Operator::In(ValueSet::from([NAMESPACES[n].to_string()])),
        }])),
    ]
}

pub fn ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
}

pub fn peer_strategy() -> impl Strategy<Value = NetworkPolicyPeer> {
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

pub fn port_strategy() -> impl Strategy<Value = NetworkPolicyPort> {
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

pub fn rule_strategy() -> impl Strategy<Value = NetworkPolicyRule> {
    (
        proptest::option::of(proptest::collection::vec(peer_strategy(), 1..3)),
        proptest::option::of(proptest::collection::vec(port_strategy(), 1..3)),
    )
        .prop_map(|(peers, ports)| NetworkPolicyRule {
            peers,
            ports,
            location: None,
        })
}

pub fn policy_strategy() -> impl Strategy<Value = NetworkPolicy> {
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

pub fn anp_strategy() -> impl Strategy<Value = Policy> {
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
        .prop_map(|(action, peer, ports)| PolicyRule {
            name: None,
            action,
            matcher: RuleMatcher::Cluster(ClusterRule {
                peers: vec![peer],
                ports,
            }),
            location: None,
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
                (PolicyKind::BaselineAdminNetworkPolicy, "kube-baseline")
            } else {
                (PolicyKind::AdminNetworkPolicy, "kube-admin")
            };
            let strip_pass = |rules: Vec<PolicyRule>| -> Vec<PolicyRule> {
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
            Policy {
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

pub fn gnp_strategy() -> impl Strategy<Value = Policy> {
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
            PolicyRule {
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
                location: None,
            }
        });
    (
        0u8..3,
        0..APPS.len(),
        proptest::collection::vec(rule, 0..3),
        proptest::bool::ANY,
    )
        .prop_map(|(order, app, ingress, custom_tier)| Policy {
            kind: PolicyKind::GlobalNetworkPolicy,
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

/// A live, running pod with one container port named `http`.
pub fn pod(namespace: &str, name: &str, labels: Labels, ip: IpAddr, node: &str, http: u16) -> Pod {
    Pod {
        namespace: namespace.into(),
        name: name.into(),
        labels,
        ips: vec![ip],
        node: Some(node.into()),
        host_network: false,
        service_account: "default".into(),
        ports: vec![ContainerPort {
            name: Some("http".into()),
            port: http,
            protocol: Protocol::Tcp,
        }],
        phase: Some("Running".into()),
        origin: PodOrigin::Live,
        workload: WorkloadRef {
            kind: "pod".into(),
            name: name.into(),
        },
        source: None,
        replicas: 1,
    }
}

pub fn cluster_strategy(with_anp: bool, with_calico: bool) -> impl Strategy<Value = Cluster> {
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
                    source: None,
                });
            }
            for (i, (n, app, tier, http)) in pods.into_iter().enumerate() {
                let mut l = labels(&[("app", APPS[app])]);
                if tier {
                    l.insert("tier".into(), "x".into());
                }
                cluster.pods.push(pod(
                    NAMESPACES[n],
                    &format!("p{i}"),
                    l,
                    ip(u8::try_from(i + 1).expect("small")),
                    "node-1",
                    if http { 80 } else { 8080 },
                ));
            }
            for (i, p) in policies.iter_mut().enumerate() {
                p.name = format!("np{i}");
            }
            for (i, p) in anps.iter_mut().enumerate() {
                p.name = if p.kind == PolicyKind::BaselineAdminNetworkPolicy {
                    "default".into()
                } else {
                    format!("anp{i}")
                };
            }
            anps.dedup_by(|a, b| {
                a.kind == PolicyKind::BaselineAdminNetworkPolicy
                    && b.kind == PolicyKind::BaselineAdminNetworkPolicy
            });
            for (i, p) in gnps.iter_mut().enumerate() {
                p.name = format!("gnp{i}");
            }
            cluster.policies.extend(
                policies
                    .into_iter()
                    .map(|p| bulkhead_model::Policy::from_network_policy(p, None)),
            );
            if with_anp {
                cluster.policies.extend(anps);
            }
            if with_calico {
                cluster.policies.extend(gnps);
            }
            cluster.finish();
            cluster
        })
}
