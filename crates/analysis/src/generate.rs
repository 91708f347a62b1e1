//! `bulkhead generate`: least-privilege NetworkPolicies from observed flows, safe to apply.
//! Per namespace it covers, the playbook's first two policies: a default deny and DNS egress
//! for every pod. Per workload that received traffic, an ingress policy admitting exactly the
//! observed sources on the observed ports; per workload that sent traffic, an egress policy to
//! exactly the observed destinations, each rule with a comment naming the flows it came from.
//! Pods are selected by the labels all pods of their workload share (never per-pod labels such
//! as `pod-template-hash`); peers in other namespaces by `kubernetes.io/metadata.name`;
//! addresses outside the snapshot as CIDRs (`/32` unless widened).
//!
//! The cluster DNS server gets no policy at all, and its namespace no default deny: an ingress
//! policy on it admitting only the pods seen resolving names would cut DNS for every other
//! pod, so it is left out with a note. [`verify`] checks the result against the flows.

use crate::flows::FlowRecord;
use bulkhead_engine::{Endpoint, Engine};
use bulkhead_model::{Labels, Protocol};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Labels that differ between pods of one workload and so cannot select it.
const PER_POD_LABELS: &[&str] = &[
    "pod-template-hash",
    "controller-revision-hash",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "pod-template-generation",
];

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Peer {
    /// (namespace, selector labels): workloads a selector cannot tell apart are one peer.
    Workload(String, Vec<(String, String)>),
    Network(ipnet::IpNet),
}

type Ports = BTreeSet<(String, Option<u16>)>;

/// A peer's ports, and the flows (by description) they came from with their record counts.
type PeerSeen = (Ports, BTreeMap<String, u64>);

#[derive(Debug, Default)]
pub struct Generated {
    /// Multi-document YAML, ready for review and commit.
    pub yaml: String,
    pub policies: usize,
    /// Why some flows or workloads were left out.
    pub skipped: Vec<String>,
    /// Namespaces given a default deny (and DNS egress).
    pub namespaces: Vec<String>,
    /// The DNS server pods (snapshot indices), which get no policy.
    pub dns_servers: Vec<usize>,
}

/// How `generate` writes what it proposes.
#[derive(Clone, Copy, Debug)]
pub struct GenerateOptions {
    /// Prefix length for addresses outside the snapshot (`/32` for one address).
    pub cidr_prefix_v4: u8,
    pub cidr_prefix_v6: u8,
    /// Kubernetes NetworkPolicy, or Calico v3 `projectcalico.org/v3` NetworkPolicy.
    pub calico: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            cidr_prefix_v4: 32,
            cidr_prefix_v6: 128,
            calico: false,
        }
    }
}

/// A Calico selector for labels: `app == 'web' && tier == 'api'`.
fn calico_selector(labels: &[(String, String)]) -> String {
    let terms: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k} == '{}'", v.replace('\'', "")))
        .collect();
    if terms.is_empty() {
        "all()".to_string()
    } else {
        terms.join(" && ")
    }
}

/// The Calico entity (`source`/`destination`) a peer is, as YAML under `indent`.
fn calico_entity(peer: &Peer, own_namespace: &str, indent: &str) -> String {
    match peer {
        Peer::Workload(ns, labels) => {
            let mut out = format!("{indent}selector: {}\n", quote(&calico_selector(labels)));
            if ns != own_namespace {
                let _ = writeln!(
                    out,
                    "{indent}namespaceSelector: {}",
                    quote(&format!("projectcalico.org/name == '{ns}'"))
                );
            }
            out
        }
        Peer::Network(net) => format!("{indent}nets:\n{indent}- {net}\n"),
    }
}

/// Calico rules for one peer: one per protocol (Calico names one protocol a rule).
fn calico_rules(direction: &str, peer: &Peer, ports: &Ports, own_namespace: &str) -> String {
    let side = if direction == "ingress" {
        "source"
    } else {
        "destination"
    };
    let mut by_protocol: BTreeMap<&str, Vec<u16>> = BTreeMap::new();
    let mut any_port = Vec::new();
    for (protocol, port) in ports {
        match port {
            Some(p) => by_protocol.entry(protocol.as_str()).or_default().push(*p),
            None => any_port.push(protocol.as_str()),
        }
    }
    let mut out = String::new();
    for protocol in any_port {
        let _ = write!(
            out,
            "  - action: Allow\n    protocol: {protocol}\n    {side}:\n{}",
            calico_entity(peer, own_namespace, "      ")
        );
    }
    for (protocol, numbers) in by_protocol {
        let list: Vec<String> = numbers.iter().map(ToString::to_string).collect();
        let entity = calico_entity(peer, own_namespace, "      ");
        let _ = match direction {
            "ingress" => write!(
                out,
                "  - action: Allow\n    protocol: {protocol}\n    source:\n{entity}    destination:\n      ports: [{}]\n",
                list.join(", ")
            ),
            _ => write!(
                out,
                "  - action: Allow\n    protocol: {protocol}\n    destination:\n{entity}      ports: [{}]\n",
                list.join(", ")
            ),
        };
    }
    out
}

/// NodeLocal DNSCache's link-local address: DNS to it is name resolution too.
pub const NODE_LOCAL_DNS: &str = "169.254.20.10";

/// The labels every pod of `namespace/workload` carries (minus per-pod ones).
fn workload_selector(engine: &Engine<'_>, pod: usize) -> Vec<(String, String)> {
    let cluster = engine.cluster();
    let me = &cluster.pods[pod];
    let mut common: Option<Labels> = None;
    for p in cluster
        .pods
        .iter()
        .filter(|p| p.namespace == me.namespace && p.workload == me.workload)
    {
        common = Some(match common {
            None => p.labels.clone(),
            Some(c) => c
                .into_iter()
                .filter(|(k, v)| p.labels.get(k) == Some(v))
                .collect(),
        });
    }
    common
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !PER_POD_LABELS.contains(&k.as_str()))
        .collect()
}

fn quote(s: &str) -> String {
    // A JSON string is a valid YAML double-quoted scalar.
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

fn selector(labels: &[(String, String)], indent: &str) -> String {
    let mut out = format!("{indent}matchLabels:\n");
    for (k, v) in labels {
        let _ = writeln!(out, "{indent}  {}: {}", quote(k), quote(v));
    }
    out
}

fn ports_yaml(ports: &Ports, indent: &str) -> String {
    if ports.iter().any(|(_, p)| p.is_none()) {
        // A protocol without ports (ICMP) was seen: ports would exclude it, so allow all.
        return String::new();
    }
    let mut out = format!("{indent}ports:\n");
    for (protocol, port) in ports {
        if let Some(port) = port {
            let _ = writeln!(
                out,
                "{indent}- protocol: {protocol}\n{indent}  port: {port}"
            );
        }
    }
    out
}

fn peer_yaml(peer: &Peer, own_namespace: &str, indent: &str) -> String {
    match peer {
        Peer::Workload(ns, labels) => {
            let mut out = String::new();
            let pods = format!(
                "{indent}  podSelector:\n{}",
                selector(labels, &format!("{indent}    "))
            );
            if ns == own_namespace {
                let _ = write!(out, "{indent}- {}", pods.trim_start());
            } else {
                let _ = write!(
                    out,
                    "{indent}- namespaceSelector:\n{indent}    matchLabels:\n{indent}      kubernetes.io/metadata.name: {}\n{pods}",
                    quote(ns)
                );
            }
            out
        }
        Peer::Network(net) => format!("{indent}- ipBlock:\n{indent}    cidr: {net}\n"),
    }
}

/// Policies for the observed `records`.
pub fn generate(
    engine: &Engine<'_>,
    records: &[FlowRecord],
    options: &GenerateOptions,
) -> Generated {
    let cluster = engine.cluster();
    let mut generated = Generated::default();
    // (namespace, selector) -> peer -> (ports, flows it came from), per direction; workloads a
    // selector cannot tell apart share one policy, named after the first.
    type Key = (String, Vec<(String, String)>);
    let mut policy_name: BTreeMap<Key, String> = BTreeMap::new();
    type Seen = BTreeMap<Peer, PeerSeen>;
    let mut ingress: BTreeMap<Key, Seen> = BTreeMap::new();
    let mut egress: BTreeMap<Key, Seen> = BTreeMap::new();
    let mut skipped = BTreeSet::new();
    let network = |ip: std::net::IpAddr| -> Peer {
        let prefix = if ip.is_ipv4() {
            options.cidr_prefix_v4.min(32)
        } else {
            options.cidr_prefix_v6.min(128)
        };
        Peer::Network(
            ipnet::IpNet::new(ip, prefix)
                .map(|n| n.trunc())
                .unwrap_or_else(|_| ipnet::IpNet::from(ip)),
        )
    };
    let as_peer = |endpoint: Endpoint| -> Option<Peer> {
        match endpoint {
            Endpoint::Pod(i) => {
                let p = &cluster.pods[i];
                Some(Peer::Workload(
                    p.namespace.clone(),
                    workload_selector(engine, i),
                ))
            }
            Endpoint::External(ip) => Some(network(ip)),
            Endpoint::Node(i) => cluster.nodes[i].ips.first().map(|ip| network(*ip)),
        }
    };
    // The DNS server: the `k8s-app: kube-dns` convention, or pods that answered on UDP/53.
    let mut dns_servers: BTreeSet<usize> = crate::dns::servers(engine).into_iter().collect();
    let mut node_local_dns = false;
    let resolved: Vec<(Endpoint, Endpoint, Protocol, Option<u16>, &FlowRecord)> = records
        .iter()
        .filter_map(|r| {
            let Ok(protocol) = r.protocol.parse::<Protocol>() else {
                skipped.insert(format!(
                    "protocol {:?} is not one a policy can name",
                    r.protocol
                ));
                return None;
            };
            let port = r.dst_port.filter(|_| protocol.has_ports());
            match (
                crate::flows::resolve(engine, r.src.as_deref(), r.src_ip),
                crate::flows::resolve(engine, r.dst.as_deref(), r.dst_ip),
            ) {
                (Ok(s), Ok(d)) => Some((s, d, protocol, port, r)),
                (Err(e), _) | (_, Err(e)) => {
                    skipped.insert(format!("unresolved: {e}"));
                    None
                }
            }
        })
        .collect();
    for (_, dst, protocol, port, r) in &resolved {
        if *port == Some(53) && *protocol == Protocol::Udp {
            match dst {
                Endpoint::Pod(i) => {
                    dns_servers.insert(*i);
                }
                Endpoint::External(_)
                    if r.dst_ip.is_some_and(|ip| ip.to_string() == NODE_LOCAL_DNS) =>
                {
                    node_local_dns = true;
                }
                _ => {}
            }
        }
    }
    let dns_workloads: BTreeSet<(String, String)> = dns_servers
        .iter()
        .map(|&i| {
            (
                cluster.pods[i].namespace.clone(),
                cluster.pods[i].workload.name.clone(),
            )
        })
        .collect();
    let dns_namespaces: BTreeSet<String> = dns_workloads.iter().map(|(ns, _)| ns.clone()).collect();
    for (src, dst, protocol, port, record) in &resolved {
        let ports_entry = (protocol.to_string(), *port);
        for (side, other, map) in [(*dst, *src, &mut ingress), (*src, *dst, &mut egress)] {
            let Endpoint::Pod(i) = side else { continue };
            let pod = &cluster.pods[i];
            if pod.host_network {
                continue;
            }
            if dns_workloads.contains(&(pod.namespace.clone(), pod.workload.name.clone())) {
                skipped.insert(format!(
                    "{}/{}: the cluster DNS server gets no policy (an ingress policy must admit every pod that resolves names, not only those seen)",
                    pod.namespace, pod.workload
                ));
                continue;
            }
            let labels = workload_selector(engine, i);
            if labels.is_empty() {
                skipped.insert(format!(
                    "{}/{}: its pods share no label to select them by",
                    pod.namespace, pod.workload
                ));
                continue;
            }
            let Some(peer) = as_peer(other) else { continue };
            if matches!(&peer, Peer::Workload(_, l) if l.is_empty()) {
                skipped.insert(format!(
                    "a peer of {}/{} shares no label to select it by",
                    pod.namespace, pod.workload
                ));
                continue;
            }
            let flow = format!(
                "{} -> {} {protocol}{}",
                peer_name(engine, *src),
                peer_name(engine, *dst),
                port.map(|p| format!("/{p}")).unwrap_or_default()
            );
            let key = (pod.namespace.clone(), labels);
            policy_name
                .entry(key.clone())
                .or_insert_with(|| pod.workload.name.clone());
            let entry = map.entry(key).or_default().entry(peer).or_default();
            entry.0.insert(ports_entry.clone());
            *entry.1.entry(flow).or_default() += record.merged.max(1);
        }
    }
    // Namespaces covered: every namespace a policy is written for, but the DNS server's.
    let namespaces: BTreeSet<String> = ingress
        .keys()
        .chain(egress.keys())
        .map(|(ns, _)| ns.clone())
        .filter(|ns| !dns_namespaces.contains(ns))
        .collect();
    for ns in &dns_namespaces {
        skipped.insert(format!(
            "namespace {ns}: no default deny, it runs the cluster DNS server"
        ));
    }
    let mut dns_peers: Vec<Peer> = dns_workloads
        .iter()
        .filter_map(|(ns, w)| {
            dns_servers
                .iter()
                .find(|&&i| cluster.pods[i].namespace == *ns && cluster.pods[i].workload.name == *w)
                .and_then(|&i| as_peer(Endpoint::Pod(i)))
        })
        .chain(
            node_local_dns
                .then(|| {
                    NODE_LOCAL_DNS
                        .parse()
                        .ok()
                        .map(|ip: std::net::IpAddr| Peer::Network(ipnet::IpNet::from(ip)))
                })
                .flatten(),
        )
        .collect();
    // DNS pods a selector cannot tell apart (CoreDNS replicas as bare pods) are one peer.
    dns_peers.sort();
    dns_peers.dedup();
    let mut out = String::from(
        "# Generated by `bulkhead generate` from observed flows: least privilege, review before\n# committing.\n",
    );
    for ns in &namespaces {
        generated.policies += 2;
        if options.calico {
            let _ = write!(
                out,
                "---\n# Deny everything not allowed below, in both directions (the playbook's first policy):\n# the policy selects every pod and allows nothing, so the tier's end denies.\napiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: default-deny-all\n  namespace: {}\nspec:\n  selector: all()\n  types:\n  - Ingress\n  - Egress\n",
                quote(ns)
            );
            let _ = write!(
                out,
                "---\n# Every pod of the namespace resolves names: UDP and TCP 53 to the cluster DNS.\napiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: allow-dns\n  namespace: {}\nspec:\n  selector: all()\n  types:\n  - Egress\n  egress:\n",
                quote(ns)
            );
            let dns_ports: Ports = [("UDP".to_string(), Some(53)), ("TCP".to_string(), Some(53))]
                .into_iter()
                .collect();
            if dns_peers.is_empty() {
                out.push_str("  - action: Allow\n    protocol: UDP\n    destination:\n      ports: [53]\n  - action: Allow\n    protocol: TCP\n    destination:\n      ports: [53]\n");
            }
            for peer in &dns_peers {
                out.push_str(&calico_rules("egress", peer, &dns_ports, ns));
            }
            continue;
        }
        let _ = write!(
            out,
            "---\n# Deny everything not allowed below, in both directions (the playbook's first policy).\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: default-deny-all\n  namespace: {}\nspec:\n  podSelector: {{}}\n  policyTypes:\n  - Ingress\n  - Egress\n",
            quote(ns)
        );
        let _ = write!(
            out,
            "---\n# Every pod of the namespace resolves names: UDP and TCP 53 to the cluster DNS.\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: allow-dns\n  namespace: {}\nspec:\n  podSelector: {{}}\n  policyTypes:\n  - Egress\n  egress:\n",
            quote(ns)
        );
        if dns_peers.is_empty() {
            // No DNS server in the snapshot: allow port 53 to anywhere rather than cut DNS.
            out.push_str("  - ports:\n    - protocol: UDP\n      port: 53\n    - protocol: TCP\n      port: 53\n");
        } else {
            out.push_str("  - to:\n");
            for peer in &dns_peers {
                out.push_str(&peer_yaml(peer, ns, "    "));
            }
            out.push_str("    ports:\n    - protocol: UDP\n      port: 53\n    - protocol: TCP\n      port: 53\n");
        }
    }
    for (direction, map, field, kind) in [
        ("ingress", &ingress, "from", "Ingress"),
        ("egress", &egress, "to", "Egress"),
    ] {
        for (key, peers) in map {
            let (namespace, labels) = key;
            let workload = &policy_name[key];
            let rules: Vec<(&Peer, &PeerSeen)> = peers
                .iter()
                // DNS is the namespace's allow-dns policy.
                .filter(|(peer, _)| !(direction == "egress" && dns_peers.contains(peer)))
                .collect();
            if rules.is_empty() {
                continue;
            }
            generated.policies += 1;
            if options.calico {
                let _ = write!(
                    out,
                    "---\napiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: {}\n  namespace: {}\nspec:\n  selector: {}\n  types:\n  - {kind}\n  {direction}:\n",
                    quote(&format!("{workload}-{direction}")),
                    quote(namespace),
                    quote(&calico_selector(labels)),
                );
                for (peer, (ports, flows)) in rules {
                    for (flow, n) in flows.iter().take(5) {
                        let _ = writeln!(out, "  # {n} record(s): {flow}");
                    }
                    out.push_str(&calico_rules(direction, peer, ports, namespace));
                }
                continue;
            }
            let _ = write!(
                out,
                "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {}\n  namespace: {}\nspec:\n  podSelector:\n{}  policyTypes:\n  - {kind}\n  {direction}:\n",
                quote(&format!("{workload}-{direction}")),
                quote(namespace),
                selector(labels, "    "),
            );
            // One rule per peer: its own ports, nothing more; the flows it came from above it.
            for (peer, (ports, flows)) in rules {
                for (flow, n) in flows.iter().take(5) {
                    let _ = writeln!(out, "  # {n} record(s): {flow}");
                }
                if flows.len() > 5 {
                    let _ = writeln!(out, "  # ... and {} more flows", flows.len() - 5);
                }
                let _ = write!(
                    out,
                    "  - {field}:\n{}{}",
                    peer_yaml(peer, namespace, "    "),
                    ports_yaml(ports, "    ")
                );
            }
        }
    }
    generated.yaml = out;
    generated.skipped = skipped.into_iter().collect();
    generated.namespaces = namespaces.into_iter().collect();
    generated.dns_servers = dns_servers.into_iter().collect();
    generated
}

fn peer_name(engine: &Engine<'_>, endpoint: Endpoint) -> String {
    let cluster = engine.cluster();
    match endpoint {
        Endpoint::Pod(i) => cluster.pods[i].workload_key(),
        Endpoint::Node(i) => format!("node:{}", cluster.nodes[i].name),
        Endpoint::External(ip) => ip.to_string(),
    }
}

/// What [`verify`] found. Empty lists: the proposal is exact and safe.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verification {
    /// Observed flows that the snapshot's policies plus the proposal would deny.
    pub denied: Vec<String>,
    /// Connections the proposal alone allows beyond the observed flows and DNS.
    pub extra: Vec<String>,
    /// Pods of a default-denied namespace that cannot resolve names over UDP or TCP.
    pub without_dns: Vec<String>,
    pub observed: usize,
    /// Errors and warnings `bulkhead check` gives on the proposal (validation and every lint
    /// rule, located in the proposal's file).
    pub check: Vec<String>,
}

impl Verification {
    /// Nothing found: the proposal allows exactly the observed flows and DNS, and is clean.
    pub fn passed(&self) -> bool {
        self.denied.is_empty()
            && self.extra.is_empty()
            && self.without_dns.is_empty()
            && self.check.is_empty()
    }
}

/// A proposal as the caller loaded it: into the snapshot, and alone.
#[derive(Debug)]
pub struct Proposal<'a> {
    /// The snapshot the proposal was generated from.
    pub snapshot: &'a bulkhead_model::Cluster,
    /// The snapshot with the proposal, and what loading them said.
    pub with: &'a bulkhead_model::Cluster,
    pub with_diagnostics: &'a [bulkhead_model::Diagnostic],
    pub with_options: bulkhead_engine::EngineOptions,
    /// The proposal loaded on its own (only its policies are used).
    pub alone: &'a bulkhead_model::Cluster,
    /// The file name the proposal was loaded under, to pick its findings.
    pub file: &'a str,
}

/// The whole built-in check of a proposal: [`verify`] on the snapshot with it and on the
/// snapshot's endpoints with its policies alone (under the semantics those policies call
/// for), plus `bulkhead check` on it.
pub fn check_proposal(
    proposal: &Proposal<'_>,
    records: &[FlowRecord],
    generated: &Generated,
) -> Verification {
    let mut only = proposal.snapshot.clone();
    only.policies = proposal.alone.policies.clone();
    only.policies.retain(|p| p.staged.is_none());
    let only_options = bulkhead_engine::EngineOptions {
        semantics: Engine::auto_semantics(&only),
        ..proposal.with_options
    };
    let mut v = verify(
        &Engine::new(proposal.with, proposal.with_options),
        &Engine::new(&only, only_options),
        records,
        generated,
    );
    v.check = proposal
        .with_diagnostics
        .iter()
        .cloned()
        .chain(crate::lint(proposal.with, &crate::Config::default()))
        .filter(|d| {
            d.severity != bulkhead_model::Severity::Info
                && d.location
                    .as_ref()
                    .is_some_and(|l| *l.file == *proposal.file)
        })
        .map(|d| format!("{} {}", d.code, d.message))
        .collect();
    v
}

/// Checks a proposal: `with` is the snapshot plus the generated policies, `only` the
/// snapshot's endpoints with the generated policies alone. Every observed flow must be allowed
/// by `with`; every connection `only` allows to or from a covered namespace must be an
/// observed flow or DNS; every pod of a covered namespace must reach DNS on UDP and TCP 53.
pub fn verify(
    with: &Engine<'_>,
    only: &Engine<'_>,
    records: &[FlowRecord],
    generated: &Generated,
) -> Verification {
    use bulkhead_engine::{Aggregation, ConnectivityOptions, Flow};
    let mut v = Verification::default();
    let audit = crate::flows::audit(with, records);
    v.observed = audit.flows;
    v.denied = audit
        .denied
        .iter()
        .map(|d| {
            format!(
                "{} -> {} {}{}",
                d.from,
                d.to,
                d.protocol,
                d.port.map(|p| format!("/{p}")).unwrap_or_default()
            )
        })
        .collect();
    // Policies select by labels: workloads of one namespace with the same selector labels are
    // one group, and an observed flow of one stands for the group.
    let cluster = only.cluster();
    let mut group: BTreeMap<String, String> = BTreeMap::new();
    for i in only.pod_endpoints() {
        let p = &cluster.pods[i];
        group
            .entry(p.workload_key())
            .or_insert_with(|| format!("{} {:?}", p.namespace, workload_selector(only, i)));
    }
    let group_of = |w: &str| group.get(w).cloned().unwrap_or_else(|| w.to_string());
    // Observed (source group, destination group, protocol) -> ports.
    let mut observed: BTreeMap<(String, String, Protocol), BTreeSet<Option<u16>>> = BTreeMap::new();
    for r in records {
        let (Ok(s), Ok(d), Ok(protocol)) = (
            crate::flows::resolve(only, r.src.as_deref(), r.src_ip),
            crate::flows::resolve(only, r.dst.as_deref(), r.dst_ip),
            r.protocol.parse::<Protocol>(),
        ) else {
            continue;
        };
        observed
            .entry((
                group_of(&peer_name(only, s)),
                group_of(&peer_name(only, d)),
                protocol.canonical(),
            ))
            .or_default()
            .insert(r.dst_port.filter(|_| protocol.has_ports()));
    }
    let dns: BTreeSet<String> = generated
        .dns_servers
        .iter()
        .map(|&i| cluster.pods[i].workload_key())
        .collect();
    let covered = |workload: &str| {
        generated
            .namespaces
            .iter()
            .any(|ns| workload.starts_with(&format!("{ns}/")))
    };
    for c in only.connectivity(&ConnectivityOptions {
        aggregation: Aggregation::Workload,
        ..ConnectivityOptions::default()
    }) {
        if !(covered(&c.from) || covered(&c.to)) || c.from == c.to {
            continue;
        }
        let seen = observed.get(&(group_of(&c.from), group_of(&c.to), c.protocol));
        let any_port_seen = seen.is_some_and(|p| p.contains(&None));
        let extra: Vec<String> = c
            .ports
            .ranges()
            .iter()
            .flat_map(|r| {
                // A range wider than a few ports is extra by itself unless "any" was seen.
                if r.end() - r.start() > 64 {
                    vec![format!("{}-{}", r.start(), r.end())]
                } else {
                    (r.start()..=r.end())
                        .filter(|p| {
                            !(seen.is_some_and(|s| s.contains(&Some(*p)))
                                || (*p == 53 && dns.contains(&c.to)))
                        })
                        .map(|p| p.to_string())
                        .collect()
                }
            })
            .collect();
        if !extra.is_empty() && !any_port_seen {
            v.extra.push(format!(
                "{} -> {} {} {}",
                c.from,
                c.to,
                c.protocol,
                extra.join(",")
            ));
        }
    }
    // DNS for every pod of a covered namespace, over both protocols.
    if let Some(&server) = generated.dns_servers.first() {
        for i in with.pod_endpoints() {
            let pod = &with.cluster().pods[i];
            if !generated.namespaces.contains(&pod.namespace) {
                continue;
            }
            for protocol in [Protocol::Udp, Protocol::Tcp] {
                let allowed = with
                    .evaluate(&Flow {
                        src: Endpoint::Pod(i),
                        dst: Endpoint::Pod(server),
                        protocol,
                        port: Some(53),
                        icmp: None,
                    })
                    .allowed;
                if !allowed {
                    v.without_dns.push(format!("{} {protocol}/53", pod.key()));
                }
            }
        }
    }
    v
}
