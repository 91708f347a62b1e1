//! The one policy IR: every policy API lowered into ordered policies in tiers (semantics.md §2,
//! §3, §3.8).
//!
//! * `networking.k8s.io/v1` NetworkPolicy: tier `default`, order 1000 (CAL-K8S-1), its rules
//!   Allow-only, its subject the pods of its namespace ([`Subject::PodsInNamespace`]);
//! * Calico v3 NetworkPolicy / GlobalNetworkPolicy (and their staged forms) in their own tiers;
//! * AdminNetworkPolicy / BaselineAdminNetworkPolicy (v1alpha1) and ClusterNetworkPolicy
//!   (v1alpha2) in `kube-admin` / `kube-baseline` with their priority as order.
//!
//! Every consumer (the engine's pipeline, the compiled map, the dataplane programs, the lint
//! rules) walks one shape: [`Policy`] with [`PolicyRule`]s. What differs per API is only how a
//! rule's peer is matched ([`RuleMatcher`]), and [`PolicyRule::visit_atoms`] yields the CIDRs,
//! protocols and port boundaries of any rule, so no consumer walks the matchers itself to find
//! them.

use crate::calico_selector::CalicoSelector;
use crate::labels::{LabelSelector, Labels};
use crate::network_policy::{NetworkPolicyPeer, NetworkPolicyRule, PolicyTypes, PortSpec};
use crate::ports::{PortRange, Protocol};
use crate::source::SourceLocation;
use ipnet::IpNet;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Allow,
    Deny,
    Pass,
    Log,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "Allow",
            Action::Deny => "Deny",
            Action::Pass => "Pass",
            Action::Log => "Log",
        }
    }
}

/// What happens to traffic that reaches the end of a tier that applies to the endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TierDefault {
    Deny,
    Pass,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tier {
    pub name: String,
    /// `None` sorts after every ordered tier (CAL-ORD-1).
    pub order: Option<f64>,
    pub default_action: TierDefault,
    pub source: Option<SourceLocation>,
}

impl Tier {
    pub const KUBE_ADMIN: &'static str = "kube-admin";
    pub const DEFAULT: &'static str = "default";
    pub const KUBE_BASELINE: &'static str = "kube-baseline";

    /// The three tiers every cluster has (CAL-ORD-1).
    pub fn built_in() -> Vec<Tier> {
        vec![
            Tier {
                name: Self::KUBE_ADMIN.into(),
                order: Some(1_000.0),
                default_action: TierDefault::Pass,
                source: None,
            },
            Tier {
                name: Self::DEFAULT.into(),
                order: Some(1_000_000.0),
                default_action: TierDefault::Deny,
                source: None,
            },
            Tier {
                name: Self::KUBE_BASELINE.into(),
                order: Some(10_000_000.0),
                default_action: TierDefault::Pass,
                source: None,
            },
        ]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyKind {
    /// `networking.k8s.io/v1` NetworkPolicy.
    NetworkPolicy,
    CalicoNetworkPolicy,
    GlobalNetworkPolicy,
    AdminNetworkPolicy,
    BaselineAdminNetworkPolicy,
    ClusterNetworkPolicy,
}

impl PolicyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::NetworkPolicy => "NetworkPolicy",
            PolicyKind::CalicoNetworkPolicy => "CalicoNetworkPolicy",
            PolicyKind::GlobalNetworkPolicy => "GlobalNetworkPolicy",
            PolicyKind::AdminNetworkPolicy => "AdminNetworkPolicy",
            PolicyKind::BaselineAdminNetworkPolicy => "BaselineAdminNetworkPolicy",
            PolicyKind::ClusterNetworkPolicy => "ClusterNetworkPolicy",
        }
    }

    /// The kind as a person reads it in a verdict: a Calico NetworkPolicy is a `NetworkPolicy`
    /// there, as Calico's own tools print it.
    pub fn display_name(self) -> &'static str {
        match self {
            PolicyKind::CalicoNetworkPolicy => "NetworkPolicy",
            other => other.as_str(),
        }
    }

    /// The policy.networking.k8s.io kinds (ANP, BANP, CNP), whose priority ties upstream
    /// leaves undefined.
    pub fn is_cluster_kind(self) -> bool {
        matches!(
            self,
            PolicyKind::AdminNetworkPolicy
                | PolicyKind::BaselineAdminNetworkPolicy
                | PolicyKind::ClusterNetworkPolicy
        )
    }

    /// Calico kinds are only evaluated with Calico semantics.
    pub fn is_calico(self) -> bool {
        matches!(
            self,
            PolicyKind::CalicoNetworkPolicy | PolicyKind::GlobalNetworkPolicy
        )
    }
}

/// A staged policy's effect on the "what if" verdict (CAL-STG-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StagedAction {
    /// Insert, or replace the enforced policy of the same name.
    Set,
    /// Remove the enforced policy of the same name.
    Delete,
    /// Bulkhead's per-policy audit (`bulkhead.io/mode: audit` on a policy of any API): not
    /// enforced, and in the "what if" verdict as [`StagedAction::Set`]. Unlike Calico's staged
    /// kinds it has no enforced counterpart, and the dataplane evaluates it too (would-deny
    /// and would-allow flow logs).
    Audit,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub kind: PolicyKind,
    /// `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    pub name: String,
    pub tier: String,
    /// `None` runs last in its tier (CAL-ORD-3); ANP priority and CNP priority land here.
    pub order: Option<f64>,
    pub staged: Option<StagedAction>,
    pub subject: Subject,
    pub types: PolicyTypes,
    pub ingress: Vec<PolicyRule>,
    pub egress: Vec<PolicyRule>,
    /// `preDNAT`/`doNotTrack` policies only act on host endpoints (CAL-HEP-2).
    pub host_endpoints_only: bool,
    pub source: Option<SourceLocation>,
}

impl Policy {
    pub fn rules(&self, direction: crate::Direction) -> &[PolicyRule] {
        match direction {
            crate::Direction::Ingress => &self.ingress,
            crate::Direction::Egress => &self.egress,
        }
    }

    pub fn rules_mut(&mut self, direction: crate::Direction) -> &mut Vec<PolicyRule> {
        match direction {
            crate::Direction::Ingress => &mut self.ingress,
            crate::Direction::Egress => &mut self.egress,
        }
    }

    /// `ns/name` or `name`.
    pub fn key(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        }
    }

    /// Whether this is a `networking.k8s.io/v1` NetworkPolicy.
    pub fn is_kubernetes(&self) -> bool {
        self.kind == PolicyKind::NetworkPolicy
    }

    /// The rules of one direction with their index, for any API.
    pub fn indexed_rules(
        &self,
        direction: crate::Direction,
    ) -> impl Iterator<Item = (usize, &PolicyRule)> {
        self.rules(direction).iter().enumerate()
    }

    /// The namespaceSelectors of this policy's Kubernetes peers (both directions, repeats
    /// included): engines and lint rules work out each distinct one's namespaces once.
    pub fn kubernetes_namespace_selectors(&self) -> impl Iterator<Item = &LabelSelector> {
        self.ingress
            .iter()
            .chain(&self.egress)
            .filter_map(|rule| match &rule.matcher {
                RuleMatcher::Kubernetes(rule) => Some(rule),
                _ => None,
            })
            .flat_map(|rule| rule.peers.iter().flatten())
            .filter_map(|peer| match peer {
                NetworkPolicyPeer::Pods {
                    namespace_selector: Some(s),
                    ..
                } => Some(s),
                _ => None,
            })
    }

    /// Every atom of every rule (both directions): see [`PolicyRule::visit_atoms`].
    pub fn visit_atoms(&self, visit: &mut dyn FnMut(Atom<'_>)) {
        for rule in self.ingress.iter().chain(&self.egress) {
            rule.visit_atoms(visit);
        }
    }

    /// Lowers a Kubernetes NetworkPolicy into the IR: tier `default`, order 1000 (CAL-K8S-1),
    /// Allow rules. `staged` is set for a StagedKubernetesNetworkPolicy.
    pub fn from_network_policy(
        policy: crate::NetworkPolicy,
        staged: Option<StagedAction>,
    ) -> Policy {
        let lower = |rules: Vec<NetworkPolicyRule>| -> Vec<PolicyRule> {
            rules
                .into_iter()
                .map(|rule| PolicyRule {
                    name: None,
                    action: Action::Allow,
                    location: rule.location.clone(),
                    matcher: RuleMatcher::Kubernetes(rule),
                })
                .collect()
        };
        Policy {
            kind: PolicyKind::NetworkPolicy,
            namespace: Some(policy.namespace),
            name: policy.name,
            tier: Tier::DEFAULT.to_string(),
            order: Some(KUBERNETES_ORDER),
            staged,
            subject: Subject::PodsInNamespace(policy.pod_selector),
            types: policy.policy_types,
            ingress: lower(policy.ingress),
            egress: lower(policy.egress),
            host_endpoints_only: false,
            source: policy.source,
        }
    }
}

/// The order Kubernetes NetworkPolicies have in tier `default` (CAL-K8S-1).
pub const KUBERNETES_ORDER: f64 = 1000.0;

/// What a rule is built from, as far as splitting the address and port spaces goes: the CIDRs it
/// tests (including excepts and `notNets`), the protocols it names, its destination port ranges
/// and named ports. Analyses probe at these boundaries; the compiled map cuts the address space
/// at them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Atom<'a> {
    Net(IpNet),
    Protocol(Protocol),
    /// A destination port range; `None` protocol: the rule does not name one (Calico).
    Ports(Option<Protocol>, PortRange),
    NamedPort(Option<Protocol>, &'a str),
}

impl PolicyRule {
    /// Calls `visit` with every atom of the rule, whatever its API.
    pub fn visit_atoms(&self, visit: &mut dyn FnMut(Atom<'_>)) {
        match &self.matcher {
            RuleMatcher::Kubernetes(rule) => {
                for peer in rule.peers.iter().flatten() {
                    if let NetworkPolicyPeer::IpBlock(block) = peer {
                        visit(Atom::Net(block.cidr()));
                        for except in block.except() {
                            visit(Atom::Net(*except));
                        }
                    }
                }
                for port in rule.ports.iter().flatten() {
                    visit(Atom::Protocol(port.protocol));
                    match &port.port {
                        PortSpec::Any => {}
                        PortSpec::Range(range) => visit(Atom::Ports(Some(port.protocol), *range)),
                        PortSpec::Named(name) => visit(Atom::NamedPort(Some(port.protocol), name)),
                    }
                }
            }
            RuleMatcher::Cluster(rule) => {
                for peer in &rule.peers {
                    if let ClusterPeer::Networks(nets) = peer {
                        nets.iter().for_each(|n| visit(Atom::Net(*n)));
                    }
                }
                for port in rule.ports.iter().flatten() {
                    match port {
                        ClusterPort::Range { protocol, range } => {
                            visit(Atom::Protocol(*protocol));
                            visit(Atom::Ports(Some(*protocol), *range));
                        }
                        ClusterPort::AllOf(protocol) => visit(Atom::Protocol(*protocol)),
                        ClusterPort::Named(name) => visit(Atom::NamedPort(None, name)),
                    }
                }
            }
            RuleMatcher::Calico(rule) => {
                let protocol = rule.protocol.map(Protocol::canonical);
                for p in [rule.protocol, rule.not_protocol].into_iter().flatten() {
                    visit(Atom::Protocol(p.canonical()));
                }
                for entity in [&rule.source, &rule.destination] {
                    for net in entity.nets.iter().chain(&entity.not_nets) {
                        visit(Atom::Net(*net));
                    }
                }
                let destination = &rule.destination;
                for port in destination.ports.iter().chain(&destination.not_ports) {
                    match port {
                        CalicoPort::Range(range) => visit(Atom::Ports(protocol, *range)),
                        CalicoPort::Named(name) => visit(Atom::NamedPort(protocol, name)),
                    }
                }
            }
        }
    }
}

/// Which endpoints a policy applies to.
#[derive(Clone, Debug, PartialEq)]
pub enum Subject {
    /// Kubernetes NetworkPolicy: the pods of the policy's own namespace that `podSelector`
    /// matches (K8S-ISO-1).
    PodsInNamespace(LabelSelector),
    /// Calico: `selector` over the pod's Calico labels; a GNP may add `namespaceSelector`, and
    /// either may add `serviceAccountSelector` (CAL-SEL-*). A namespaced policy only ever
    /// selects pods of its own namespace.
    Calico {
        selector: CalicoSelector,
        namespace_selector: Option<CalicoSelector>,
        service_account_selector: Option<CalicoSelector>,
    },
    /// ANP / BANP / CNP: all pods of matching namespaces, or matching pods in matching
    /// namespaces (ANP-SUBJ-1).
    Namespaces(LabelSelector),
    Pods {
        namespace_selector: LabelSelector,
        pod_selector: LabelSelector,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct PolicyRule {
    pub name: Option<String>,
    pub action: Action,
    pub matcher: RuleMatcher,
    /// Where the rule is written, so findings about one rule point at it.
    pub location: Option<SourceLocation>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RuleMatcher {
    /// A Kubernetes rule: peers OR-ed, ports OR-ed, as the API server defaults them.
    Kubernetes(NetworkPolicyRule),
    Calico(Box<CalicoRule>),
    Cluster(ClusterRule),
}

#[derive(Clone, Debug, PartialEq)]
pub struct CalicoRule {
    pub protocol: Option<Protocol>,
    pub not_protocol: Option<Protocol>,
    pub ip_version: Option<u8>,
    pub icmp: Option<IcmpMatch>,
    pub not_icmp: Option<IcmpMatch>,
    pub source: EntityRule,
    pub destination: EntityRule,
    /// An L7 `http` match, which an L3/L4 engine cannot judge (noted in explanations).
    pub has_http_match: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpMatch {
    pub icmp_type: u8,
    pub code: Option<u8>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct EntityRule {
    pub nets: Vec<IpNet>,
    pub not_nets: Vec<IpNet>,
    pub selector: Option<CalicoSelector>,
    pub not_selector: Option<CalicoSelector>,
    pub namespace_selector: Option<CalicoSelector>,
    pub ports: Vec<CalicoPort>,
    pub not_ports: Vec<CalicoPort>,
    pub service_accounts: Option<ServiceAccountMatch>,
    /// A `services` match: Service endpoints are not modelled, so the rule never matches.
    pub services: bool,
}

impl EntityRule {
    /// True when the rule names the peer's identity (pods, network sets, service accounts),
    /// which only known endpoints can satisfy.
    pub fn has_identity_match(&self) -> bool {
        self.selector.is_some()
            || self.namespace_selector.is_some()
            || self.service_accounts.is_some()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum CalicoPort {
    Range(PortRange),
    Named(String),
}

impl fmt::Display for CalicoPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CalicoPort::Range(r) if r.start() == r.end() => write!(f, "{}", r.start()),
            CalicoPort::Range(r) => write!(f, "{}:{}", r.start(), r.end()),
            CalicoPort::Named(n) => f.write_str(n),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServiceAccountMatch {
    pub names: Vec<String>,
    pub selector: Option<CalicoSelector>,
}

/// An ANP/BANP/CNP rule: peers OR-ed, ports OR-ed (`None` = every port and protocol).
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterRule {
    pub peers: Vec<ClusterPeer>,
    pub ports: Option<Vec<ClusterPort>>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ClusterPeer {
    Namespaces(LabelSelector),
    Pods {
        namespace_selector: LabelSelector,
        pod_selector: LabelSelector,
    },
    Nodes(LabelSelector),
    Networks(Vec<IpNet>),
    /// Never matches in a static engine (ANP-PEER-4).
    DomainNames(Vec<String>),
}

impl fmt::Display for ClusterPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterPeer::Namespaces(s) => write!(f, "namespaces {s}"),
            ClusterPeer::Pods {
                namespace_selector,
                pod_selector,
            } => {
                write!(f, "namespaces {namespace_selector} & pods {pod_selector}")
            }
            ClusterPeer::Nodes(s) => write!(f, "nodes {s}"),
            ClusterPeer::Networks(n) => {
                let n: Vec<String> = n.iter().map(ToString::to_string).collect();
                write!(f, "networks {}", n.join(","))
            }
            ClusterPeer::DomainNames(d) => write!(f, "domainNames {}", d.join(",")),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ClusterPort {
    Range {
        protocol: Protocol,
        range: PortRange,
    },
    /// Every port of a protocol (`tcp: {}` in v1alpha2, accepted with a warning).
    AllOf(Protocol),
    Named(String),
}

impl fmt::Display for ClusterPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterPort::Range { protocol, range } => write!(f, "{protocol}/{range}"),
            ClusterPort::AllOf(p) => write!(f, "{p}/all"),
            ClusterPort::Named(n) => write!(f, "{n}"),
        }
    }
}

/// A Calico NetworkSet (namespaced) or GlobalNetworkSet: labelled CIDRs that rule selectors
/// can match (CAL-ENT-5).
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkSet {
    pub namespace: Option<String>,
    pub name: String,
    pub labels: Labels,
    pub nets: Vec<IpNet>,
}
