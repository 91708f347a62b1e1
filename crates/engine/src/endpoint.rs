//! What sits at either end of a flow (semantics.md §4 pre-check 3).

use bulkhead_model::Protocol;
use std::net::IpAddr;

/// An endpoint of a flow. A hostNetwork pod is not an endpoint of its own: it is its node
/// (K8S-HOST-3, model (b)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// Index into `Cluster::pods`.
    Pod(usize),
    /// Index into `Cluster::nodes`.
    Node(usize),
    /// An address that belongs to no pod and no node of the snapshot.
    External(IpAddr),
}

/// One new connection, post-DNAT (semantics.md §0.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    pub src: Endpoint,
    pub dst: Endpoint,
    pub protocol: Protocol,
    /// Destination port; `None` for protocols without ports.
    pub port: Option<u16>,
    /// ICMP type and code, informative only for NetworkPolicy.
    pub icmp: Option<(u8, Option<u8>)>,
}
