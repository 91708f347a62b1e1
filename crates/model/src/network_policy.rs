//! The `networking.k8s.io/v1` NetworkPolicy after defaulting (semantics.md §1.2-1.7).
//!
//! Absent and empty lists are already folded: a `None` peer list means "every peer", a `None`
//! port list means "every port and protocol" (K8S-RULE-2/3), so the engine has one meaning per
//! shape.

use crate::ip_block::IpBlock;
use crate::labels::LabelSelector;
use crate::ports::{PortRange, Protocol};
use crate::source::SourceLocation;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Effective `policyTypes` (K8S-PT-*): which directions the policy isolates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PolicyTypes {
    pub ingress: bool,
    pub egress: bool,
    /// True when `policyTypes` was omitted and these values are the API server's default.
    pub defaulted: bool,
}

impl PolicyTypes {
    pub fn contains(self, direction: Direction) -> bool {
        match direction {
            Direction::Ingress => self.ingress,
            Direction::Egress => self.egress,
        }
    }
}

impl fmt::Display for PolicyTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names = Vec::new();
        if self.ingress {
            names.push("Ingress");
        }
        if self.egress {
            names.push("Egress");
        }
        write!(f, "[{}]", names.join(", "))?;
        if self.defaulted {
            f.write_str(" (defaulted)")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkPolicy {
    pub namespace: String,
    pub name: String,
    pub pod_selector: LabelSelector,
    pub policy_types: PolicyTypes,
    pub ingress: Vec<NetworkPolicyRule>,
    pub egress: Vec<NetworkPolicyRule>,
    pub source: Option<SourceLocation>,
}

impl NetworkPolicy {
    pub fn rules(&self, direction: Direction) -> &[NetworkPolicyRule] {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkPolicyRule {
    /// `from` (ingress) or `to` (egress). `None`: every peer, including external IPs.
    pub peers: Option<Vec<NetworkPolicyPeer>>,
    /// `None`: every port of every protocol.
    pub ports: Option<Vec<NetworkPolicyPort>>,
    /// Where the rule is written, so findings about one rule point at it.
    pub location: Option<SourceLocation>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetworkPolicyPeer {
    /// `podSelector` and/or `namespaceSelector`. `None` means the field was absent, which is not
    /// the same as the empty selector (K8S-SEL-3): an absent namespaceSelector is "the policy's
    /// namespace", an absent podSelector is "all pods".
    Pods {
        namespace_selector: Option<LabelSelector>,
        pod_selector: Option<LabelSelector>,
    },
    IpBlock(IpBlock),
}

impl fmt::Display for NetworkPolicyPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkPolicyPeer::Pods {
                namespace_selector,
                pod_selector,
            } => {
                match namespace_selector {
                    Some(ns) => write!(f, "namespaces {ns}")?,
                    None => f.write_str("same namespace")?,
                }
                match pod_selector {
                    Some(pods) => write!(f, " & pods {pods}"),
                    None => f.write_str(" & all pods"),
                }
            }
            NetworkPolicyPeer::IpBlock(block) => write!(f, "ipBlock {block}"),
        }
    }
}

/// One entry of `ports` with the protocol defaulted to TCP (K8S-PORT-1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkPolicyPort {
    pub protocol: Protocol,
    pub port: PortSpec,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortSpec {
    /// `port` omitted: every port of the protocol.
    Any,
    /// A number, or `port`..`endPort`.
    Range(PortRange),
    /// A container port name, resolved on the destination pod.
    Named(String),
}

impl fmt::Display for NetworkPolicyPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.port {
            PortSpec::Any => write!(f, "{}/all", self.protocol),
            PortSpec::Range(r) => write!(f, "{}/{r}", self.protocol),
            PortSpec::Named(n) => write!(f, "{}/{n}", self.protocol),
        }
    }
}
