//! Whole-cluster connectivity on equivalence classes (design.md §5).
//!
//! Pods that no policy can tell apart share one *identity*: same namespace, labels, service
//! account, named container ports, IP families, and the same answer to "is my address inside
//! CIDR c?" for every CIDR any policy or network set mentions. Pod-to-pod verdicts never depend
//! on the node (only node endpoints do), so the node is not part of the identity. Verdicts are
//! computed once per identity pair through the same pipeline as `explain`, in parallel, and
//! expanded to pods on demand.

use crate::endpoint::Endpoint;
use crate::evaluate::Engine;
use bulkhead_model::{
    CalicoRule, ClusterPeer, Direction, NetworkPolicyPeer, PortSet, Protocol, RuleMatcher,
};
use ipnet::IpNet;
use rayon::prelude::*;
use std::collections::HashMap;

/// Pods that every policy treats alike.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The pod whose verdicts stand for all members.
    pub representative: usize,
    pub members: Vec<usize>,
}

/// Allowed ports per identity pair and protocol (TCP, UDP, SCTP), stored sparsely.
#[derive(Debug)]
pub struct CompiledConnectivity {
    pub identities: Vec<Identity>,
    /// Per pod index: its identity, or `None` for pods that are not endpoints (or hostNetwork).
    pub identity_of: Vec<Option<usize>>,
    /// Per source identity: (destination identity, ports per protocol) for non-empty results.
    rows: Vec<Vec<(usize, [PortSet; 3])>>,
    self_traffic_allowed: bool,
    template: Vec<bool>,
}

fn protocol_index(protocol: Protocol) -> Option<usize> {
    Protocol::L4.iter().position(|p| *p == protocol.canonical())
}

impl CompiledConnectivity {
    /// Ports from pod `src` to pod `dst` for `protocol`; empty for non-endpoints.
    pub fn ports(&self, src: usize, dst: usize, protocol: Protocol) -> PortSet {
        let (Some(a), Some(b), Some(p)) = (
            self.identity_of[src],
            self.identity_of[dst],
            protocol_index(protocol),
        ) else {
            return PortSet::empty();
        };
        if src == dst && self.self_traffic_allowed && !self.template[src] {
            return PortSet::all();
        }
        self.rows[a]
            .binary_search_by_key(&b, |(d, _)| *d)
            .map(|i| self.rows[a][i].1[p].clone())
            .unwrap_or_default()
    }

    /// Pods of an identity whose traffic to themselves is SELF (always allowed).
    pub fn self_eligible(&self, identity: usize) -> usize {
        if !self.self_traffic_allowed {
            return 0;
        }
        self.identities[identity]
            .members
            .iter()
            .filter(|&&p| !self.template[p])
            .count()
    }

    /// Number of (source pod, destination pod) pairs with at least one allowed port.
    pub fn allowed_pod_pairs(&self) -> usize {
        let mut total = 0;
        for (a, row) in self.rows.iter().enumerate() {
            for (b, _) in row {
                total += self.identities[a].members.len() * self.identities[*b].members.len();
                if a == *b {
                    total -= self.self_eligible(a);
                }
            }
        }
        total
            + (0..self.identities.len())
                .map(|a| self.self_eligible(a))
                .sum::<usize>()
    }

    /// Ports between two identities, as if between two different pods.
    pub fn identity_ports(&self, a: usize, b: usize) -> Option<&[PortSet; 3]> {
        self.rows[a]
            .binary_search_by_key(&b, |(d, _)| *d)
            .ok()
            .map(|i| &self.rows[a][i].1)
    }

    pub fn row(&self, identity: usize) -> &[(usize, [PortSet; 3])] {
        &self.rows[identity]
    }
}

impl Engine<'_> {
    /// Every CIDR any policy or network set mentions: the boundaries of the IP atoms.
    fn mentioned_cidrs(&self) -> Vec<IpNet> {
        let cluster = self.cluster();
        let mut nets = Vec::new();
        let mut push_all = |list: &[IpNet]| nets.extend_from_slice(list);
        for p in cluster
            .network_policies
            .iter()
            .chain(cluster.staged_network_policies.iter().map(|(p, _)| p))
        {
            for d in [Direction::Ingress, Direction::Egress] {
                for rule in p.rules(d) {
                    for peer in rule.peers.iter().flatten() {
                        if let NetworkPolicyPeer::IpBlock(b) = peer {
                            push_all(&[b.cidr()]);
                            push_all(b.except());
                        }
                    }
                }
            }
        }
        for p in &cluster.tiered_policies {
            for d in [Direction::Ingress, Direction::Egress] {
                for rule in p.rules(d) {
                    match &rule.matcher {
                        RuleMatcher::Cluster(r) => {
                            for peer in &r.peers {
                                if let ClusterPeer::Networks(n) = peer {
                                    push_all(n);
                                }
                            }
                        }
                        RuleMatcher::Calico(r) => {
                            let r: &CalicoRule = r;
                            for e in [&r.source, &r.destination] {
                                push_all(&e.nets);
                                push_all(&e.not_nets);
                            }
                        }
                    }
                }
            }
        }
        for set in &cluster.network_sets {
            push_all(&set.nets);
        }
        nets.sort();
        nets.dedup();
        nets
    }

    /// Groups the pod endpoints into identities.
    pub fn identities(&self) -> (Vec<Identity>, Vec<Option<usize>>) {
        let cluster = self.cluster();
        let cidrs = self.mentioned_cidrs();
        let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut identities: Vec<Identity> = Vec::new();
        let mut identity_of = vec![None; cluster.pods.len()];
        for i in self.pod_endpoints() {
            let pod = &cluster.pods[i];
            let mut key = Vec::with_capacity(128);
            let mut put = |s: &str| {
                key.extend_from_slice(s.as_bytes());
                key.push(0);
            };
            put(&pod.namespace);
            put(&pod.service_account);
            for (k, v) in &pod.labels {
                put(k);
                put(v);
            }
            put("|ports");
            for p in &pod.ports {
                put(p.name.as_deref().unwrap_or(""));
                put(&p.port.to_string());
                put(&p.protocol.to_string());
            }
            put(if pod.origin == bulkhead_model::PodOrigin::Template {
                "template"
            } else {
                "live"
            });
            let v4 = pod.ip_for_family(true);
            let v6 = pod.ip_for_family(false);
            key.push(u8::from(v4.is_some()) | (u8::from(v6.is_some()) << 1));
            for net in &cidrs {
                let hit = [v4, v6].iter().flatten().any(|ip| net.contains(ip));
                key.push(u8::from(hit));
            }
            let id = *index.entry(key).or_insert_with(|| {
                identities.push(Identity {
                    representative: i,
                    members: Vec::new(),
                });
                identities.len() - 1
            });
            identities[id].members.push(i);
            identity_of[i] = Some(id);
        }
        (identities, identity_of)
    }

    /// Computes the allowed ports of every identity pair (in parallel).
    pub fn compile(&self) -> CompiledConnectivity {
        let (identities, identity_of) = self.identities();
        let reps: Vec<usize> = identities.iter().map(|i| i.representative).collect();
        let rows: Vec<Vec<(usize, [PortSet; 3])>> = reps
            .par_iter()
            .map(|&src| {
                let mut row = Vec::new();
                for (b, &dst) in reps.iter().enumerate() {
                    let (s, d) = (Endpoint::Pod(src), Endpoint::Pod(dst));
                    let ipv4 = self.flow_is_ipv4(s, d);
                    let mut result: [PortSet; 3] = Default::default();
                    let mut any = false;
                    for (k, protocol) in Protocol::L4.iter().enumerate() {
                        let egress =
                            self.direction_ports(Direction::Egress, src, d, ipv4, *protocol);
                        if egress.is_empty() {
                            continue;
                        }
                        let both = egress.intersection(&self.direction_ports(
                            Direction::Ingress,
                            dst,
                            s,
                            ipv4,
                            *protocol,
                        ));
                        any |= !both.is_empty();
                        result[k] = both;
                    }
                    if any {
                        row.push((b, result));
                    }
                }
                row
            })
            .collect();
        let template = self
            .cluster()
            .pods
            .iter()
            .map(|p| p.origin == bulkhead_model::PodOrigin::Template)
            .collect();
        CompiledConnectivity {
            identities,
            identity_of,
            rows,
            self_traffic_allowed: self.options().self_traffic_allowed,
            template,
        }
    }
}
