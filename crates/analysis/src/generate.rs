//! `bulkhead generate`: least-privilege NetworkPolicies from observed flows. Per workload that
//! received traffic, an ingress policy admitting exactly the observed sources on the observed
//! ports; per workload that sent traffic, an egress policy to exactly the observed
//! destinations. Pods are selected by the labels all pods of their workload share; peers in
//! other namespaces by `kubernetes.io/metadata.name`; addresses outside the snapshot as /32
//! (/128) ipBlocks.

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
    /// (namespace, workload name, selector labels)
    Workload(String, String, Vec<(String, String)>),
    Address(std::net::IpAddr),
}

type Ports = BTreeSet<(String, Option<u16>)>;

#[derive(Debug, Default)]
pub struct Generated {
    /// Multi-document YAML, ready for review and commit.
    pub yaml: String,
    pub policies: usize,
    /// Why some flows or workloads were left out.
    pub skipped: Vec<String>,
}

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
        Peer::Workload(ns, _, labels) => {
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
        Peer::Address(ip) => {
            let prefix = if ip.is_ipv4() { 32 } else { 128 };
            format!("{indent}- ipBlock:\n{indent}    cidr: {ip}/{prefix}\n")
        }
    }
}

/// Policies for the observed `records`.
pub fn generate(engine: &Engine<'_>, records: &[FlowRecord]) -> Generated {
    let cluster = engine.cluster();
    let mut generated = Generated::default();
    // (namespace, workload name, selector) -> peer -> ports, per direction.
    type Key = (String, String, Vec<(String, String)>);
    let mut ingress: BTreeMap<Key, BTreeMap<Peer, Ports>> = BTreeMap::new();
    let mut egress: BTreeMap<Key, BTreeMap<Peer, Ports>> = BTreeMap::new();
    let mut skipped = BTreeSet::new();
    let as_peer = |endpoint: Endpoint| -> Option<Peer> {
        match endpoint {
            Endpoint::Pod(i) => {
                let p = &cluster.pods[i];
                Some(Peer::Workload(
                    p.namespace.clone(),
                    p.workload.name.clone(),
                    workload_selector(engine, i),
                ))
            }
            Endpoint::External(ip) => Some(Peer::Address(ip)),
            Endpoint::Node(i) => cluster.nodes[i].ips.first().map(|ip| Peer::Address(*ip)),
        }
    };
    for r in records {
        let Ok(protocol) = r.protocol.parse::<Protocol>() else {
            skipped.insert(format!(
                "protocol {:?} is not one a policy can name",
                r.protocol
            ));
            continue;
        };
        let port = r.dst_port.filter(|_| protocol.has_ports());
        let ports_entry = (protocol.to_string(), port);
        let (src, dst) = (
            engine.endpoint_for_ip(r.src_ip),
            engine.endpoint_for_ip(r.dst_ip),
        );
        for (side, other, map) in [(dst, src, &mut ingress), (src, dst, &mut egress)] {
            let Endpoint::Pod(i) = side else { continue };
            let pod = &cluster.pods[i];
            if pod.host_network {
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
            if matches!(&peer, Peer::Workload(_, _, l) if l.is_empty()) {
                skipped.insert(format!(
                    "a peer of {}/{} shares no label to select it by",
                    pod.namespace, pod.workload
                ));
                continue;
            }
            map.entry((pod.namespace.clone(), pod.workload.name.clone(), labels))
                .or_default()
                .entry(peer)
                .or_default()
                .insert(ports_entry.clone());
        }
    }
    // The cluster DNS pods, when the snapshot has them (the `k8s-app: kube-dns` convention).
    let dns = cluster
        .pods
        .iter()
        .position(|p| p.labels.get("k8s-app").is_some_and(|v| v == "kube-dns"))
        .and_then(|i| as_peer(Endpoint::Pod(i)));
    let mut out = String::from(
        "# Generated by `bulkhead generate` from observed flows: least privilege, review before\n# committing. Pair it with a default deny (`bulkhead scaffold NAMESPACE`).\n",
    );
    for (direction, map, field, kind) in [
        ("ingress", &ingress, "from", "Ingress"),
        ("egress", &egress, "to", "Egress"),
    ] {
        for ((namespace, workload, labels), peers) in map {
            generated.policies += 1;
            // Name lookups often go to the DNS Service address and are then missing from the
            // log under the pods' addresses; every pod needs them, so egress always has DNS.
            let dns_rule = if direction == "egress" {
                dns.as_ref().map(|peer| {
                    format!(
                        "  - to:\n{}    ports:\n    - protocol: UDP\n      port: 53\n    - protocol: TCP\n      port: 53\n",
                        peer_yaml(peer, namespace, "    ")
                    )
                })
            } else {
                None
            };
            let _ = write!(
                out,
                "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {}\n  namespace: {}\nspec:\n  podSelector:\n{}  policyTypes:\n  - {kind}\n  {direction}:\n",
                quote(&format!("{workload}-{direction}")),
                quote(namespace),
                selector(labels, "    "),
            );
            // One rule per peer: its own ports, nothing more.
            for (peer, ports) in peers {
                if direction == "egress" && dns.as_ref().is_some_and(|d| d == peer) {
                    continue;
                }
                let _ = write!(
                    out,
                    "  - {field}:\n{}{}",
                    peer_yaml(peer, namespace, "    "),
                    ports_yaml(ports, "    ")
                );
            }
            if let Some(rule) = dns_rule {
                out.push_str(&rule);
            }
        }
    }
    generated.yaml = out;
    generated.skipped = skipped.into_iter().collect();
    generated
}
