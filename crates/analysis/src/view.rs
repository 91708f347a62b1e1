//! What `bulkhead serve` draws: the connectivity of a snapshot as a drill-down graph
//! (namespaces, then one namespace's workloads, then one workload's pods) and as a matrix,
//! never more than [`MAX_NODES`] nodes at a level, and the "what if" of a policy change.
//!
//! Everything here is computed from the engine's identity map
//! ([`bulkhead_engine::CompiledConnectivity`]), which the server builds once: a drill-down
//! only filters and groups rows, so it answers in milliseconds on large clusters.

use bulkhead_engine::{Aggregation, CompiledConnectivity, Connection, ConnectivityOptions, Engine};
use bulkhead_model::{Cluster, Diagnostic, Policy, PortSet};
use serde::Serialize;
use std::collections::BTreeMap;

/// The most nodes one view shows; the smallest ones beyond it are folded into one node.
pub const MAX_NODES: usize = 250;

/// Which part of the cluster a graph shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Level {
    /// Every namespace with pods.
    Namespaces,
    /// The workloads of one namespace, and the namespaces they talk to.
    Workloads { namespace: String },
    /// The pods of one workload (`ns/kind/name`), and the workloads they talk to.
    Pods { workload: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    Namespace,
    Workload,
    Pod,
    /// Nodes folded together to stay under [`MAX_NODES`].
    Folded,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Node {
    /// The reference `explain` and `map --from` accept: `ns`, `ns/kind/name`, `ns/pod`.
    pub id: String,
    pub label: String,
    pub kind: NodeKind,
    /// Pods it stands for (replicas counted).
    pub pods: usize,
    /// True for the nodes of the level itself; false for the neighbours outside it.
    pub inside: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Edge {
    pub from: String,
    pub to: String,
    /// Allowed member pairs (the largest count over the protocols).
    pub pairs_allowed: usize,
    pub pairs_total: usize,
    /// `TCP/80,443`, one entry per protocol.
    pub ports: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Graph {
    pub level: String,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    /// How many nodes were folded into the `Folded` node (0: none).
    pub folded: usize,
}

/// Rows in both directions between the pods of `inside` and everything else, at `aggregation`
/// for `inside`'s own pods and at `outer` for the pods around them.
fn rows(
    engine: &Engine<'_>,
    compiled: &CompiledConnectivity,
    inside: &[usize],
    aggregation: Aggregation,
    outer: Aggregation,
) -> Vec<Connection> {
    let cluster = engine.cluster();
    let all = engine.pod_endpoints();
    let mask: Vec<bool> = {
        let mut m = vec![false; cluster.pods.len()];
        inside.iter().for_each(|&i| m[i] = true);
        m
    };
    let outside: Vec<usize> = all.iter().copied().filter(|&i| !mask[i]).collect();
    let run = |from: &[usize], to: &[usize], aggregation: Aggregation| {
        engine.connectivity_from(
            compiled,
            &ConnectivityOptions {
                aggregation,
                from: Some(from.to_vec()),
                to: Some(to.to_vec()),
                ..ConnectivityOptions::default()
            },
        )
    };
    let mut out = run(inside, inside, aggregation);
    if outer == aggregation {
        out.extend(run(inside, &outside, aggregation));
        out.extend(run(&outside, inside, aggregation));
        return out;
    }
    // Rows crossing the boundary: each side named at its own level.
    let outer_name = |i: usize| outer.group_of(&cluster.pods[i]);
    let mut crossing: BTreeMap<(String, String, bulkhead_model::Protocol), Connection> =
        BTreeMap::new();
    let mut fold = |c: Connection, from: String, to: String| {
        let key = (from.clone(), to.clone(), c.protocol);
        let entry = crossing.entry(key).or_insert_with(|| Connection {
            from,
            to,
            protocol: c.protocol,
            ports: PortSet::empty(),
            ports_all_pairs: PortSet::all(),
            pairs_allowed: 0,
            pairs_total: 0,
        });
        entry.ports = entry.ports.union(&c.ports);
        entry.ports_all_pairs = entry.ports_all_pairs.intersection(&c.ports_all_pairs);
        entry.pairs_allowed += c.pairs_allowed;
        entry.pairs_total += c.pairs_total;
    };
    // Outgoing rows at the inner level, with the destination renamed to its outer group.
    let outer_of: BTreeMap<String, String> = outside
        .iter()
        .map(|&i| (aggregation.group_of(&cluster.pods[i]), outer_name(i)))
        .collect();
    for c in run(inside, &outside, aggregation) {
        let to = outer_of.get(&c.to).cloned().unwrap_or_else(|| c.to.clone());
        let from = c.from.clone();
        fold(c, from, to);
    }
    for c in run(&outside, inside, aggregation) {
        let from = outer_of
            .get(&c.from)
            .cloned()
            .unwrap_or_else(|| c.from.clone());
        let to = c.to.clone();
        fold(c, from, to);
    }
    out.extend(crossing.into_values());
    out
}

fn ports_text(rows: &[&Connection]) -> Vec<String> {
    rows.iter()
        .map(|c| format!("{}/{}", c.protocol, c.ports))
        .collect()
}

/// The graph of one level.
pub fn graph(engine: &Engine<'_>, compiled: &CompiledConnectivity, level: &Level) -> Graph {
    let cluster = engine.cluster();
    let endpoints = engine.pod_endpoints();
    let (inside, aggregation, outer, name): (Vec<usize>, Aggregation, Aggregation, String) =
        match level {
            Level::Namespaces => (
                endpoints.clone(),
                Aggregation::Namespace,
                Aggregation::Namespace,
                "namespaces".into(),
            ),
            Level::Workloads { namespace } => (
                endpoints
                    .iter()
                    .copied()
                    .filter(|&i| cluster.pods[i].namespace == *namespace)
                    .collect(),
                Aggregation::Workload,
                Aggregation::Namespace,
                format!("workloads of {namespace}"),
            ),
            Level::Pods { workload } => (
                endpoints
                    .iter()
                    .copied()
                    .filter(|&i| cluster.pods[i].workload_key() == *workload)
                    .collect(),
                Aggregation::Pod,
                Aggregation::Workload,
                format!("pods of {workload}"),
            ),
        };
    let mut sizes: BTreeMap<String, (usize, bool, NodeKind)> = BTreeMap::new();

    let kind_of = |a: Aggregation| match a {
        Aggregation::Namespace => NodeKind::Namespace,
        Aggregation::Workload => NodeKind::Workload,
        Aggregation::Pod => NodeKind::Pod,
    };
    for &i in &endpoints {
        let pod = &cluster.pods[i];
        let is_inside = inside.contains(&i);
        let (key, kind) = if is_inside {
            (aggregation.group_of(pod), kind_of(aggregation))
        } else {
            (outer.group_of(pod), kind_of(outer))
        };
        let entry = sizes.entry(key).or_insert((0, is_inside, kind));
        entry.0 += pod.replicas.max(1);
    }
    let connections = rows(engine, compiled, &inside, aggregation, outer);
    // Only neighbours that are connected are worth a node; every inside node is shown.
    let mut connected: std::collections::BTreeSet<&str> = Default::default();
    for c in &connections {
        connected.insert(&c.from);
        connected.insert(&c.to);
    }
    let mut nodes: Vec<Node> = sizes
        .iter()
        .filter(|(id, (_, inside, _))| *inside || connected.contains(id.as_str()))
        .map(|(id, (pods, inside, kind))| Node {
            id: id.clone(),
            label: label(id, kind),
            kind: kind.clone(),
            pods: *pods,
            inside: *inside,
        })
        .collect();
    let mut folded = 0;
    if nodes.len() > MAX_NODES {
        // Keep the largest; fold the rest, so the view stays readable.
        nodes.sort_by(|a, b| b.pods.cmp(&a.pods).then_with(|| a.id.cmp(&b.id)));
        let rest = nodes.split_off(MAX_NODES - 1);
        folded = rest.len();
        nodes.push(Node {
            id: FOLDED.into(),
            label: format!("{folded} more"),
            kind: NodeKind::Folded,
            pods: rest.iter().map(|n| n.pods).sum(),
            inside: true,
        });
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
    }
    let shown: std::collections::BTreeSet<String> = nodes.iter().map(|n| n.id.clone()).collect();
    let rename = |id: &str| {
        if shown.contains(id) {
            id.to_string()
        } else {
            FOLDED.to_string()
        }
    };
    let mut grouped: BTreeMap<(String, String), Vec<&Connection>> = BTreeMap::new();
    for c in &connections {
        grouped
            .entry((rename(&c.from), rename(&c.to)))
            .or_default()
            .push(c);
    }
    let edges = grouped
        .into_iter()
        .map(|((from, to), rows)| Edge {
            pairs_allowed: rows.iter().map(|c| c.pairs_allowed).max().unwrap_or(0),
            pairs_total: rows.iter().map(|c| c.pairs_total).max().unwrap_or(0),
            ports: ports_text(&rows),
            from,
            to,
        })
        .collect();
    Graph {
        level: name,
        nodes,
        edges,
        folded,
    }
}

/// The id of the node that holds what did not fit.
pub const FOLDED: &str = "(more)";

fn label(id: &str, kind: &NodeKind) -> String {
    match kind {
        // `ns/kind/name` -> `kind/name`; `ns/pod` -> `pod`.
        NodeKind::Workload => id.split_once('/').map_or(id, |(_, rest)| rest).to_string(),
        NodeKind::Pod => id.rsplit('/').next().unwrap_or(id).to_string(),
        _ => id.to_string(),
    }
}

/// Namespace x namespace (or workload x workload) allowed pairs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Matrix {
    pub names: Vec<String>,
    /// `cells[i][j]`: allowed pairs from `names[i]` to `names[j]` (largest over protocols).
    pub cells: Vec<Vec<usize>>,
    /// `totals[i][j]`: all pairs between the two.
    pub totals: Vec<Vec<usize>>,
}

pub fn matrix(
    engine: &Engine<'_>,
    compiled: &CompiledConnectivity,
    aggregation: Aggregation,
) -> Matrix {
    let cluster = engine.cluster();
    let mut names: Vec<String> = engine
        .pod_endpoints()
        .into_iter()
        .map(|i| aggregation.group_of(&cluster.pods[i]))
        .collect();
    names.sort();
    names.dedup();
    names.truncate(MAX_NODES);
    let index: BTreeMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let mut cells = vec![vec![0; names.len()]; names.len()];
    let mut totals = vec![vec![0; names.len()]; names.len()];
    let rows = engine.connectivity_from(
        compiled,
        &ConnectivityOptions {
            aggregation,
            ..ConnectivityOptions::default()
        },
    );
    for c in rows {
        if let (Some(&i), Some(&j)) = (index.get(c.from.as_str()), index.get(c.to.as_str())) {
            cells[i][j] = cells[i][j].max(c.pairs_allowed);
            totals[i][j] = totals[i][j].max(c.pairs_total);
        }
    }
    Matrix {
        names,
        cells,
        totals,
    }
}

/// A policy change to try on a copy of the snapshot.
#[derive(Debug, Default)]
pub struct Change<'a> {
    /// Policies (and other objects) added, or replacing the object of the same kind,
    /// namespace and name.
    pub patch: Option<&'a Cluster>,
    /// Policies to take out, as `Kind ns/name` or `Kind name` (the resource form of findings).
    pub delete: &'a [String],
}

/// The snapshot with `change` applied.
pub fn apply(base: &Cluster, change: &Change<'_>) -> Cluster {
    let mut head = base.clone();
    let key = |p: &Policy| crate::lint::resource(p.kind.as_str(), p.namespace.as_deref(), &p.name);
    head.policies.retain(|p| !change.delete.contains(&key(p)));
    if let Some(patch) = change.patch {
        let replaced: Vec<String> = patch.policies.iter().map(key).collect();
        head.policies.retain(|p| !replaced.contains(&key(p)));
        head.policies.extend(patch.policies.iter().cloned());
        for ns in patch.namespaces.iter().filter(|n| n.defined) {
            head.namespaces.retain(|n| n.name != ns.name);
            head.namespaces.push(ns.clone());
        }
        for pod in &patch.pods {
            head.pods
                .retain(|p| !(p.namespace == pod.namespace && p.name == pod.name));
            head.pods.push(pod.clone());
        }
        head.network_sets.extend(patch.network_sets.iter().cloned());
        head.tiers.extend(patch.tiers.iter().cloned());
    }
    head.finish();
    head
}

/// What a change does: connectivity added and removed (with the responsible policies) and the
/// findings of the changed snapshot.
#[derive(Debug)]
pub struct WhatIf {
    pub diff: crate::diff::DiffReport,
    pub findings: Vec<Diagnostic>,
}

pub fn what_if(
    base: &Engine<'_>,
    head: &Cluster,
    config: &crate::Config,
    options: bulkhead_engine::EngineOptions,
) -> WhatIf {
    let head_engine = Engine::new(head, options);
    let mut config = config.clone();
    config.engine = Some(options);
    WhatIf {
        diff: crate::diff::diff(base, &head_engine),
        findings: crate::lint(head, &config),
    }
}
