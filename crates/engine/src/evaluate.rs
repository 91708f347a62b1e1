//! One flow, both directions, with the explanation (semantics.md §1.10, §3.4, §4).

use crate::endpoint::{Endpoint, Flow};
use crate::matching::{self, Peer};
use crate::verdict::{DirectionVerdict, Note, Reason, RuleRef, Verdict};
use bulkhead_model::{Cluster, Direction, NetworkPolicy, Pod, PortSet, Protocol};
use std::collections::HashMap;
use std::net::IpAddr;

/// Which enforcement model to follow (`--semantics`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Semantics {
    /// AdminNetworkPolicy -> NetworkPolicy -> BaselineAdminNetworkPolicy -> allow (§3.4).
    Kubernetes,
    /// Calico's tiers, with Kubernetes policies in tier `default` and the `kns` profile (§2.2).
    Calico,
}

/// The engine choices of semantics.md §5 that a user may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineOptions {
    pub semantics: Semantics,
    /// K8S-ISO-8: a pod may always reach itself.
    pub self_traffic_allowed: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            semantics: Semantics::Kubernetes,
            self_traffic_allowed: true,
        }
    }
}

/// The engine over one cluster snapshot, with the indexes every query needs.
#[derive(Debug)]
pub struct Engine<'c> {
    cluster: &'c Cluster,
    options: EngineOptions,
    /// Per pod, the policies of its namespace that select it, per direction (K8S-ISO-1).
    ingress_policies: Vec<Vec<usize>>,
    egress_policies: Vec<Vec<usize>>,
    ip_owners: HashMap<IpAddr, Endpoint>,
}

impl<'c> Engine<'c> {
    pub fn new(cluster: &'c Cluster, options: EngineOptions) -> Self {
        let mut by_namespace: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, p) in cluster.network_policies.iter().enumerate() {
            by_namespace
                .entry(p.namespace.as_str())
                .or_default()
                .push(i);
        }
        let mut ingress_policies = Vec::with_capacity(cluster.pods.len());
        let mut egress_policies = Vec::with_capacity(cluster.pods.len());
        for pod in &cluster.pods {
            let selecting: Vec<usize> = if pod.host_network || !pod.is_endpoint() {
                Vec::new()
            } else {
                by_namespace
                    .get(pod.namespace.as_str())
                    .into_iter()
                    .flatten()
                    .copied()
                    .filter(|&i| {
                        cluster.network_policies[i]
                            .pod_selector
                            .matches(&pod.labels)
                    })
                    .collect()
            };
            let of_type = |d: Direction| -> Vec<usize> {
                selecting
                    .iter()
                    .copied()
                    .filter(|&i| cluster.network_policies[i].policy_types.contains(d))
                    .collect()
            };
            ingress_policies.push(of_type(Direction::Ingress));
            egress_policies.push(of_type(Direction::Egress));
        }
        let mut ip_owners = HashMap::new();
        for (i, node) in cluster.nodes.iter().enumerate() {
            for ip in &node.ips {
                ip_owners.insert(*ip, Endpoint::Node(i));
            }
        }
        for (i, pod) in cluster.pods.iter().enumerate() {
            if pod.is_endpoint() && !pod.host_network {
                for ip in &pod.ips {
                    ip_owners.insert(*ip, Endpoint::Pod(i));
                }
            }
        }
        Self {
            cluster,
            options,
            ingress_policies,
            egress_policies,
            ip_owners,
        }
    }

    pub fn cluster(&self) -> &'c Cluster {
        self.cluster
    }

    pub fn options(&self) -> EngineOptions {
        self.options
    }

    /// The endpoint that owns an address: a pod, a node, or nothing (external).
    pub fn endpoint_for_ip(&self, ip: IpAddr) -> Endpoint {
        self.ip_owners
            .get(&ip)
            .copied()
            .unwrap_or(Endpoint::External(ip))
    }

    /// The policies selecting pod `index` for `direction`.
    pub fn selecting_policies(
        &self,
        index: usize,
        direction: Direction,
    ) -> impl Iterator<Item = &'c NetworkPolicy> + '_ {
        let list = match direction {
            Direction::Ingress => &self.ingress_policies[index],
            Direction::Egress => &self.egress_policies[index],
        };
        list.iter().map(|&i| &self.cluster.network_policies[i])
    }

    /// The address family of a flow: an explicit address decides, otherwise IPv4 when both
    /// sides have one.
    pub fn flow_is_ipv4(&self, src: Endpoint, dst: Endpoint) -> bool {
        for e in [src, dst] {
            if let Endpoint::External(ip) = e {
                return ip.is_ipv4();
            }
        }
        let has_v4 = |e: Endpoint| match e {
            Endpoint::Pod(i) => {
                let p = &self.cluster.pods[i];
                p.ips.is_empty() || p.ips.iter().any(IpAddr::is_ipv4)
            }
            Endpoint::Node(i) => {
                let n = &self.cluster.nodes[i];
                n.ips.is_empty() || n.ips.iter().any(IpAddr::is_ipv4)
            }
            Endpoint::External(ip) => ip.is_ipv4(),
        };
        has_v4(src) && has_v4(dst)
    }

    pub fn ip_of(&self, endpoint: Endpoint, ipv4: bool) -> Option<IpAddr> {
        match endpoint {
            Endpoint::Pod(i) => self.cluster.pods[i].ip_for_family(ipv4),
            Endpoint::Node(i) => self.cluster.nodes[i]
                .ips
                .iter()
                .copied()
                .find(|ip| ip.is_ipv4() == ipv4),
            Endpoint::External(ip) => Some(ip),
        }
    }

    /// A workload template stands for all its replicas, so "itself" is another replica.
    pub fn is_template_pod(&self, endpoint: Endpoint) -> bool {
        self.pod_of(endpoint)
            .is_some_and(|p| p.origin == bulkhead_model::PodOrigin::Template)
    }

    pub fn pod_of(&self, endpoint: Endpoint) -> Option<&'c Pod> {
        match endpoint {
            Endpoint::Pod(i) => Some(&self.cluster.pods[i]),
            _ => None,
        }
    }

    pub(crate) fn peer(&self, endpoint: Endpoint, ipv4: bool) -> Peer<'c> {
        Peer {
            pod: self.pod_of(endpoint),
            ip: self.ip_of(endpoint, ipv4),
        }
    }

    /// Whether `node_endpoint` is the node that hosts the pod `pod_index` (K8S-ISO-6).
    pub(crate) fn is_own_node(&self, pod_index: usize, node_endpoint: Endpoint) -> bool {
        match (node_endpoint, &self.cluster.pods[pod_index].node) {
            (Endpoint::Node(n), Some(name)) => self.cluster.nodes[n].name == *name,
            _ => false,
        }
    }

    /// The verdict of one flow with both halves explained.
    pub fn evaluate(&self, flow: &Flow) -> Verdict {
        let mut notes = Vec::new();
        if !flow.protocol.has_ports() {
            notes.push(Note {
                code: "UNDEFINED_PROTOCOL",
                message: format!(
                    "NetworkPolicy is only specified for TCP, UDP and SCTP; {} follows Calico: rules with ports never match it, rules without ports do",
                    flow.protocol
                ),
            });
        }
        if flow.src == flow.dst && self.is_template_pod(flow.src) {
            notes.push(Note {
                code: "WORKLOAD_REPLICAS",
                message: "source and destination are the same workload template: judged as traffic between two of its replicas".into(),
            });
        } else if self.options.self_traffic_allowed
            && flow.src == flow.dst
            && matches!(flow.src, Endpoint::Pod(_))
        {
            notes.push(Note {
                code: "SELF",
                message: "a pod reaching itself by its own IP is always allowed (K8S-ISO-8); CNIs differ for hairpin traffic through a Service".into(),
            });
            let half = |direction| DirectionVerdict {
                direction,
                allowed: true,
                reason: Reason::SelfTraffic,
                decided_by: Vec::new(),
            };
            return Verdict {
                allowed: true,
                egress: half(Direction::Egress),
                ingress: half(Direction::Ingress),
                notes,
            };
        }
        let ipv4 = self.flow_is_ipv4(flow.src, flow.dst);
        let egress = self.direction(
            Direction::Egress,
            flow.src,
            flow.dst,
            ipv4,
            flow,
            &mut notes,
        );
        let ingress = self.direction(
            Direction::Ingress,
            flow.dst,
            flow.src,
            ipv4,
            flow,
            &mut notes,
        );
        notes.sort();
        notes.dedup();
        Verdict {
            allowed: egress.allowed && ingress.allowed,
            egress,
            ingress,
            notes,
        }
    }

    fn direction(
        &self,
        direction: Direction,
        subject: Endpoint,
        remote: Endpoint,
        ipv4: bool,
        flow: &Flow,
        notes: &mut Vec<Note>,
    ) -> DirectionVerdict {
        let verdict = |allowed, reason, decided_by| DirectionVerdict {
            direction,
            allowed,
            reason: self.in_semantics(reason),
            decided_by,
        };
        let Endpoint::Pod(subject_index) = subject else {
            return verdict(true, Reason::NotApplicable, Vec::new());
        };
        let policies: Vec<&NetworkPolicy> =
            self.selecting_policies(subject_index, direction).collect();
        if policies.is_empty() {
            return verdict(true, Reason::NotIsolated, Vec::new());
        }
        if self.is_own_node(subject_index, remote) {
            return verdict(true, Reason::NodeLocal, Vec::new());
        }
        let peer = self.peer(remote, ipv4);
        let destination = match direction {
            Direction::Ingress => self.pod_of(subject),
            Direction::Egress => self.pod_of(remote),
        };
        let mut matched = Vec::new();
        for policy in &policies {
            for (i, rule) in policy.rules(direction).iter().enumerate() {
                let peer_index = match &rule.peers {
                    None => Some(None),
                    Some(entries) => entries
                        .iter()
                        .position(|e| {
                            matching::peer_matches(self.cluster, &policy.namespace, e, peer, notes)
                        })
                        .map(Some),
                };
                let Some(peer_index) = peer_index else {
                    continue;
                };
                let port_index = match &rule.ports {
                    None => Some(None),
                    Some(entries) => entries
                        .iter()
                        .position(|e| {
                            matching::port_matches(e, destination, flow.protocol, flow.port)
                        })
                        .map(Some),
                };
                let Some(port_index) = port_index else {
                    continue;
                };
                matched.push(self.rule_ref(policy, direction, i, peer_index, port_index));
            }
        }
        if matched.is_empty() {
            let isolating = policies
                .iter()
                .map(|p| RuleRef {
                    kind: "NetworkPolicy",
                    namespace: Some(p.namespace.clone()),
                    name: p.name.clone(),
                    tier: "default",
                    rule: None,
                    action: "Deny",
                    detail: format!("isolates the pod for {direction} (policyTypes {}); none of its {direction} rules matched", p.policy_types),
                    source: p.source.clone(),
                })
                .collect();
            verdict(false, Reason::NpDenyIsolated, isolating)
        } else {
            verdict(true, Reason::NpAllow, matched)
        }
    }

    fn rule_ref(
        &self,
        policy: &NetworkPolicy,
        direction: Direction,
        rule_index: usize,
        peer_index: Option<usize>,
        port_index: Option<usize>,
    ) -> RuleRef {
        let rule = &policy.rules(direction)[rule_index];
        let peers_field = match direction {
            Direction::Ingress => "from",
            Direction::Egress => "to",
        };
        let peer_text = match (peer_index, &rule.peers) {
            (Some(i), Some(entries)) => format!("{peers_field}[{i}] {}", entries[i]),
            _ => format!("any {peers_field}"),
        };
        let port_text = match (port_index, &rule.ports) {
            (Some(i), Some(entries)) => format!("port {}", entries[i]),
            _ => "any port".to_string(),
        };
        RuleRef {
            kind: "NetworkPolicy",
            namespace: Some(policy.namespace.clone()),
            name: policy.name.clone(),
            tier: "default",
            rule: Some(format!("{direction}[{rule_index}]")),
            action: "Allow",
            detail: format!("{peer_text}, {port_text}"),
            source: policy.source.clone(),
        }
    }

    /// Names the same decision the way the chosen semantics does (§4: both modes agree on
    /// verdicts for Kubernetes-only input; Calico names them as tiers and profiles).
    fn in_semantics(&self, reason: Reason) -> Reason {
        match (self.options.semantics, reason) {
            (Semantics::Calico, Reason::NotIsolated) => Reason::ProfileAllow,
            (Semantics::Calico, Reason::NpAllow) => Reason::CalicoAllow,
            (Semantics::Calico, Reason::NpDenyIsolated) => Reason::TierEndDeny,
            (_, r) => r,
        }
    }

    /// The ports of `protocol` that one direction allows between two pod endpoints; the
    /// whole-cluster path. Mirrors [`Engine::evaluate`] rule for rule.
    pub fn direction_ports(
        &self,
        direction: Direction,
        subject_index: usize,
        remote: Endpoint,
        ipv4: bool,
        protocol: Protocol,
    ) -> PortSet {
        let policies = match direction {
            Direction::Ingress => &self.ingress_policies[subject_index],
            Direction::Egress => &self.egress_policies[subject_index],
        };
        if policies.is_empty() || self.is_own_node(subject_index, remote) {
            return PortSet::all();
        }
        let peer = self.peer(remote, ipv4);
        let subject = Endpoint::Pod(subject_index);
        let destination = match direction {
            Direction::Ingress => self.pod_of(subject),
            Direction::Egress => self.pod_of(remote),
        };
        let mut allowed = PortSet::empty();
        let mut scratch = Vec::new();
        for &i in policies {
            let policy = &self.cluster.network_policies[i];
            for rule in policy.rules(direction) {
                let peer_ok = rule.peers.as_ref().is_none_or(|entries| {
                    entries.iter().any(|e| {
                        matching::peer_matches(
                            self.cluster,
                            &policy.namespace,
                            e,
                            peer,
                            &mut scratch,
                        )
                    })
                });
                if peer_ok {
                    allowed = allowed.union(&matching::rule_ports(rule, destination, protocol));
                    if allowed.is_all() {
                        return allowed;
                    }
                }
            }
        }
        allowed
    }
}

/// A namespace selector in a policy peer that matches no namespace of the snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnmatchedNamespaceSelector {
    pub policy: String,
    /// `egress[0].to[0]`.
    pub rule: String,
    pub selector: String,
}

impl Engine<'_> {
    /// Namespace selectors that select nothing, the classic `name: kube-system` mistake.
    pub fn unmatched_namespace_selectors(&self) -> Vec<UnmatchedNamespaceSelector> {
        let mut out = Vec::new();
        for policy in &self.cluster.network_policies {
            for direction in [Direction::Ingress, Direction::Egress] {
                let field = if direction == Direction::Ingress {
                    "from"
                } else {
                    "to"
                };
                for (i, rule) in policy.rules(direction).iter().enumerate() {
                    for (j, peer) in rule.peers.iter().flatten().enumerate() {
                        if let bulkhead_model::NetworkPolicyPeer::Pods {
                            namespace_selector: Some(selector),
                            ..
                        } = peer
                            && !self
                                .cluster
                                .namespaces
                                .iter()
                                .any(|ns| selector.matches(&ns.labels))
                        {
                            out.push(UnmatchedNamespaceSelector {
                                policy: policy.key(),
                                rule: format!("{direction}[{i}].{field}[{j}]"),
                                selector: selector.to_string(),
                            });
                        }
                    }
                }
            }
        }
        out
    }
}
