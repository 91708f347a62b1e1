//! Ordered, tiered policy: Calico v3 (NetworkPolicy, GlobalNetworkPolicy, their staged forms),
//! AdminNetworkPolicy / BaselineAdminNetworkPolicy (v1alpha1) and ClusterNetworkPolicy
//! (v1alpha2), normalised into one model (semantics.md §2, §3, §3.8).
//!
//! Kubernetes NetworkPolicies keep their own type ([`crate::NetworkPolicy`]); the engine places
//! them in tier `default` at order 1000 (CAL-K8S-1).

use crate::calico_selector::CalicoSelector;
use crate::labels::{LabelSelector, Labels};
use crate::network_policy::PolicyTypes;
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
pub enum TieredKind {
    CalicoNetworkPolicy,
    GlobalNetworkPolicy,
    AdminNetworkPolicy,
    BaselineAdminNetworkPolicy,
    ClusterNetworkPolicy,
}

impl TieredKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TieredKind::CalicoNetworkPolicy => "CalicoNetworkPolicy",
            TieredKind::GlobalNetworkPolicy => "GlobalNetworkPolicy",
            TieredKind::AdminNetworkPolicy => "AdminNetworkPolicy",
            TieredKind::BaselineAdminNetworkPolicy => "BaselineAdminNetworkPolicy",
            TieredKind::ClusterNetworkPolicy => "ClusterNetworkPolicy",
        }
    }

    /// Calico kinds are only evaluated with Calico semantics.
    pub fn is_calico(self) -> bool {
        matches!(
            self,
            TieredKind::CalicoNetworkPolicy | TieredKind::GlobalNetworkPolicy
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
}

#[derive(Clone, Debug, PartialEq)]
pub struct TieredPolicy {
    pub kind: TieredKind,
    /// `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    pub name: String,
    pub tier: String,
    /// `None` runs last in its tier (CAL-ORD-3); ANP priority and CNP priority land here.
    pub order: Option<f64>,
    pub staged: Option<StagedAction>,
    pub subject: Subject,
    pub types: PolicyTypes,
    pub ingress: Vec<TieredRule>,
    pub egress: Vec<TieredRule>,
    /// `preDNAT`/`doNotTrack` policies only act on host endpoints (CAL-HEP-2).
    pub host_endpoints_only: bool,
    pub source: Option<SourceLocation>,
}

impl TieredPolicy {
    pub fn rules(&self, direction: crate::Direction) -> &[TieredRule] {
        match direction {
            crate::Direction::Ingress => &self.ingress,
            crate::Direction::Egress => &self.egress,
        }
    }

    /// `ns/name` or `name`.
    pub fn key(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// Which endpoints a policy applies to.
#[derive(Clone, Debug, PartialEq)]
pub enum Subject {
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
pub struct TieredRule {
    pub name: Option<String>,
    pub action: Action,
    pub matcher: RuleMatcher,
    /// Where the rule is written, so findings about one rule point at it.
    pub location: Option<SourceLocation>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RuleMatcher {
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
