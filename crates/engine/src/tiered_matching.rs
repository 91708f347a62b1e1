//! What one Calico rule (CAL-ENT-*) or AdminNetworkPolicy/ClusterNetworkPolicy rule (ANP-PEER-*,
//! ANP-PORT-*) matches, as a set of destination ports of the flow's protocol.

use crate::endpoint::Endpoint;
use crate::evaluate::Engine;
use crate::matching;
use crate::verdict::Note;
use bulkhead_model::{
    CalicoPort, CalicoRule, CalicoSelector, ClusterPeer, ClusterPort, ClusterRule, Direction,
    EntityRule, NetworkPolicyRule, NetworkSet, Pod, Policy, PolicyRule, PortRange, PortSet,
    Protocol, RuleMatcher,
};
use ipnet::IpNet;
use std::net::IpAddr;

/// The flow as the rule of one policy sees it.
pub(crate) struct RuleContext<'e, 'c> {
    pub engine: &'e Engine<'c>,
    pub direction: Direction,
    pub subject: usize,
    pub remote: Endpoint,
    pub ipv4: bool,
    pub protocol: Protocol,
    pub icmp: Option<(u8, Option<u8>)>,
}

fn net_contains(nets: &[IpNet], ip: Option<IpAddr>, who: &str, notes: &mut Vec<Note>) -> bool {
    match ip {
        Some(ip) => nets.iter().any(|n| n.contains(&ip)),
        None => {
            let certain = nets.iter().any(|n| n.prefix_len() == 0);
            notes.push(Note {
                code: "POD_IP_UNKNOWN",
                message: format!(
                    "{who} has no IP in the snapshot; a CIDR match is only certain for a /0"
                ),
            });
            certain
        }
    }
}

impl RuleContext<'_, '_> {
    fn destination_pod(&self) -> Option<&Pod> {
        match self.direction {
            Direction::Ingress => Some(&self.engine.cluster().pods[self.subject]),
            Direction::Egress => self.engine.pod_of(self.remote),
        }
    }

    fn remote_ip(&self) -> Option<IpAddr> {
        self.engine.ip_of(self.remote, self.ipv4)
    }

    fn remote_name(&self) -> String {
        match self.remote {
            Endpoint::Pod(i) => self.engine.cluster().pods[i].key(),
            Endpoint::Node(i) => format!("node:{}", self.engine.cluster().nodes[i].name),
            Endpoint::External(ip) => format!("ip:{ip}"),
        }
    }

    /// The ports of the flow's protocol that `rule` of `policy` matches, for any API.
    pub fn rule_ports(&self, policy: &Policy, rule: &PolicyRule, notes: &mut Vec<Note>) -> PortSet {
        match &rule.matcher {
            RuleMatcher::Kubernetes(r) => self.kubernetes_rule_ports(
                r,
                policy.namespace.as_deref().unwrap_or_default(),
                notes,
            ),
            RuleMatcher::Cluster(r) => self.cluster_rule_ports(r, notes),
            RuleMatcher::Calico(r) => self.calico_rule_ports(r, policy.namespace.as_deref(), notes),
        }
    }

    /// Kubernetes NetworkPolicy rule of a policy in `policy_namespace` (K8S-PEER-*, K8S-PORT-*).
    pub fn kubernetes_rule_ports(
        &self,
        rule: &NetworkPolicyRule,
        policy_namespace: &str,
        notes: &mut Vec<Note>,
    ) -> PortSet {
        let peer = self.engine.peer(self.remote, self.ipv4);
        let peer_ok = rule.peers.as_ref().is_none_or(|entries| {
            entries.iter().any(|e| {
                matching::peer_matches(
                    self.engine.cluster(),
                    policy_namespace,
                    e,
                    peer,
                    Some(&mut *notes),
                )
            })
        });
        if !peer_ok {
            return PortSet::empty();
        }
        matching::rule_ports(rule, self.destination_pod(), self.protocol.canonical())
    }

    /// ANP/BANP/CNP rule.
    pub fn cluster_rule_ports(&self, rule: &ClusterRule, notes: &mut Vec<Note>) -> PortSet {
        let cluster = self.engine.cluster();
        let peer_matches = rule.peers.iter().any(|peer| match (peer, self.remote) {
            (ClusterPeer::Namespaces(s), Endpoint::Pod(_)) => self
                .engine
                .namespace_labels_of(self.remote)
                .is_some_and(|l| s.matches(l)),
            (
                ClusterPeer::Pods {
                    namespace_selector,
                    pod_selector,
                },
                Endpoint::Pod(i),
            ) => {
                let pod = &cluster.pods[i];
                self.engine
                    .namespace_labels_of(self.remote)
                    .is_some_and(|l| namespace_selector.matches(l))
                    && pod_selector.matches(&pod.labels)
            }
            (ClusterPeer::Nodes(s), Endpoint::Node(n)) => s.matches(&cluster.nodes[n].labels),
            (ClusterPeer::Networks(nets), _) => {
                net_contains(nets, self.remote_ip(), &self.remote_name(), notes)
            }
            (ClusterPeer::DomainNames(_), _) => {
                notes.push(Note {
                    code: "UNSUPPORTED_FIELD",
                    message: "a domainNames peer never matches in a static analysis (ANP-PEER-4)"
                        .into(),
                });
                false
            }
            _ => false,
        });
        if !peer_matches {
            return PortSet::empty();
        }
        let Some(ports) = &rule.ports else {
            return PortSet::all();
        };
        if !self.protocol.has_ports() {
            return PortSet::empty();
        }
        let protocol = self.protocol.canonical();
        let mut set = PortSet::empty();
        for p in ports {
            match p {
                ClusterPort::Range { protocol: p, range } if *p == protocol => set.insert(*range),
                ClusterPort::AllOf(p) if *p == protocol => return PortSet::all(),
                ClusterPort::Named(name) => {
                    // The container port's own protocol is the protocol (ANP-PORT-1).
                    if let Some(port) = self
                        .destination_pod()
                        .and_then(|d| d.named_port(name, protocol))
                    {
                        set.insert(PortRange::single(port));
                    }
                }
                _ => {}
            }
        }
        set
    }

    /// Calico rule of a policy in `policy_namespace` (`None` for a GlobalNetworkPolicy).
    pub fn calico_rule_ports(
        &self,
        rule: &CalicoRule,
        policy_namespace: Option<&str>,
        notes: &mut Vec<Note>,
    ) -> PortSet {
        let protocol = self.protocol.canonical();
        if rule.protocol.is_some_and(|p| p.canonical() != protocol)
            || rule.not_protocol.is_some_and(|p| p.canonical() == protocol)
        {
            return PortSet::empty();
        }
        if rule.ip_version.is_some_and(|v| (v == 4) != self.ipv4) {
            return PortSet::empty();
        }
        let icmp_hit = |m: &bulkhead_model::IcmpMatch| {
            matches!(protocol, Protocol::Icmp | Protocol::Icmpv6)
                && self
                    .icmp
                    .is_some_and(|(t, c)| t == m.icmp_type && m.code.is_none_or(|mc| c == Some(mc)))
        };
        if rule.icmp.as_ref().is_some_and(|m| !icmp_hit(m))
            || rule.not_icmp.as_ref().is_some_and(icmp_hit)
        {
            return PortSet::empty();
        }
        let local = Endpoint::Pod(self.subject);
        let (source_side, destination_side) = match self.direction {
            Direction::Ingress => (self.remote, local),
            Direction::Egress => (local, self.remote),
        };
        if !self.entity_matches(&rule.source, source_side, policy_namespace, notes)
            || !self.entity_matches(&rule.destination, destination_side, policy_namespace, notes)
        {
            return PortSet::empty();
        }
        if !rule.source.ports.is_empty() {
            notes.push(Note {
                code: "SOURCE_PORT_UNKNOWN",
                message: "a rule on source ports never matches: a flow's source port is not known"
                    .into(),
            });
            return PortSet::empty();
        }
        if rule.has_http_match {
            notes.push(Note {
                code: "UNSUPPORTED_FIELD",
                message: "an HTTP (L7) match was judged on its L3/L4 criteria only".into(),
            });
        }
        if !self.protocol.has_ports() {
            return if rule.destination.ports.is_empty() {
                PortSet::all()
            } else {
                PortSet::empty()
            };
        }
        let ports = |list: &[CalicoPort]| -> PortSet {
            let mut set = PortSet::empty();
            for p in list {
                match p {
                    CalicoPort::Range(r) => {
                        if let Some(r) = PortRange::new(r.start().max(1), r.end()) {
                            set.insert(r);
                        }
                    }
                    CalicoPort::Named(name) => {
                        // Felix resolves a named port without a rule protocol as TCP (CAL-ENT-6).
                        let named_protocol =
                            rule.protocol.map_or(Protocol::Tcp, Protocol::canonical);
                        if named_protocol == protocol
                            && let Some(port) = self
                                .engine
                                .pod_of(destination_side)
                                .and_then(|d| d.named_port(name, protocol))
                        {
                            set.insert(PortRange::single(port));
                        }
                    }
                }
            }
            set
        };
        let allowed = if rule.destination.ports.is_empty() {
            PortSet::all()
        } else {
            ports(&rule.destination.ports)
        };
        allowed.difference(&ports(&rule.destination.not_ports))
    }

    pub(crate) fn entity_matches(
        &self,
        entity: &EntityRule,
        side: Endpoint,
        policy_namespace: Option<&str>,
        notes: &mut Vec<Note>,
    ) -> bool {
        if entity.services {
            return false;
        }
        let engine = self.engine;
        let cluster = engine.cluster();
        let ip = engine.ip_of(side, self.ipv4);
        let who = match side {
            Endpoint::Pod(i) => cluster.pods[i].key(),
            Endpoint::Node(i) => format!("node:{}", cluster.nodes[i].name),
            Endpoint::External(ip) => format!("ip:{ip}"),
        };
        if !entity.nets.is_empty() && !net_contains(&entity.nets, ip, &who, notes) {
            return false;
        }
        if !entity.not_nets.is_empty()
            && ip.is_some_and(|ip| entity.not_nets.iter().any(|n| n.contains(&ip)))
        {
            return false;
        }
        if !entity.has_identity_match() && entity.not_selector.is_none() {
            return true;
        }
        let labelling = engine.labelling();
        let ns_selector = entity.namespace_selector.as_ref();
        let pod_in_scope = |pod: &Pod| match ns_selector {
            Some(CalicoSelector::Global) => false,
            Some(s) => labelling
                .namespace(&pod.namespace)
                .is_some_and(|l| s.matches(l)),
            None => policy_namespace.is_none_or(|ns| ns == pod.namespace),
        };
        let set_in_scope =
            |set: &NetworkSet| network_set_in_scope(labelling, set, ns_selector, policy_namespace);
        let pod = match side {
            Endpoint::Pod(i) if pod_in_scope(&cluster.pods[i]) => Some(i),
            _ => None,
        };
        let sets: Vec<usize> = match ip {
            Some(ip) => cluster
                .network_sets
                .iter()
                .enumerate()
                .filter(|(_, s)| set_in_scope(s) && s.nets.iter().any(|n| n.contains(&ip)))
                .map(|(i, _)| i)
                .collect(),
            None => Vec::new(),
        };
        let owner_matches = |s: &CalicoSelector| {
            pod.is_some_and(|i| s.matches(labelling.calico_pod(cluster, i)))
                || sets.iter().any(|&i| s.matches(&labelling.network_set[i]))
        };
        if let Some(s) = &entity.selector {
            if !owner_matches(s) {
                return false;
            }
        } else if ns_selector.is_some() && pod.is_none() && sets.is_empty() {
            return false;
        }
        if entity.not_selector.as_ref().is_some_and(owner_matches) {
            return false;
        }
        if let Some(sa) = &entity.service_accounts {
            let Some(i) = pod else { return false };
            let p = &cluster.pods[i];
            let name_ok = sa.names.is_empty() || sa.names.contains(&p.service_account);
            let selector_ok = sa.selector.as_ref().is_none_or(|s| {
                labelling
                    .pod_service_account_labels(cluster, i)
                    .is_some_and(|l| s.matches(l))
            });
            if !(name_ok && selector_ok) {
                return false;
            }
        }
        true
    }
}

impl<'c> Engine<'c> {
    /// The ports of `protocol` that rule `rule_index` of `direction` of tiered policy `policy`
    /// matches for the flow between pod `subject` (the policy's side) and `remote`, whatever
    /// runs before it. Lint uses it to ask "which flows would this rule decide if it ran
    /// first?", and then who decides them now.
    pub fn policy_rule_ports(
        &self,
        policy: &Policy,
        direction: Direction,
        rule_index: usize,
        subject: usize,
        remote: Endpoint,
        protocol: Protocol,
    ) -> PortSet {
        let Some(rule) = policy.rules(direction).get(rule_index) else {
            return PortSet::empty();
        };
        let (src, dst) = match direction {
            Direction::Egress => (Endpoint::Pod(subject), remote),
            Direction::Ingress => (remote, Endpoint::Pod(subject)),
        };
        let context = RuleContext {
            engine: self,
            direction,
            subject,
            remote,
            ipv4: self.flow_is_ipv4(src, dst),
            protocol,
            icmp: None,
        };
        context.rule_ports(policy, rule, &mut Vec::new())
    }
}

/// Whether a Calico rule's entity can see network set `set` (CAL-ENT-5): `global()` sees the
/// GlobalNetworkSets, a namespaceSelector the NetworkSets of matching namespaces, and without
/// one a namespaced policy sees its own namespace's sets, a global policy every set.
pub(crate) fn network_set_in_scope(
    labelling: &crate::labelling::Labelling,
    set: &NetworkSet,
    namespace_selector: Option<&CalicoSelector>,
    policy_namespace: Option<&str>,
) -> bool {
    match namespace_selector {
        Some(CalicoSelector::Global) => set.namespace.is_none(),
        Some(s) => set
            .namespace
            .as_ref()
            .is_some_and(|n| labelling.namespace(n).is_some_and(|l| s.matches(l))),
        None => match policy_namespace {
            Some(ns) => set.namespace.as_deref() == Some(ns),
            None => true,
        },
    }
}
