//! The vendor-neutral domain of Bulkhead: what a cluster and its policies *are*, independent of
//! how they were written down (YAML, the API server) and of how they are evaluated.
//!
//! Everything here is validated on construction ("parse, don't validate"): a [`LabelSelector`]
//! only holds well-formed requirements, an [`IpBlock`] only holds excepts inside its CIDR, a
//! [`PortSet`] only holds ordered, disjoint ranges. Downstream crates never re-check.

pub mod addr_ranges;
pub mod calico_selector;
pub mod cluster;
pub mod diagnostic;
pub mod edit_distance;
pub mod ip_block;
pub mod labels;
pub mod network_policy;
pub mod policy;
pub mod ports;
pub mod source;

pub use addr_ranges::AddrRanges;
pub use calico_selector::CalicoSelector;
pub use cluster::{Cluster, Namespace, Node, Pod, PodOrigin, ServiceAccount, WorkloadRef};
pub use diagnostic::{Diagnostic, Severity};
pub use ip_block::IpBlock;
pub use labels::{LabelSelector, Labels, Operator, Requirement, ValueSet};
pub use network_policy::{
    Direction, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicyRule, PolicyTypes,
    PortSpec,
};
pub use policy::{
    Action, Atom, CalicoPort, CalicoRule, ClusterPeer, ClusterPort, ClusterRule, EntityRule,
    IcmpMatch, NetworkSet, Policy, PolicyKind, PolicyRule, RuleMatcher, ServiceAccountMatch,
    StagedAction, Subject, Tier, TierDefault,
};
pub use ports::{PortRange, PortSet, Protocol};
pub use source::SourceLocation;
