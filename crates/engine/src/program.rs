//! The decision program of one pod and direction, in terms a packet filter can execute: the
//! applying tiers in order, each rule reduced to "remote address in A, not in B, protocol, ports"
//! with the same answers as the per-flow path (semantics.md §2.2, §3.4). The nftables compiler
//! renders this; it never re-implements selector or peer semantics itself.
//!
//! Known endpoints (pod and node addresses) are decided by the engine's own matching code;
//! addresses outside the snapshot by the CIDR parts of the rule (ipBlock, nets, networks,
//! network sets), which is what an engine decides for an external address too.

use crate::endpoint::Endpoint;
use crate::evaluate::Engine;
use crate::matching::{self, Peer};
use crate::pipeline::direction_index;
use crate::tiered_matching::RuleContext;
use bulkhead_model::{
    Action, AddrRanges, CalicoPort, CalicoRule, CalicoSelector, ClusterPeer, ClusterPort,
    Direction, EntityRule, IcmpMatch, NetworkPolicyPeer, Policy, PortRange, PortSpec, Protocol,
    RuleMatcher, TierDefault,
};
use std::net::IpAddr;

#[derive(Clone, Debug, PartialEq)]
pub struct DirectionProgram {
    /// Empty when no policy applies: everything is allowed in this direction.
    pub tiers: Vec<TierProgram>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TierProgram {
    pub name: String,
    pub end: TierDefault,
    pub rules: Vec<ProgramRule>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ProgramRule {
    /// `kind ns/name direction[i]`, for rule comments and log prefixes.
    pub id: String,
    /// The rule's stable identity (its policy's kind, namespace and name, the direction and
    /// the index), unlike `id` unique across policy APIs: the dataplane names what a rule
    /// needs by it.
    pub key: RuleKey,
    pub action: Action,
    /// The remote address must be in this set (`None`: any address).
    pub remote: Option<AddrRanges>,
    /// ... and not in this one.
    pub remote_not: Option<AddrRanges>,
    pub protocol: Option<Protocol>,
    pub not_protocol: Option<Protocol>,
    pub icmp: Option<IcmpMatch>,
    pub not_icmp: Option<IcmpMatch>,
    pub ports: PortMatch,
}

/// Which rule of which policy: what a rule's remote side depends on (the rule and the
/// cluster's endpoints, never the local pod it is compiled for).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleKey {
    pub kind: bulkhead_model::PolicyKind,
    pub namespace: Option<String>,
    pub name: String,
    pub direction: Direction,
    pub index: usize,
}

impl std::fmt::Display for RuleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ", self.kind.as_str())?;
        if let Some(n) = &self.namespace {
            write!(f, "{n}/")?;
        }
        write!(f, "{} {}[{}]", self.name, self.direction, self.index)
    }
}

/// Destination ports. `ranges` and `named` are alternatives (OR); both empty with `Some` means
/// the rule can match no port.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum PortMatch {
    /// No port condition (every port and protocol, including ICMP).
    #[default]
    Any,
    Some {
        ranges: Vec<(Protocol, PortRange)>,
        /// Destination-pod named ports resolved to (pod address, protocol, port).
        named: Vec<(IpAddr, Protocol, u16)>,
        /// Ports excluded (Calico notPorts).
        not_ranges: Vec<(Protocol, PortRange)>,
    },
}

/// One `ports` entry of a Kubernetes or ANP/BANP/CNP rule, as the program needs it.
enum PortEntry<'a> {
    Range(Protocol, PortRange),
    /// A container port name, looked up under each of these protocols.
    Named(&'a str, &'a [Protocol]),
}

impl Engine<'_> {
    /// Addresses of known endpoints and their set, computed once per engine (every program
    /// of every pod needs them).
    fn known(&self) -> (&[(IpAddr, Endpoint)], &AddrRanges) {
        let (list, set) = self.known_cache.get_or_init(|| {
            let list = self.known_addresses();
            let set = AddrRanges::from_addrs(list.iter().map(|(ip, _)| *ip));
            (list, set)
        });
        (list, set)
    }

    /// Addresses of known endpoints: pod endpoints (not hostNetwork) and nodes.
    fn known_addresses(&self) -> Vec<(IpAddr, Endpoint)> {
        let cluster = self.cluster();
        let mut out = Vec::new();
        for (i, pod) in cluster.pods.iter().enumerate() {
            if pod.is_endpoint() && !pod.host_network {
                out.extend(pod.ips.iter().map(|ip| (*ip, Endpoint::Pod(i))));
            }
        }
        for (i, node) in cluster.nodes.iter().enumerate() {
            out.extend(node.ips.iter().map(|ip| (*ip, Endpoint::Node(i))));
        }
        out
    }

    /// The program of pod `pod` for `direction`, from the enforced pipeline.
    pub fn program(&self, pod: usize, direction: Direction) -> DirectionProgram {
        self.program_of(self.pipeline(), pod, direction)
    }

    /// The program with the staged and audited policies enforced (the "what if" verdict's
    /// pipeline); `None` when there are none. The dataplane evaluates it beside the enforced
    /// program, for the would-deny and would-allow flow logs.
    pub fn staged_program(&self, pod: usize, direction: Direction) -> Option<DirectionProgram> {
        self.staged_pipeline()
            .map(|pipeline| self.program_of(pipeline, pod, direction))
    }

    /// The staged and audited policies that apply to `pod` in `direction` in the "what if"
    /// pipeline, as `Kind ns/name`: what a would-be default deny is attributed to.
    pub fn staged_policies_applying(&self, pod: usize, direction: Direction) -> Vec<String> {
        let Some(pipeline) = self.staged_pipeline() else {
            return Vec::new();
        };
        pipeline.applying[pod][direction_index(direction)]
            .iter()
            .map(|&j| pipeline.policies[j].policy)
            .filter(|p| p.staged.is_some())
            .map(|p| format!("{} {}", p.kind.as_str(), p.key()))
            .collect()
    }

    fn program_of(
        &self,
        pipeline: &crate::pipeline::Pipeline<'_>,
        pod: usize,
        direction: Direction,
    ) -> DirectionProgram {
        let applying = &pipeline.applying[pod][direction_index(direction)];
        let (known, known_set) = self.known();
        let mut tiers: Vec<TierProgram> = Vec::new();
        for &j in applying {
            let entry = &pipeline.policies[j];
            let tier = &pipeline.tiers[entry.tier];
            if tiers.last().is_none_or(|t| t.name != tier.name) {
                tiers.push(TierProgram {
                    name: tier.name.clone(),
                    end: tier.default_action,
                    rules: Vec::new(),
                });
            }
            for i in 0..entry.policy.rules(direction).len() {
                if let Some(rule) =
                    self.program_rule(entry.policy, direction, i, pod, known, known_set)
                    && let Some(t) = tiers.last_mut()
                {
                    t.rules.push(rule);
                }
            }
        }
        DirectionProgram { tiers }
    }

    fn program_rule(
        &self,
        policy: &Policy,
        direction: Direction,
        index: usize,
        local: usize,
        known: &[(IpAddr, Endpoint)],
        known_set: &AddrRanges,
    ) -> Option<ProgramRule> {
        let cluster = self.cluster();
        let id = format!(
            "{} {}{} {direction}[{index}]",
            policy.kind.display_name(),
            policy
                .namespace
                .as_ref()
                .map(|n| format!("{n}/"))
                .unwrap_or_default(),
            policy.name
        );
        let policy_rule = &policy.rules(direction)[index];
        let mut scratch = Vec::new();
        let mut rule = ProgramRule {
            id,
            key: RuleKey {
                kind: policy.kind,
                namespace: policy.namespace.clone(),
                name: policy.name.clone(),
                direction,
                index,
            },
            action: policy_rule.action,
            remote: None,
            remote_not: None,
            protocol: None,
            not_protocol: None,
            icmp: None,
            not_icmp: None,
            ports: PortMatch::Any,
        };
        // Known endpoints decided by the engine, everything else by the rule's CIDRs.
        let combine =
            |external: AddrRanges, known_match: &dyn Fn(IpAddr, Endpoint) -> bool| -> AddrRanges {
                let matched = AddrRanges::from_addrs(
                    known
                        .iter()
                        .filter(|&&(ip, e)| known_match(ip, e))
                        .map(|&(ip, _)| ip),
                );
                external.difference(known_set).union(&matched)
            };
        match &policy_rule.matcher {
            RuleMatcher::Kubernetes(r) => {
                let namespace = policy.namespace.as_deref().unwrap_or_default();
                if let Some(entries) = &r.peers {
                    let mut external = AddrRanges::empty();
                    for e in entries {
                        if let NetworkPolicyPeer::IpBlock(b) = e {
                            let mut block = AddrRanges::from_net(b.cidr());
                            for x in b.except() {
                                block = block.difference(&AddrRanges::from_net(*x));
                            }
                            external = external.union(&block);
                        }
                    }
                    let matches = |ip: IpAddr, e: Endpoint| {
                        let peer = Peer {
                            pod: self.pod_of(e),
                            ip: Some(ip),
                            namespace_labels: self.namespace_labels_of(e),
                        };
                        entries
                            .iter()
                            .any(|x| matching::peer_matches(cluster, namespace, x, peer, None))
                    };
                    rule.remote = Some(combine(external, &matches));
                }
                if let Some(ports) = &r.ports {
                    let entries = ports.iter().map(|port| match &port.port {
                        PortSpec::Any => PortEntry::Range(port.protocol, PortRange::full()),
                        PortSpec::Range(range) => PortEntry::Range(port.protocol, *range),
                        PortSpec::Named(name) => {
                            PortEntry::Named(name, std::slice::from_ref(&port.protocol))
                        }
                    });
                    rule.ports = self.port_match(direction, local, known, entries);
                }
            }

            RuleMatcher::Cluster(r) => {
                let mut external = AddrRanges::empty();
                for peer in &r.peers {
                    if let ClusterPeer::Networks(nets) = peer {
                        for n in nets {
                            external = external.union(&AddrRanges::from_net(*n));
                        }
                    }
                }
                let matches = |ip: IpAddr, e: Endpoint| {
                    let context = RuleContext {
                        engine: self,
                        direction,
                        subject: local,
                        remote: e,
                        ipv4: ip.is_ipv4(),
                        protocol: Protocol::Tcp,
                        icmp: None,
                    };
                    let peers_only = bulkhead_model::ClusterRule {
                        peers: r.peers.clone(),
                        ports: None,
                    };
                    !context
                        .cluster_rule_ports(&peers_only, &mut scratch.clone())
                        .is_empty()
                };
                rule.remote = Some(combine(external, &matches));
                if let Some(ports) = &r.ports {
                    let entries = ports.iter().map(|port| match port {
                        ClusterPort::Range { protocol, range } => {
                            PortEntry::Range(*protocol, *range)
                        }
                        ClusterPort::AllOf(protocol) => {
                            PortEntry::Range(*protocol, PortRange::full())
                        }
                        // A named port matches a container port of any protocol (ANP-PORT-1).
                        ClusterPort::Named(name) => PortEntry::Named(name, &Protocol::L4),
                    });
                    rule.ports = self.port_match(direction, local, known, entries);
                }
            }
            RuleMatcher::Calico(r) => {
                self.calico_program(
                    r.as_ref(),
                    policy.namespace.as_deref(),
                    direction,
                    local,
                    known,
                    known_set,
                    &mut rule,
                    &mut scratch,
                )?;
            }
        }
        Some(rule)
    }

    /// The port condition of a Kubernetes or ANP/BANP/CNP rule from its entries.
    fn port_match<'p>(
        &self,
        direction: Direction,
        local: usize,
        known: &[(IpAddr, Endpoint)],
        entries: impl IntoIterator<Item = PortEntry<'p>>,
    ) -> PortMatch {
        let mut ranges = Vec::new();
        let mut named = Vec::new();
        for entry in entries {
            match entry {
                PortEntry::Range(protocol, range) => ranges.push((protocol, range)),
                PortEntry::Named(name, protocols) => {
                    for &protocol in protocols {
                        self.resolve_named(
                            direction,
                            local,
                            name,
                            protocol,
                            known,
                            &mut ranges,
                            &mut named,
                        );
                    }
                }
            }
        }
        PortMatch::Some {
            ranges,
            named,
            not_ranges: Vec::new(),
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "named ports need the rule, the side and the endpoints"
    )]
    fn resolve_named(
        &self,
        direction: Direction,
        local: usize,
        name: &str,
        protocol: Protocol,
        known: &[(IpAddr, Endpoint)],
        ranges: &mut Vec<(Protocol, PortRange)>,
        named: &mut Vec<(IpAddr, Protocol, u16)>,
    ) {
        match direction {
            // Ingress: the destination is the pod itself, so the name is a literal port.
            Direction::Ingress => {
                if let Some(port) = self.cluster().pods[local].named_port(name, protocol) {
                    ranges.push((protocol, PortRange::single(port)));
                }
            }
            // Egress: each destination pod may map the name to its own port.
            Direction::Egress => {
                for &(ip, e) in known {
                    if let Some(port) = self.pod_of(e).and_then(|p| p.named_port(name, protocol)) {
                        named.push((ip, protocol, port));
                    }
                }
            }
        }
    }

    #[expect(clippy::too_many_arguments, reason = "a Calico rule needs both sides")]
    fn calico_program(
        &self,
        r: &CalicoRule,
        policy_namespace: Option<&str>,
        direction: Direction,
        local: usize,
        known: &[(IpAddr, Endpoint)],
        known_set: &AddrRanges,
        rule: &mut ProgramRule,
        scratch: &mut Vec<crate::verdict::Note>,
    ) -> Option<()> {
        let (local_entity, remote_entity) = match direction {
            Direction::Ingress => (&r.destination, &r.source),
            Direction::Egress => (&r.source, &r.destination),
        };
        let family_ok = |ip: IpAddr| r.ip_version.is_none_or(|v| (v == 4) == ip.is_ipv4());
        // The local side is the pod itself: decided now (a rule that cannot match is left out).
        let context = |remote: Endpoint, ipv4: bool| RuleContext {
            engine: self,
            direction,
            subject: local,
            remote,
            ipv4,
            protocol: Protocol::Tcp,
            icmp: None,
        };
        let local_ip = self.cluster().pods[local].ips.first().copied();
        let local_ok = context(Endpoint::Pod(local), local_ip.is_none_or(|ip| ip.is_ipv4()))
            .entity_matches(
                local_entity,
                Endpoint::Pod(local),
                policy_namespace,
                scratch,
            );
        if !local_ok || (direction == Direction::Egress && !r.source.ports.is_empty()) {
            return None;
        }
        if direction == Direction::Ingress && !r.source.ports.is_empty() {
            return None;
        }
        let external = self
            .calico_external(remote_entity, policy_namespace)
            .intersection(&match r.ip_version {
                Some(4) => AddrRanges::everything().family(true),
                Some(_) => AddrRanges::everything().family(false),
                None => AddrRanges::everything(),
            });
        let matches = |ip: IpAddr, e: Endpoint| {
            family_ok(ip)
                && context(e, ip.is_ipv4()).entity_matches(
                    remote_entity,
                    e,
                    policy_namespace,
                    &mut Vec::new(),
                )
        };
        let matched = AddrRanges::from_addrs(
            known
                .iter()
                .filter(|&&(ip, e)| matches(ip, e))
                .map(|&(ip, _)| ip),
        );
        let set = external.difference(known_set).union(&matched);
        let unrestricted = !remote_entity.has_identity_match()
            && remote_entity.not_selector.is_none()
            && remote_entity.nets.is_empty()
            && remote_entity.not_nets.is_empty()
            && !remote_entity.services
            && r.ip_version.is_none();
        rule.remote = if unrestricted { None } else { Some(set) };
        rule.protocol = r.protocol;
        rule.not_protocol = r.not_protocol;
        rule.icmp = r.icmp;
        rule.not_icmp = r.not_icmp;
        let destination = &r.destination;
        if !destination.ports.is_empty() || !destination.not_ports.is_empty() {
            let protocols: Vec<Protocol> = match r.protocol {
                Some(p) if p.has_ports() => vec![p.canonical()],
                Some(_) => return None,
                None => vec![Protocol::Tcp],
            };
            let mut ranges = Vec::new();
            let mut named = Vec::new();
            let mut not_ranges = Vec::new();
            for (list, is_not) in [(&destination.ports, false), (&destination.not_ports, true)] {
                for port in list {
                    for &protocol in &protocols {
                        match port {
                            CalicoPort::Range(range) => {
                                if let Some(range) =
                                    PortRange::new(range.start().max(1), range.end())
                                {
                                    if is_not {
                                        not_ranges.push((protocol, range))
                                    } else {
                                        ranges.push((protocol, range))
                                    }
                                }
                            }
                            CalicoPort::Named(name) => {
                                let mut target = Vec::new();
                                let mut triples = Vec::new();
                                self.resolve_named(
                                    direction,
                                    local,
                                    name,
                                    protocol,
                                    known,
                                    &mut target,
                                    &mut triples,
                                );
                                if is_not {
                                    // A named notPort on the remote side is not expressible as a
                                    // port set; only the local (ingress) case resolves to ports.
                                    not_ranges.extend(target);
                                } else {
                                    ranges.extend(target);
                                    named.extend(triples);
                                }
                            }
                        }
                    }
                }
            }
            if destination.ports.is_empty() {
                ranges.extend(protocols.iter().map(|p| (*p, PortRange::full())));
            }
            rule.ports = PortMatch::Some {
                ranges,
                named,
                not_ranges,
            };
        }
        Some(())
    }

    /// The addresses outside the snapshot a Calico entity's remote side matches.
    fn calico_external(&self, e: &EntityRule, policy_namespace: Option<&str>) -> AddrRanges {
        if e.services {
            return AddrRanges::empty();
        }
        let cluster = self.cluster();
        let labelling = self.labelling();
        let mut base = if e.nets.is_empty() {
            AddrRanges::everything()
        } else {
            e.nets.iter().fold(AddrRanges::empty(), |acc, n| {
                acc.union(&AddrRanges::from_net(*n))
            })
        };
        let set_in_scope = |i: usize| {
            crate::tiered_matching::network_set_in_scope(
                labelling,
                &cluster.network_sets[i],
                e.namespace_selector.as_ref(),
                policy_namespace,
            )
        };
        let sets_matching = |selector: Option<&CalicoSelector>| {
            (0..cluster.network_sets.len())
                .filter(|&i| {
                    set_in_scope(i) && selector.is_none_or(|s| s.matches(&labelling.network_set[i]))
                })
                .flat_map(|i| cluster.network_sets[i].nets.iter().copied())
                .fold(AddrRanges::empty(), |acc, n| {
                    acc.union(&AddrRanges::from_net(n))
                })
        };
        if e.service_accounts.is_some() {
            return AddrRanges::empty();
        }
        if e.selector.is_some() || e.namespace_selector.is_some() {
            base = base.intersection(&sets_matching(e.selector.as_ref()));
        }
        for n in &e.not_nets {
            base = base.difference(&AddrRanges::from_net(*n));
        }
        if let Some(s) = &e.not_selector {
            base = base.difference(&sets_matching(Some(s)));
        }
        base
    }
}
