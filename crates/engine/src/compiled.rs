//! Whole-cluster connectivity on equivalence classes (design.md §5).
//!
//! Pods that no policy can tell apart share one *identity*: same namespace, labels, service
//! account, named container ports, IP families, and the same answer to "is my address inside
//! CIDR c?" for every CIDR any policy or network set mentions. Pod-to-pod verdicts never depend
//! on the node (only node endpoints do), so the node is not part of the identity. Verdicts are
//! computed once per identity pair through the same pipeline as `explain`, in parallel, and
//! expanded to pods on demand.

use crate::endpoint::Endpoint;
use crate::evaluate::{Engine, Oracle, Semantics};
use crate::matching;
use crate::pipeline::{RuleOracle, Walk, direction_index};
use crate::tiered_matching::RuleContext;
use bulkhead_model::{
    Atom, ClusterRule, Direction, NetworkPolicyPeer, Policy, PortSet, Protocol, RuleMatcher,
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
    /// Every CIDR any policy or network set mentions: the boundaries of the IP atoms (also of
    /// `map --from` regions and of lint's sample addresses).
    pub fn mentioned_cidrs(&self) -> Vec<IpNet> {
        let cluster = self.cluster();
        let mut nets = Vec::new();
        for p in &cluster.policies {
            p.visit_atoms(&mut |atom| {
                if let Atom::Net(net) = atom {
                    nets.push(net);
                }
            });
        }
        for set in &cluster.network_sets {
            nets.extend_from_slice(&set.nets);
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
        let reach = Reach::build(self, &reps);
        let calico = self.options().semantics == Semantics::Calico;
        // Per identity and direction: the union of what its applying rules can reach (None when
        // a Calico rule needs the per-flow path), and the verdict when no rule matches at all.
        let shortcuts: Vec<[Shortcut; 2]> = reps
            .par_iter()
            .map(|&rep| {
                [Direction::Ingress, Direction::Egress]
                    .map(|d| self.shortcut(&reach, calico, d, rep))
            })
            .collect();
        let has_v4: Vec<bool> = reps
            .iter()
            .map(|&r| {
                let ips = &self.cluster().pods[r].ips;
                ips.is_empty() || ips.iter().any(std::net::IpAddr::is_ipv4)
            })
            .collect();
        let rows: Vec<Vec<(usize, [PortSet; 3])>> = reps
            .par_iter()
            .enumerate()
            .map(|(a, &src)| {
                let mut row = Vec::new();
                let mut notes = Vec::new();
                // An identity whose egress allows nothing by default can only reach what its
                // rules reach: visit those, not every identity (2.5 billion pairs at Antrea
                // size, nearly all skipped one at a time).
                let visit: Vec<usize> = shortcuts[a][1]
                    .only_reached(reps.len())
                    .unwrap_or_else(|| (0..reps.len()).collect());
                for b in visit {
                    let dst = reps[b];
                    let ipv4 = has_v4[a] && has_v4[b];
                    let family = usize::from(!ipv4);
                    let egress_default = shortcuts[a][1].unreached(family, b);
                    if egress_default.is_some_and(|d| d.iter().all(PortSet::is_empty)) {
                        continue;
                    }
                    let ingress_default = shortcuts[b][0].unreached(family, a);
                    if ingress_default.is_some_and(|d| d.iter().all(PortSet::is_empty)) {
                        continue;
                    }
                    let (s, d) = (Endpoint::Pod(src), Endpoint::Pod(dst));
                    let mut result: [PortSet; 3] = Default::default();
                    let mut any = false;
                    for (k, protocol) in Protocol::L4.iter().enumerate() {
                        let egress = match egress_default {
                            Some(default) => default[k].clone(),
                            None => self.reach_ports(
                                &reach,
                                calico,
                                Direction::Egress,
                                src,
                                d,
                                b,
                                ipv4,
                                *protocol,
                                &mut notes,
                            ),
                        };
                        if egress.is_empty() {
                            continue;
                        }
                        let ingress = match ingress_default {
                            Some(default) => default[k].clone(),
                            None => self.reach_ports(
                                &reach,
                                calico,
                                Direction::Ingress,
                                dst,
                                s,
                                a,
                                ipv4,
                                *protocol,
                                &mut notes,
                            ),
                        };
                        let both = egress.intersection(&ingress);
                        any |= !both.is_empty();
                        result[k] = both;
                    }
                    notes.clear();
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

/// Per pipeline policy, direction and rule: the remote identities its peers match, for IPv4
/// and IPv6 flows. Kubernetes and ANP/CNP peers depend only on the remote side, so this turns
/// the inner loop of `compile` into bit tests. Calico rules (which also look at the local side)
/// keep the per-flow path.
struct Reach {
    /// reach[policy][direction][rule] = Some([v4, v6]) or None (use the slow path).
    reach: Vec<[Vec<Option<FamilyBits>>; 2]>,
    /// Words of a bitset over every identity.
    words: usize,
}

/// The identities a rule reaches, per address family (IPv4, IPv6).
type FamilyBits = [IdentitySet; 2];

fn bit(bits: &[u64], i: usize) -> bool {
    bits.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
}

/// The identities one rule's peers match: every one, or the words of a bitset between the
/// first and the last identity it holds. Identities are numbered in namespace order and most
/// rules select pods of one or a few namespaces, so the window is a few words where a whole
/// bitset per rule over 50,000 identities was 1.4 GB at Antrea size; a lookup stays one test.
#[derive(Debug)]
enum IdentitySet {
    All,
    Window { first_word: usize, bits: Vec<u64> },
}

impl IdentitySet {
    fn from_bits(bits: Vec<u64>) -> Self {
        let Some(first) = bits.iter().position(|w| *w != 0) else {
            return Self::Window {
                first_word: 0,
                bits: Vec::new(),
            };
        };
        let last = bits.iter().rposition(|w| *w != 0).unwrap_or(first);
        Self::Window {
            first_word: first,
            bits: bits[first..=last].to_vec(),
        }
    }

    fn contains(&self, i: usize) -> bool {
        match self {
            Self::All => true,
            Self::Window { first_word, bits } => (i / 64)
                .checked_sub(*first_word)
                .and_then(|k| bits.get(k))
                .is_some_and(|w| w & (1 << (i % 64)) != 0),
        }
    }

    /// ORs these identities into a bitset of `words` words.
    fn add_to(&self, union: &mut Vec<u64>, words: usize) {
        if union.len() < words {
            union.resize(words, 0);
        }
        match self {
            Self::All => union.iter_mut().for_each(|w| *w = u64::MAX),
            Self::Window { first_word, bits } => {
                for (w, x) in union.iter_mut().skip(*first_word).zip(bits) {
                    *w |= x;
                }
            }
        }
    }
}

impl Reach {
    fn build(engine: &Engine<'_>, reps: &[usize]) -> Self {
        let cluster = engine.cluster();
        let words = reps.len().div_ceil(64);
        let mut by_namespace: HashMap<&str, Vec<usize>> = HashMap::new();
        for (b, &rep) in reps.iter().enumerate() {
            by_namespace
                .entry(cluster.pods[rep].namespace.as_str())
                .or_default()
                .push(b);
        }
        // Per family: the identities by the address of their representative (sorted), and
        // those without one.
        let mut by_address: [Vec<(std::net::IpAddr, usize)>; 2] = [Vec::new(), Vec::new()];
        let mut without_address: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
        for (b, &rep) in reps.iter().enumerate() {
            for (family, ipv4) in [(0, true), (1, false)] {
                match engine.ip_of(Endpoint::Pod(rep), ipv4) {
                    Some(ip) => by_address[family].push((ip, b)),
                    None => without_address[family].push(b),
                }
            }
        }
        by_address.iter_mut().for_each(|list| list.sort_unstable());
        // Each distinct namespaceSelector's identities, once (every namespace's policies tend
        // to repeat the same few: 12,500 namespaces x 50,000 entries at Antrea size).
        let mut selected: HashMap<&bulkhead_model::LabelSelector, Vec<usize>> = HashMap::new();
        for entry in engine.pipeline().policies.iter() {
            for s in entry.policy.kubernetes_namespace_selectors() {
                selected.entry(s).or_insert_with(|| {
                    cluster
                        .namespaces
                        .iter()
                        .filter(|n| s.matches(&n.labels))
                        .flat_map(|n| {
                            by_namespace
                                .get(n.name.as_str())
                                .cloned()
                                .unwrap_or_default()
                        })
                        .collect()
                });
            }
        }
        // The identities a Kubernetes peer entry can possibly match: its own namespace for a
        // bare podSelector, the matching namespaces for a namespaceSelector, for an ipBlock
        // those with an address in its CIDR (two binary searches: every ipBlock against every
        // identity was three quarters of the Antrea-size map), and those without an address
        // when the block covers the whole family.
        let candidates =
            |policy_namespace: &str, entry: &NetworkPolicyPeer, family: usize| -> Vec<usize> {
                match entry {
                    NetworkPolicyPeer::Pods {
                        namespace_selector: None,
                        ..
                    } => by_namespace
                        .get(policy_namespace)
                        .cloned()
                        .unwrap_or_default(),
                    NetworkPolicyPeer::Pods {
                        namespace_selector: Some(s),
                        ..
                    } => selected.get(s).cloned().unwrap_or_default(),
                    NetworkPolicyPeer::IpBlock(block) => {
                        let net = block.cidr();
                        let (low, high) = (net.network(), net.broadcast());
                        let list = &by_address[family];
                        let from = list.partition_point(|(ip, _)| *ip < low);
                        let mut out: Vec<usize> = list[from..]
                            .iter()
                            .take_while(|(ip, _)| *ip <= high)
                            .map(|(_, b)| *b)
                            .collect();
                        if block.covers_whole_family() {
                            out.extend(&without_address[family]);
                        }
                        out
                    }
                }
            };
        let reach = engine
            .pipeline()
            .policies
            .par_iter()
            .map(|entry| {
                let policy = entry.policy;
                let per_direction = |direction: Direction| -> Vec<Option<FamilyBits>> {
                    policy
                        .rules(direction)
                        .iter()
                        .map(|rule| {
                            let mut out = [vec![0u64; words], vec![0u64; words]];
                            let mut scratch = Vec::new();
                            match &rule.matcher {
                                RuleMatcher::Kubernetes(rule) => {
                                    let namespace = policy.namespace.as_deref().unwrap_or_default();
                                    if rule.peers.is_none() {
                                        return Some([IdentitySet::All, IdentitySet::All]);
                                    }
                                    for (family, ipv4) in [(0, true), (1, false)] {
                                        let Some(entries) = &rule.peers else {
                                            continue;
                                        };
                                        for e in entries {
                                            for b in candidates(namespace, e, family) {
                                                let peer =
                                                    engine.peer(Endpoint::Pod(reps[b]), ipv4);
                                                if matching::peer_matches(
                                                    cluster, namespace, e, peer, None,
                                                ) {
                                                    out[family][b / 64] |= 1 << (b % 64);
                                                }
                                            }
                                        }
                                    }
                                }
                                RuleMatcher::Cluster(r) => {
                                    // Reach is about peers: every port, so any match shows.
                                    let everything = ClusterRule {
                                        peers: r.peers.clone(),
                                        ports: None,
                                    };
                                    for (family, ipv4) in [(0, true), (1, false)] {
                                        for (b, &rep) in reps.iter().enumerate() {
                                            let context = RuleContext {
                                                engine,
                                                direction,
                                                subject: rep,
                                                remote: Endpoint::Pod(rep),
                                                ipv4,
                                                protocol: Protocol::Tcp,
                                                icmp: None,
                                            };
                                            if !context
                                                .cluster_rule_ports(&everything, &mut scratch)
                                                .is_empty()
                                            {
                                                out[family][b / 64] |= 1 << (b % 64);
                                            }
                                        }
                                    }
                                }
                                // Calico's matches depend on both sides and on ports: no
                                // precomputed reach, the per-flow code decides.
                                RuleMatcher::Calico(_) => return None,
                            }
                            let [v4, v6] = out;
                            Some([IdentitySet::from_bits(v4), IdentitySet::from_bits(v6)])
                        })
                        .collect()
                };
                [
                    per_direction(Direction::Ingress),
                    per_direction(Direction::Egress),
                ]
            })
            .collect();
        Self { reach, words }
    }
}

/// The oracle of the compiled path: bit tests for reach, the per-flow code for ports.
struct ReachOracle<'r, 'e, 'c> {
    inner: Oracle<'e, 'c>,
    reach: &'r Reach,
    remote_identity: usize,
}

impl RuleOracle for ReachOracle<'_, '_, '_> {
    fn rule_ports(
        &mut self,
        index: usize,
        policy: &Policy,
        direction: Direction,
        rule_index: usize,
    ) -> PortSet {
        let family = usize::from(!self.inner.context.ipv4);
        match &self.reach.reach[index][direction_index(direction)][rule_index] {
            Some(bits) if !bits[family].contains(self.remote_identity) => PortSet::empty(),
            Some(_) => {
                let rule = &policy.rules(direction)[rule_index];
                match &rule.matcher {
                    // The bit said the peer matches: only the ports are left to decide.
                    RuleMatcher::Kubernetes(r) => {
                        let c = &self.inner.context;
                        let destination = match direction {
                            Direction::Ingress => Some(&c.engine.cluster().pods[c.subject]),
                            Direction::Egress => c.engine.pod_of(c.remote),
                        };
                        matching::rule_ports(r, destination, c.protocol.canonical())
                    }
                    _ => self.inner.rule_ports(index, policy, direction, rule_index),
                }
            }
            None => self.inner.rule_ports(index, policy, direction, rule_index),
        }
    }

    fn egress_to_own_node(&self) -> bool {
        self.inner.egress_to_own_node()
    }
}

impl Engine<'_> {
    #[expect(
        clippy::too_many_arguments,
        reason = "one direction of one identity pair"
    )]
    fn reach_ports(
        &self,
        reach: &Reach,
        calico: bool,
        direction: Direction,
        subject: usize,
        remote: Endpoint,
        remote_identity: usize,
        ipv4: bool,
        protocol: Protocol,
        notes: &mut Vec<crate::verdict::Note>,
    ) -> PortSet {
        let pipeline = self.pipeline();
        if pipeline.applying[subject][direction_index(direction)].is_empty() {
            return PortSet::all();
        }
        let mut oracle = ReachOracle {
            inner: Oracle {
                context: RuleContext {
                    engine: self,
                    direction,
                    subject,
                    remote,
                    ipv4,
                    protocol,
                    icmp: None,
                },
                notes: Vec::new(),
            },
            reach,
            remote_identity,
        };
        let walk = Walk {
            calico,
            explain: false,
            direction,
            notes,
        };
        let mut allowed = PortSet::empty();
        for s in pipeline.run(subject, walk, &mut oracle) {
            if s.allowed {
                allowed = allowed.union(&s.ports);
            }
        }
        allowed
    }
}

/// What one identity's rules can reach in one direction, and its verdict when none match.
struct Shortcut {
    /// Union of the reach of every applying rule, per family; `None` disables the shortcut.
    reach: Option<[Compact; 2]>,
    /// Allowed ports per L4 protocol when no rule matches the remote side.
    unmatched: [PortSet; 3],
}

impl Shortcut {
    /// When nothing is allowed unless a rule matches, the only remote identities that can be
    /// allowed are those some rule reaches, in order; `None` when every one must be asked.
    fn only_reached(&self, identities: usize) -> Option<Vec<usize>> {
        let sets = self.reach.as_ref()?;
        if !self.unmatched.iter().all(PortSet::is_empty) {
            return None;
        }
        let mut out = Vec::new();
        sets[0].extend_into(&mut out);
        sets[1].extend_into(&mut out);
        out.sort_unstable();
        out.dedup();
        out.retain(|b| *b < identities);
        Some(out)
    }

    /// The verdict for remote identity `b` if no applying rule can reach it.
    fn unreached(&self, family: usize, b: usize) -> Option<&[PortSet; 3]> {
        match &self.reach {
            Some(sets) if !sets[family].contains(b) => Some(&self.unmatched),
            _ => None,
        }
    }
}

/// A set of identities kept as whichever is smaller, the sorted list or the bitset: one
/// union per identity and direction as a bitset over 50,000 identities was 1.2 GB at Antrea
/// size, and most unions hold a few workloads.
enum Compact {
    Listed(Vec<u32>),
    Bits(Vec<u64>),
}

impl Compact {
    fn from_bits(bits: Vec<u64>) -> Self {
        let count: usize = bits.iter().map(|w| w.count_ones() as usize).sum();
        if count * size_of::<u32>() >= bits.len() * size_of::<u64>() {
            return Self::Bits(bits);
        }
        let mut listed = Vec::with_capacity(count);
        for (k, word) in bits.iter().enumerate() {
            let mut w = *word;
            while w != 0 {
                listed
                    .push(u32::try_from(k * 64 + w.trailing_zeros() as usize).unwrap_or(u32::MAX));
                w &= w - 1;
            }
        }
        Self::Listed(listed)
    }

    fn contains(&self, i: usize) -> bool {
        match self {
            Self::Listed(list) => u32::try_from(i).is_ok_and(|i| list.binary_search(&i).is_ok()),
            Self::Bits(bits) => bit(bits, i),
        }
    }

    /// Appends the identities, in order.
    fn extend_into(&self, out: &mut Vec<usize>) {
        match self {
            Self::Listed(list) => out.extend(list.iter().map(|&i| i as usize)),
            Self::Bits(bits) => {
                for (k, word) in bits.iter().enumerate() {
                    let mut w = *word;
                    while w != 0 {
                        out.push(k * 64 + w.trailing_zeros() as usize);
                        w &= w - 1;
                    }
                }
            }
        }
    }
}

/// An oracle for which no rule matches: the walk then yields the default of every layer.
struct NothingMatches;

impl RuleOracle for NothingMatches {
    fn rule_ports(&mut self, _: usize, _: &Policy, _: Direction, _: usize) -> PortSet {
        PortSet::empty()
    }

    fn egress_to_own_node(&self) -> bool {
        false
    }
}

impl Engine<'_> {
    fn shortcut(&self, reach: &Reach, calico: bool, direction: Direction, rep: usize) -> Shortcut {
        let pipeline = self.pipeline();
        let applying = &pipeline.applying[rep][direction_index(direction)];
        // With every rule empty the walk is the same for each protocol: run it once.
        let unmatched_one = if applying.is_empty() {
            PortSet::all()
        } else {
            let mut notes = Vec::new();
            let walk = Walk {
                calico,
                explain: false,
                direction,
                notes: &mut notes,
            };
            let mut allowed = PortSet::empty();
            for s in pipeline.run(rep, walk, &mut NothingMatches) {
                if s.allowed {
                    allowed = allowed.union(&s.ports);
                }
            }
            allowed
        };
        let unmatched = [unmatched_one.clone(), unmatched_one.clone(), unmatched_one];
        let mut union: Option<[Vec<u64>; 2]> = Some([Vec::new(), Vec::new()]);
        for &j in applying {
            for rule in &reach.reach[j][direction_index(direction)] {
                match (rule, union.as_mut()) {
                    (Some(bits), Some(u)) => {
                        for family in 0..2 {
                            bits[family].add_to(&mut u[family], reach.words);
                        }
                    }
                    (None, _) => union = None,
                    _ => {}
                }
            }
        }
        Shortcut {
            reach: union.map(|[v4, v6]| [Compact::from_bits(v4), Compact::from_bits(v6)]),
            unmatched,
        }
    }
}
