//! What a single peer entry or port entry matches (K8S-PEER-*, K8S-IPB-*, K8S-PORT-*). The
//! per-flow and whole-cluster paths both call these, so they agree by construction.

use crate::verdict::Note;
use bulkhead_model::{
    Cluster, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicyRule, Pod, PortRange, PortSet,
    PortSpec, Protocol,
};
use std::net::IpAddr;

/// The remote side of a rule as a peer matcher sees it.
#[derive(Clone, Copy, Debug)]
pub struct Peer<'a> {
    /// The remote pod, when it is a (non-hostNetwork) pod endpoint.
    pub pod: Option<&'a Pod>,
    /// The remote address for this flow's family; `None` for a template pod (IP not known yet).
    pub ip: Option<IpAddr>,
    /// The labels of the remote pod's namespace (looked up once by the engine).
    pub namespace_labels: Option<&'a bulkhead_model::Labels>,
}

/// Whether `peer` matches one `from`/`to` entry of a policy in `policy_namespace`.
pub fn peer_matches(
    cluster: &Cluster,
    policy_namespace: &str,
    entry: &NetworkPolicyPeer,
    peer: Peer<'_>,
    // `None` when the caller has no use for notes: the compiled map asks this millions of
    // times, and formatting a note it then drops was a sixth of L's whole `map`.
    notes: Option<&mut Vec<Note>>,
) -> bool {
    match entry {
        NetworkPolicyPeer::Pods {
            namespace_selector,
            pod_selector,
        } => {
            // K8S-PEER-1: selectors only ever select pods.
            let Some(pod) = peer.pod else { return false };
            let namespace_ok = match namespace_selector {
                None => pod.namespace == policy_namespace,
                Some(selector) => peer
                    .namespace_labels
                    .or_else(|| cluster.namespace(&pod.namespace).map(|n| &n.labels))
                    .is_some_and(|labels| selector.matches(labels)),
            };
            namespace_ok && pod_selector.as_ref().is_none_or(|s| s.matches(&pod.labels))
        }
        NetworkPolicyPeer::IpBlock(block) => match peer.ip {
            Some(ip) => block.contains(ip),
            None => {
                // A workload template has no IP yet. Only a block covering the whole address
                // family is certain to contain it (its excepts cannot be judged).
                let certain = block.covers_whole_family();
                let Some(notes) = notes else {
                    return certain;
                };
                notes.push(Note {
                    code: "POD_IP_UNKNOWN",
                    message: format!(
                        "{} has no IP in the snapshot; ipBlock {block} {}",
                        peer.pod.map_or_else(|| "the peer".to_string(), Pod::key),
                        if certain {
                            "covers every address, so it is taken to match"
                        } else {
                            "is taken not to match"
                        }
                    ),
                });
                certain
            }
        },
    }
}

/// Whether one `ports` entry matches the flow. Named ports resolve on the destination pod.
pub fn port_matches(
    entry: &NetworkPolicyPort,
    destination: Option<&Pod>,
    protocol: Protocol,
    port: Option<u16>,
) -> bool {
    if !protocol.has_ports() || entry.protocol != protocol.canonical() {
        return false;
    }
    match (&entry.port, port) {
        (PortSpec::Any, _) => true,
        (PortSpec::Range(range), Some(p)) => range.contains(p),
        (PortSpec::Named(name), Some(p)) => {
            destination.and_then(|d| d.named_port(name, entry.protocol)) == Some(p)
        }
        (_, None) => false,
    }
}

/// The ports of `protocol` that one rule's `ports` allow towards `destination`.
pub fn rule_ports(
    rule: &NetworkPolicyRule,
    destination: Option<&Pod>,
    protocol: Protocol,
) -> PortSet {
    let Some(entries) = &rule.ports else {
        return PortSet::all();
    };
    let mut set = PortSet::empty();
    for entry in entries.iter().filter(|e| e.protocol == protocol) {
        match &entry.port {
            PortSpec::Any => return PortSet::all(),
            PortSpec::Range(range) => set.insert(*range),
            PortSpec::Named(name) => {
                if let Some(p) = destination.and_then(|d| d.named_port(name, protocol)) {
                    set.insert(PortRange::single(p));
                }
            }
        }
    }
    set
}
