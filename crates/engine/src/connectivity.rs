//! Whole-cluster connectivity: for every pair of pod endpoints and every L4 protocol, the exact
//! set of destination ports allowed, optionally grouped by workload or namespace.
//!
//! Grouping stays exact: a grouped row carries the ports *some* member pair can use and the
//! ports *every* member pair can use, so "all pods of A reach all pods of B" is never claimed
//! when only some do.

use crate::compiled::CompiledConnectivity;
use crate::endpoint::Endpoint;
use crate::evaluate::Engine;
use bulkhead_model::{Direction, PortSet, Protocol};
use std::collections::BTreeMap;

/// Identity -> (member count, members whose traffic to themselves is SELF).
type GroupMembers = BTreeMap<usize, (usize, usize)>;

/// Ports seen over the member pairs of two groups, for one protocol.
#[derive(Debug, Default)]
struct Accumulated {
    union: PortSet,
    common: Option<PortSet>,
    allowed_pairs: usize,
}

impl Accumulated {
    fn add(&mut self, ports: &PortSet, pairs: usize) {
        if pairs == 0 || ports.is_empty() {
            return;
        }
        self.allowed_pairs += pairs;
        self.union = self.union.union(ports);
        self.common = Some(match self.common.take() {
            None => ports.clone(),
            Some(c) => c.intersection(ports),
        });
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Aggregation {
    #[default]
    Pod,
    Workload,
    Namespace,
}

impl Aggregation {
    /// The row a pod belongs to at this level: `ns/pod`, `ns/kind/name` or `ns`.
    pub fn group_of(self, pod: &bulkhead_model::Pod) -> String {
        match self {
            Aggregation::Pod => pod.key(),
            Aggregation::Workload => pod.workload_key(),
            Aggregation::Namespace => pod.namespace.clone(),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct ConnectivityOptions {
    pub aggregation: Aggregation,
    /// Only these source pods (indices into `Cluster::pods`); `None` = every pod.
    pub from: Option<Vec<usize>>,
    /// Only these destination pods.
    pub to: Option<Vec<usize>>,
    pub protocol: Option<Protocol>,
    /// Only rows that allow this port, narrowed to it.
    pub port: Option<u16>,
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

    /// Every allowed (source, destination, protocol) at the requested level, computed on
    /// identities (see [`crate::compiled`]).
    pub fn connectivity(&self, options: &ConnectivityOptions) -> Vec<Connection> {
        let compiled = self.compile();
        self.connectivity_from(&compiled, options)
    }

    pub fn connectivity_from(
        &self,
        compiled: &CompiledConnectivity,
        options: &ConnectivityOptions,
    ) -> Vec<Connection> {
        let cluster = self.cluster();
        let group_of = |i: usize| options.aggregation.group_of(&cluster.pods[i]);
        let in_set = |set: &Option<Vec<usize>>| -> Vec<bool> {
            let mut mask = vec![set.is_none(); cluster.pods.len()];
            for &i in set.iter().flatten() {
                mask[i] = true;
            }
            mask
        };
        let (is_source, is_destination) = (in_set(&options.from), in_set(&options.to));
        let rows = if options.aggregation == Aggregation::Pod {
            self.pod_connectivity(compiled, &is_source, &is_destination)
        } else {
            self.grouped_connectivity(compiled, &group_of, &is_source, &is_destination)
        };
        rows.into_iter()
            .filter(|c| options.protocol.is_none_or(|p| p.canonical() == c.protocol))
            .filter_map(|mut c| {
                if let Some(port) = options.port {
                    let only = PortSet::from_ranges([bulkhead_model::PortRange::single(port)]);
                    c.ports = c.ports.intersection(&only);
                    c.ports_all_pairs = c.ports_all_pairs.intersection(&only);
                }
                (!c.ports.is_empty()).then_some(c)
            })
            .collect()
    }

    fn grouped_connectivity(
        &self,
        compiled: &CompiledConnectivity,
        group_of: &dyn Fn(usize) -> String,
        is_source: &[bool],
        is_destination: &[bool],
    ) -> Vec<Connection> {
        // Group -> identity -> (member count, members whose traffic to themselves is SELF and
        // counted on both sides), and the reverse for destinations: identity -> groups.
        let collect = |wanted: &[bool]| -> BTreeMap<String, GroupMembers> {
            let mut groups: BTreeMap<String, GroupMembers> = BTreeMap::new();
            for i in self.pod_endpoints() {
                if !wanted[i] {
                    continue;
                }
                if let Some(id) = compiled.identity_of[i] {
                    let entry = groups
                        .entry(group_of(i))
                        .or_default()
                        .entry(id)
                        .or_default();
                    entry.0 += 1;
                    entry.1 +=
                        usize::from(self.is_self_eligible(i) && is_source[i] && is_destination[i]);
                }
            }
            groups
        };
        let groups = collect(is_source);
        let destinations = collect(is_destination);
        let names: Vec<&String> = destinations.keys().collect();
        let mut holders: Vec<Vec<(usize, usize)>> = vec![Vec::new(); compiled.identities.len()];
        for (h, members) in destinations.values().enumerate() {
            for (&id, &(count, _)) in members {
                holders[id].push((h, count));
            }
        }
        let mut out = Vec::new();
        for (name_g, members) in &groups {
            // `names` are the keys of a BTreeMap, so sorted (a scan per group was quadratic
            // in the workloads).
            let g_as_destination = names.binary_search(&name_g).ok();
            // Destination group -> per protocol (union, intersection of present pairs, pairs
            // present with a non-empty set); pairs absent from the rows allow nothing.
            let mut acc: BTreeMap<usize, [Accumulated; 3]> = BTreeMap::new();
            for (&a, &(ca, selfish)) in members {
                for (b, ports) in compiled.row(a) {
                    for &(h, cb) in &holders[*b] {
                        let mut pairs = ca * cb;
                        if Some(h) == g_as_destination && a == *b {
                            pairs -= selfish;
                        }
                        let slot = acc.entry(h).or_default();
                        for k in 0..Protocol::L4.len() {
                            slot[k].add(&ports[k], pairs);
                        }
                    }
                }
            }
            let size_g: usize = members.values().map(|(c, _)| c).sum();
            // A pod reaching itself (SELF) is not a connection between members; it is left out
            // of grouped rows (pod-level rows show it).
            let self_pairs: usize = members.values().map(|(_, s)| s).sum();
            for (h, slots) in acc {
                let size_h: usize = destinations[names[h]].values().map(|(c, _)| c).sum();
                let mut total = size_g * size_h;
                if Some(h) == g_as_destination {
                    total -= self_pairs;
                }
                for (k, protocol) in Protocol::L4.iter().enumerate() {
                    let s = &slots[k];
                    if s.union.is_empty() {
                        continue;
                    }
                    out.push(Connection {
                        from: name_g.clone(),
                        to: names[h].clone(),
                        protocol: *protocol,
                        ports: s.union.clone(),
                        ports_all_pairs: if s.allowed_pairs == total {
                            s.common.clone().unwrap_or_default()
                        } else {
                            PortSet::empty()
                        },
                        pairs_allowed: s.allowed_pairs,
                        pairs_total: total,
                    });
                }
            }
        }
        out
    }

    fn is_self_eligible(&self, pod: usize) -> bool {
        self.options().self_traffic_allowed && !self.is_template_pod(Endpoint::Pod(pod))
    }

    /// Pod-level rows straight from the identity rows: work in proportion to allowed pairs.
    fn pod_connectivity(
        &self,
        compiled: &CompiledConnectivity,
        is_source: &[bool],
        is_destination: &[bool],
    ) -> Vec<Connection> {
        let cluster = self.cluster();
        let mut pods = self.pod_endpoints();
        pods.sort_by_key(|&i| cluster.pods[i].key());
        let rank: std::collections::HashMap<usize, usize> =
            pods.iter().enumerate().map(|(r, &p)| (p, r)).collect();
        // Each pod's `ns/name` once: a map of L has 100k rows.
        let keys: std::collections::HashMap<usize, String> =
            pods.iter().map(|&i| (i, cluster.pods[i].key())).collect();
        let mut out = Vec::new();
        for &src in pods.iter().filter(|&&p| is_source[p]) {
            let Some(a) = compiled.identity_of[src] else {
                continue;
            };
            let mut targets: Vec<(usize, [PortSet; 3])> = Vec::new();
            for (b, ports) in compiled.row(a) {
                for &dst in compiled.identities[*b]
                    .members
                    .iter()
                    .filter(|&&d| is_destination[d])
                {
                    if dst != src || !self.is_self_eligible(src) {
                        targets.push((dst, ports.clone()));
                    }
                }
            }
            if self.is_self_eligible(src) && is_destination[src] {
                targets.push((src, [PortSet::all(), PortSet::all(), PortSet::all()]));
            }
            targets.sort_by_key(|(dst, _)| rank[dst]);
            for (dst, ports) in targets {
                for (k, protocol) in Protocol::L4.iter().enumerate() {
                    if ports[k].is_empty() {
                        continue;
                    }
                    out.push(Connection {
                        from: keys[&src].clone(),
                        to: keys[&dst].clone(),
                        protocol: *protocol,
                        ports: ports[k].clone(),
                        ports_all_pairs: ports[k].clone(),
                        pairs_allowed: 1,
                        pairs_total: 1,
                    });
                }
            }
        }
        out
    }
}
