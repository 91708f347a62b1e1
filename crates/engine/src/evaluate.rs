//! One flow, both directions, with the explanation (semantics.md §1.10, §3.4, §4).

use crate::endpoint::{Endpoint, Flow};
use crate::labelling::Labelling;
use crate::matching::Peer;
use crate::pipeline::{Pipeline, RuleOracle, Segment, Walk};
use crate::tiered_matching::RuleContext;
use crate::verdict::{DirectionVerdict, Note, Reason, Verdict};
use bulkhead_model::{Cluster, Direction, Pod, Policy, PortSet, Protocol, RuleMatcher};
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

impl EngineOptions {
    /// What the cluster itself would enforce: `auto` semantics (Calico when a Calico object is
    /// present) and a pod may reach itself. The agent, the analyses and tests all start here.
    pub fn for_cluster(cluster: &Cluster) -> Self {
        Self {
            semantics: Engine::auto_semantics(cluster),
            self_traffic_allowed: true,
        }
    }
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
    labelling: Labelling,
    pipeline: Pipeline<'c>,
    /// The same pipeline with staged policies applied, when there are any (CAL-STG-1).
    staged: Option<Pipeline<'c>>,
    ip_owners: HashMap<IpAddr, Endpoint>,
    /// Known endpoint addresses and their set, for the dataplane programs.
    pub(crate) known_cache:
        std::sync::OnceLock<(Vec<(IpAddr, Endpoint)>, bulkhead_model::AddrRanges)>,
}

impl<'c> Engine<'c> {
    pub fn new(cluster: &'c Cluster, options: EngineOptions) -> Self {
        let labelling = Labelling::new(cluster);
        let calico = options.semantics == Semantics::Calico;
        let pipeline = Pipeline::build(cluster, &labelling, calico, false);
        let has_staged = cluster
            .policies
            .iter()
            .any(|p| p.staged.is_some() && (calico || !p.kind.is_calico()));
        let staged = has_staged.then(|| Pipeline::build(cluster, &labelling, calico, true));
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
            labelling,
            pipeline,
            staged,
            ip_owners,
            known_cache: std::sync::OnceLock::new(),
        }
    }

    /// The semantics `auto` resolves to: Calico when the snapshot holds any Calico object.
    pub fn auto_semantics(cluster: &Cluster) -> Semantics {
        let calico = !cluster.tiers.is_empty()
            || !cluster.network_sets.is_empty()
            || cluster.policies.iter().any(|p| {
                p.kind.is_calico()
                    || (p.is_kubernetes()
                        && p.staged.is_some()
                        && p.staged != Some(bulkhead_model::StagedAction::Audit))
            });
        if calico {
            Semantics::Calico
        } else {
            Semantics::Kubernetes
        }
    }

    pub fn cluster(&self) -> &'c Cluster {
        self.cluster
    }

    pub fn options(&self) -> EngineOptions {
        self.options
    }

    pub(crate) fn pipeline(&self) -> &Pipeline<'c> {
        &self.pipeline
    }

    pub(crate) fn staged_pipeline(&self) -> Option<&Pipeline<'c>> {
        self.staged.as_ref()
    }

    pub(crate) fn labelling(&self) -> &Labelling {
        &self.labelling
    }

    /// The endpoint that owns an address: a pod, a node, or nothing (external).
    pub fn endpoint_for_ip(&self, ip: IpAddr) -> Endpoint {
        self.ip_owners
            .get(&ip)
            .copied()
            .unwrap_or(Endpoint::External(ip))
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
            namespace_labels: self.namespace_labels_of(endpoint),
        }
    }

    /// The labels of a pod endpoint's namespace.
    pub(crate) fn namespace_labels_of(
        &self,
        endpoint: Endpoint,
    ) -> Option<&'c bulkhead_model::Labels> {
        match endpoint {
            Endpoint::Pod(i) => self.labelling.pod_namespace_labels(self.cluster, i),
            _ => None,
        }
    }

    /// Whether `node_endpoint` is the node that hosts the pod `pod_index` (K8S-ISO-6).
    pub(crate) fn is_own_node(&self, pod_index: usize, node_endpoint: Endpoint) -> bool {
        match (node_endpoint, &self.cluster.pods[pod_index].node) {
            (Endpoint::Node(n), Some(name)) => self.cluster.nodes[n].name == *name,
            _ => false,
        }
    }

    /// The verdict of one flow with both halves explained, and the staged verdict if any
    /// staged policy exists.
    pub fn evaluate(&self, flow: &Flow) -> Verdict {
        let mut verdict = self.evaluate_with(&self.pipeline, flow);
        if let Some(staged) = &self.staged {
            verdict.staged = Some(Box::new(self.evaluate_with(staged, flow)));
        }
        verdict
    }

    /// Whether the enforced policies allow `flow`: [`Engine::evaluate`]'s `allowed`, without
    /// its explanation (no trail of deciding rules, no notes), for callers that ask about every
    /// pod and read only the answer.
    pub fn allows(&self, flow: &Flow) -> bool {
        self.allows_direction(flow, Direction::Egress)
            && self.allows_direction(flow, Direction::Ingress)
    }

    /// [`Engine::evaluate`]'s `egress.allowed` or `ingress.allowed`, without its explanation.
    pub fn allows_direction(&self, flow: &Flow, direction: Direction) -> bool {
        if self.is_self_traffic(flow) {
            return true;
        }
        let (subject, remote) = match direction {
            Direction::Egress => (flow.src, flow.dst),
            Direction::Ingress => (flow.dst, flow.src),
        };
        let ipv4 = self.flow_is_ipv4(flow.src, flow.dst);
        let mut notes = Vec::new();
        self.direction(
            &self.pipeline,
            direction,
            subject,
            remote,
            ipv4,
            flow,
            false,
            &mut notes,
        )
        .allowed
    }

    /// A pod reaching itself, which is always allowed (K8S-ISO-8) unless the pod stands for a
    /// workload's replicas (then it is traffic between two of them).
    fn is_self_traffic(&self, flow: &Flow) -> bool {
        flow.src == flow.dst
            && !self.is_template_pod(flow.src)
            && self.options.self_traffic_allowed
            && matches!(flow.src, Endpoint::Pod(_))
    }

    fn evaluate_with(&self, pipeline: &Pipeline<'c>, flow: &Flow) -> Verdict {
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
        } else if self.is_self_traffic(flow) {
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
                staged: None,
            };
        }
        let ipv4 = self.flow_is_ipv4(flow.src, flow.dst);
        let egress = self.direction(
            pipeline,
            Direction::Egress,
            flow.src,
            flow.dst,
            ipv4,
            flow,
            true,
            &mut notes,
        );
        let ingress = self.direction(
            pipeline,
            Direction::Ingress,
            flow.dst,
            flow.src,
            ipv4,
            flow,
            true,
            &mut notes,
        );
        notes.sort();
        notes.dedup();
        Verdict {
            allowed: egress.allowed && ingress.allowed,
            egress,
            ingress,
            notes,
            staged: None,
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one direction of one flow: all of it is needed"
    )]
    fn direction(
        &self,
        pipeline: &Pipeline<'c>,
        direction: Direction,
        subject: Endpoint,
        remote: Endpoint,
        ipv4: bool,
        flow: &Flow,
        explain: bool,
        notes: &mut Vec<Note>,
    ) -> DirectionVerdict {
        let Endpoint::Pod(subject_index) = subject else {
            return DirectionVerdict {
                direction,
                allowed: true,
                reason: Reason::NotApplicable,
                decided_by: Vec::new(),
            };
        };
        // K8S-ISO-6: the pod's own node may always reach it, before any layer (§3.4).
        if direction == Direction::Ingress && self.is_own_node(subject_index, remote) {
            return DirectionVerdict {
                direction,
                allowed: true,
                reason: Reason::NodeLocal,
                decided_by: Vec::new(),
            };
        }
        let segments = self.segments(
            pipeline,
            direction,
            subject_index,
            remote,
            ipv4,
            flow.protocol,
            flow.icmp,
            explain,
            notes,
        );
        let port = if flow.protocol.has_ports() {
            flow.port.unwrap_or(0)
        } else {
            1
        };
        match segments.into_iter().find(|s| s.ports.contains(port)) {
            Some(s) => DirectionVerdict {
                direction,
                allowed: s.allowed,
                reason: s.reason,
                decided_by: s.trail,
            },
            // Port 0 is outside every set; treat it like any port no rule names.
            None => DirectionVerdict {
                direction,
                allowed: false,
                reason: Reason::NpDenyIsolated,
                decided_by: Vec::new(),
            },
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one direction of one flow: all of it is needed"
    )]
    fn segments(
        &self,
        pipeline: &Pipeline<'c>,
        direction: Direction,
        subject: usize,
        remote: Endpoint,
        ipv4: bool,
        protocol: Protocol,
        icmp: Option<(u8, Option<u8>)>,
        explain: bool,
        notes: &mut Vec<Note>,
    ) -> Vec<Segment> {
        let mut oracle = Oracle {
            context: RuleContext {
                engine: self,
                direction,
                subject,
                remote,
                ipv4,
                protocol,
                icmp,
            },
            notes: Vec::new(),
        };
        let walk = Walk {
            calico: self.options.semantics == Semantics::Calico,
            explain,
            direction,
            notes,
        };
        let segments = pipeline.run(subject, walk, &mut oracle);
        notes.extend(oracle.notes);
        segments
    }

    /// The ports of `protocol` that one direction allows between a pod and a remote endpoint;
    /// the whole-cluster path, through the same pipeline as [`Engine::evaluate`].
    pub fn direction_ports(
        &self,
        direction: Direction,
        subject_index: usize,
        remote: Endpoint,
        ipv4: bool,
        protocol: Protocol,
    ) -> PortSet {
        if direction == Direction::Ingress && self.is_own_node(subject_index, remote) {
            return PortSet::all();
        }
        let mut notes = Vec::new();
        let mut allowed = PortSet::empty();
        if self.pipeline.applying[subject_index][crate::pipeline::direction_index(direction)]
            .is_empty()
        {
            return PortSet::all();
        }
        for s in self.segments(
            &self.pipeline,
            direction,
            subject_index,
            remote,
            ipv4,
            protocol,
            None,
            false,
            &mut notes,
        ) {
            if s.allowed {
                allowed = allowed.union(&s.ports);
            }
        }
        allowed
    }
}

pub(crate) struct Oracle<'e, 'c> {
    pub context: RuleContext<'e, 'c>,
    pub notes: Vec<Note>,
}

impl RuleOracle for Oracle<'_, '_> {
    fn rule_ports(
        &mut self,
        _index: usize,
        policy: &Policy,
        direction: Direction,
        rule_index: usize,
    ) -> PortSet {
        self.context.rule_ports(
            policy,
            &policy.rules(direction)[rule_index],
            &mut self.notes,
        )
    }

    fn egress_to_own_node(&self) -> bool {
        self.context
            .engine
            .is_own_node(self.context.subject, self.context.remote)
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
        for policy in self.cluster.policies.iter().filter(|p| p.is_kubernetes()) {
            for direction in [Direction::Ingress, Direction::Egress] {
                let field = if direction == Direction::Ingress {
                    "from"
                } else {
                    "to"
                };
                for (i, rule) in policy.indexed_rules(direction) {
                    let RuleMatcher::Kubernetes(rule) = &rule.matcher else {
                        continue;
                    };
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

/// A policy that applies to a pod in one direction, in evaluation order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedPolicy {
    pub kind: &'static str,
    pub namespace: Option<String>,
    pub name: String,
    pub tier: String,
    pub source: Option<bulkhead_model::SourceLocation>,
}

impl Engine<'_> {
    /// The enforced policies that select pod `pod` for `direction` (empty: not isolated and no
    /// tier applies).
    /// The policies that select pod `pod` in `direction`, in evaluation order, as references
    /// into the cluster (no copies: for callers that ask for every pod).
    pub fn applying_policy_refs(
        &self,
        pod: usize,
        direction: Direction,
    ) -> impl Iterator<Item = &Policy> + '_ {
        self.pipeline.applying[pod][crate::pipeline::direction_index(direction)]
            .iter()
            .map(|&j| self.pipeline.policies[j].policy)
    }

    pub fn applying_policies(&self, pod: usize, direction: Direction) -> Vec<AppliedPolicy> {
        let pipeline = &self.pipeline;
        pipeline.applying[pod][crate::pipeline::direction_index(direction)]
            .iter()
            .map(|&j| {
                let entry = &pipeline.policies[j];
                AppliedPolicy {
                    kind: entry.policy.kind.display_name(),
                    namespace: entry.policy.namespace.clone(),
                    name: entry.policy.name.clone(),
                    tier: pipeline.tiers[entry.tier].name.clone(),
                    source: entry.policy.source.clone(),
                }
            })
            .collect()
    }
}

impl Engine<'_> {
    /// The labels Calico selectors see on pod `i`: its own plus `projectcalico.org/namespace`,
    /// `projectcalico.org/orchestrator` and `projectcalico.org/serviceaccount` (CAL-SEL-*).
    pub fn calico_pod_labels(&self, i: usize) -> &bulkhead_model::Labels {
        self.labelling().calico_pod(self.cluster, i)
    }

    /// The labels Calico namespace selectors see: the namespace's plus `projectcalico.org/name`.
    pub fn calico_namespace_labels(&self) -> Vec<&bulkhead_model::Labels> {
        self.labelling().calico_namespace.values().collect()
    }

    /// The labels Calico selectors see on each network set.
    pub fn calico_network_set_labels(&self) -> &[bulkhead_model::Labels] {
        &self.labelling().network_set
    }
}
