//! Random sequences of cluster events for the delta and live-index tests: pods added,
//! removed, relabelled and readdressed on two nodes; policies of every API added, edited and
//! deleted; namespaces relabelled; a namespace's audit toggled.
#![allow(dead_code, reason = "each test file uses a different part")]

use crate::random_cluster::{self, APPS, NAMESPACES, ip};
use bulkhead_model::{Cluster, NetworkPolicy, Pod, Policy, PolicyKind};
use proptest::prelude::*;
use std::collections::BTreeSet;

pub const NODES: [&str; 2] = ["node-1", "node-2"];

#[derive(Clone, Debug)]
pub enum Event {
    AddPod {
        namespace: usize,
        app: usize,
        node: usize,
    },
    RemovePod(usize),
    Relabel {
        pod: usize,
        app: usize,
    },
    Readdress {
        pod: usize,
        last_octet: u8,
    },
    AddPolicy(NetworkPolicy),
    EditPolicy(usize, NetworkPolicy),
    DeletePolicy(usize),
    AddOrdered(Policy),
    DeleteOrdered(usize),
    RelabelNamespace {
        namespace: usize,
        team: usize,
    },
    ToggleAudit(usize),
    /// `bulkhead.io/mode: audit` put on or taken off (promoted) a policy of any API.
    TogglePolicyAudit(usize),
}

pub fn event_strategy() -> impl Strategy<Value = Event> {
    prop_oneof![
        3 => (0..NAMESPACES.len(), 0..APPS.len(), 0..NODES.len())
            .prop_map(|(namespace, app, node)| Event::AddPod { namespace, app, node }),
        2 => (0usize..16).prop_map(Event::RemovePod),
        2 => (0usize..16, 0..APPS.len()).prop_map(|(pod, app)| Event::Relabel { pod, app }),
        1 => (0usize..16, 1u8..60).prop_map(|(pod, last_octet)| Event::Readdress { pod, last_octet }),
        2 => random_cluster::policy_strategy().prop_map(Event::AddPolicy),
        2 => (0usize..8, random_cluster::policy_strategy()).prop_map(|(i, p)| Event::EditPolicy(i, p)),
        1 => (0usize..8).prop_map(Event::DeletePolicy),
        1 => random_cluster::anp_strategy().prop_map(Event::AddOrdered),
        1 => random_cluster::gnp_strategy().prop_map(Event::AddOrdered),
        1 => (0usize..8).prop_map(Event::DeleteOrdered),
        1 => (0..NAMESPACES.len(), 0usize..3)
            .prop_map(|(namespace, team)| Event::RelabelNamespace { namespace, team }),
        1 => (0..NAMESPACES.len()).prop_map(Event::ToggleAudit),
        1 => (0usize..8).prop_map(Event::TogglePolicyAudit),
    ]
}

pub struct State {
    pub cluster: Cluster,
    pub audit: BTreeSet<String>,
    pub next_pod: usize,
    pub next_policy: usize,
}

pub fn new_pod(state: &mut State, namespace: usize, app: usize, node: usize) -> Pod {
    let n = state.next_pod;
    state.next_pod += 1;
    random_cluster::pod(
        NAMESPACES[namespace],
        &format!("q{n}"),
        random_cluster::labels(&[("app", APPS[app])]),
        ip(u8::try_from(100 + n % 150).expect("small")),
        NODES[node],
        80,
    )
}

fn kubernetes_indexes(cluster: &Cluster) -> Vec<usize> {
    (0..cluster.policies.len())
        .filter(|&i| cluster.policies[i].is_kubernetes())
        .collect()
}

pub fn apply_event(state: &mut State, event: &Event) {
    let cluster = &mut state.cluster;
    let pods = cluster.pods.len();
    match event {
        Event::AddPod {
            namespace,
            app,
            node,
        } => {
            let pod = new_pod(state, *namespace, *app, *node);
            state.cluster.pods.push(pod);
        }
        Event::RemovePod(i) if pods > 0 => {
            cluster.pods.remove(i % pods);
        }
        Event::Relabel { pod, app } if pods > 0 => {
            cluster.pods[pod % pods]
                .labels
                .insert("app".into(), APPS[*app].into());
        }
        Event::Readdress { pod, last_octet } if pods > 0 => {
            cluster.pods[pod % pods].ips = vec![ip(*last_octet)];
        }
        Event::AddPolicy(p) => {
            let mut p = p.clone();
            p.name = format!("np-new{}", state.next_policy);
            state.next_policy += 1;
            cluster.policies.push(Policy::from_network_policy(p, None));
        }
        Event::EditPolicy(i, p) => {
            let k8s = kubernetes_indexes(cluster);
            if let Some(&at) = k8s.get(i % k8s.len().max(1)) {
                let mut p = p.clone();
                p.name.clone_from(&cluster.policies[at].name);
                p.namespace = cluster.policies[at].namespace.clone().unwrap_or_default();
                cluster.policies[at] = Policy::from_network_policy(p, None);
            }
        }
        Event::DeletePolicy(i) => {
            let k8s = kubernetes_indexes(cluster);
            if let Some(&at) = k8s.get(i % k8s.len().max(1)) {
                cluster.policies.remove(at);
            }
        }
        Event::AddOrdered(p) => {
            let mut p = p.clone();
            if p.kind != PolicyKind::BaselineAdminNetworkPolicy {
                p.name = format!("ordered{}", state.next_policy);
                state.next_policy += 1;
            }
            cluster
                .policies
                .retain(|q| !(q.kind == p.kind && q.name == p.name));
            cluster.policies.push(p);
        }
        Event::DeleteOrdered(i) => {
            let ordered: Vec<usize> = (0..cluster.policies.len())
                .filter(|&k| !cluster.policies[k].is_kubernetes())
                .collect();
            if let Some(&at) = ordered.get(i % ordered.len().max(1)) {
                cluster.policies.remove(at);
            }
        }
        Event::RelabelNamespace { namespace, team } => {
            if let Some(ns) = cluster
                .namespaces
                .iter_mut()
                .find(|n| n.name == NAMESPACES[*namespace])
            {
                ns.labels.insert("team".into(), format!("t{team}"));
            }
        }
        Event::ToggleAudit(namespace) => {
            let name = NAMESPACES[*namespace].to_string();
            if !state.audit.remove(&name) {
                state.audit.insert(name);
            }
        }
        Event::TogglePolicyAudit(i) if !cluster.policies.is_empty() => {
            let n = cluster.policies.len();
            let policy = &mut cluster.policies[i % n];
            policy.staged = match policy.staged {
                None => Some(bulkhead_model::StagedAction::Audit),
                Some(bulkhead_model::StagedAction::Audit) => None,
                other => other,
            };
        }
        _ => {}
    }
    state.cluster.finish();
}

/// Mostly pods, the events a large cluster sees most, with every other kind mixed in.
pub fn pod_heavy_event_strategy() -> impl Strategy<Value = Event> {
    prop_oneof![
        12 => (0..NAMESPACES.len(), 0..APPS.len(), 0..NODES.len())
            .prop_map(|(namespace, app, node)| Event::AddPod { namespace, app, node }),
        8 => (0usize..16).prop_map(Event::RemovePod),
        8 => (0usize..16, 0..APPS.len()).prop_map(|(pod, app)| Event::Relabel { pod, app }),
        4 => (0usize..16, 1u8..60).prop_map(|(pod, last_octet)| Event::Readdress { pod, last_octet }),
        1 => event_strategy(),
    ]
}

/// Mostly Kubernetes NetworkPolicies added, edited and deleted, with pods and every other
/// kind mixed in.
pub fn policy_heavy_event_strategy() -> impl Strategy<Value = Event> {
    prop_oneof![
        6 => random_cluster::policy_strategy().prop_map(Event::AddPolicy),
        6 => (0usize..8, random_cluster::policy_strategy()).prop_map(|(i, p)| Event::EditPolicy(i, p)),
        3 => (0usize..8).prop_map(Event::DeletePolicy),
        3 => (0usize..8).prop_map(Event::TogglePolicyAudit),
        4 => pod_heavy_event_strategy(),
        1 => event_strategy(),
    ]
}

/// Packets between every pair of pods on the sampled ports, through the interpreter, each pod
/// on its own interface `v-NAME`.
pub fn verdicts(ruleset: &bulkhead_nft::Ruleset, cluster: &Cluster) -> Vec<bool> {
    let mut out = Vec::new();
    for a in &cluster.pods {
        for b in &cluster.pods {
            for port in crate::random_cluster::PORTS {
                out.push(ruleset.allows(&bulkhead_nft::interpret::Packet {
                    iif: Some(format!("v-{}", a.name)),
                    oif: Some(format!("v-{}", b.name)),
                    src: a.ips[0],
                    dst: b.ips[0],
                    protocol: bulkhead_model::Protocol::Tcp,
                    dport: Some(port),
                    icmp: None,
                    dst_local: false,
                }));
            }
        }
    }
    out
}
