//! Whole-cluster connectivity: for every pair of pod endpoints and every L4 protocol, the exact
//! set of destination ports allowed, optionally grouped by workload or namespace.
//!
//! Grouping stays exact: a grouped row carries the ports *some* member pair can use and the
//! ports *every* member pair can use, so "all pods of A reach all pods of B" is never claimed
//! when only some do.

use crate::endpoint::Endpoint;
use crate::evaluate::Engine;
use bulkhead_model::{Direction, PortSet, Protocol};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Aggregation {
    #[default]
    Pod,
    Workload,
    Namespace,
}

#[derive(Clone, Debug, Default)]
pub struct ConnectivityOptions {
    pub aggregation: Aggregation,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    /// `ns/pod`, `ns/kind/name` or `ns`, depending on the aggregation.
    pub from: String,
    pub to: String,
    pub protocol: Protocol,
    /// Ports at least one member pair may use.
    pub ports: PortSet,
    /// Ports every member pair may use (equal to `ports` at pod level).
    pub ports_all_pairs: PortSet,
    /// Member pairs with at least one allowed port, and all member pairs.
    pub pairs_allowed: usize,
    pub pairs_total: usize,
}

impl Engine<'_> {
    /// Every pod endpoint (hostNetwork pods are their nodes and have no row of their own).
    pub fn pod_endpoints(&self) -> Vec<usize> {
        self.cluster()
            .pods
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_endpoint() && !p.host_network)
            .map(|(i, _)| i)
            .collect()
    }

    /// The ports of `protocol` allowed from pod `src` to pod `dst` (both directions combined).
    pub fn allowed_ports(&self, src: usize, dst: usize, protocol: Protocol) -> PortSet {
        if src == dst
            && self.options().self_traffic_allowed
            && !self.is_template_pod(Endpoint::Pod(src))
        {
            return PortSet::all();
        }
        let (s, d) = (Endpoint::Pod(src), Endpoint::Pod(dst));
        let ipv4 = self.flow_is_ipv4(s, d);
        let egress = self.direction_ports(Direction::Egress, src, d, ipv4, protocol);
        if egress.is_empty() {
            return egress;
        }
        egress.intersection(&self.direction_ports(Direction::Ingress, dst, s, ipv4, protocol))
    }

    pub fn connectivity(&self, options: &ConnectivityOptions) -> Vec<Connection> {
        let pods = self.pod_endpoints();
        let group_of = |i: usize| -> String {
            let p = &self.cluster().pods[i];
            match options.aggregation {
                Aggregation::Pod => p.key(),
                Aggregation::Workload => format!("{}/{}", p.namespace, p.workload),
                Aggregation::Namespace => p.namespace.clone(),
            }
        };
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for &i in &pods {
            groups.entry(group_of(i)).or_default().push(i);
        }
        let mut out = Vec::new();
        for (from, sources) in &groups {
            for (to, destinations) in &groups {
                for protocol in Protocol::L4 {
                    let mut union = PortSet::empty();
                    let mut common: Option<PortSet> = None;
                    let mut allowed_pairs = 0;
                    for &s in sources {
                        for &d in destinations {
                            let ports = self.allowed_ports(s, d, protocol);
                            if !ports.is_empty() {
                                allowed_pairs += 1;
                            }
                            common = Some(match common {
                                None => ports.clone(),
                                Some(c) => c.intersection(&ports),
                            });
                            union = union.union(&ports);
                        }
                    }
                    if union.is_empty() {
                        continue;
                    }
                    out.push(Connection {
                        from: from.clone(),
                        to: to.clone(),
                        protocol,
                        ports: union,
                        ports_all_pairs: common.unwrap_or_default(),
                        pairs_allowed: allowed_pairs,
                        pairs_total: sources.len() * destinations.len(),
                    });
                }
            }
        }
        out
    }
}
