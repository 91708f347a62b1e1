//! Blast radius: what a compromised pod of each workload reaches directly and within K hops
//! through allowed connections (a hop may use any port the policies allow), the shortest paths
//! to crown jewels, the cloud metadata service and the internet, and the cluster's score.
//!
//! Computed on identities (pods no policy can tell apart, [`CompiledConnectivity`]): a
//! breadth-first search over identity rows, so every workload's search costs the allowed
//! identity pairs it touches, not pods squared. Counts weigh a workload template by its
//! replicas; a template reaching "itself" reaches its other replicas.

use bulkhead_engine::{CompiledConnectivity, Endpoint, Engine, Flow};
use bulkhead_model::{LabelSelector, PortSet, Protocol};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// The cloud metadata service every public cloud serves on the link-local address.
pub const METADATA_SERVICE: &str = "169.254.169.254";
/// An address that stands for "the internet" (a public resolver's; never a pod's).
pub const INTERNET: &str = "8.8.8.8";

#[derive(Clone, Debug)]
pub struct Options {
    /// Hops of lateral movement to follow (1 = direct reach only).
    pub hops: usize,
    /// Only these workloads (`ns/kind/name`); all when `None`.
    pub only: Option<BTreeSet<String>>,
    /// Pods that are targets besides the crown jewels (`--target app=db`).
    pub target: Option<LabelSelector>,
    /// Also list every workload each one reaches (`reached_workloads`): for `diff` and for a
    /// single workload; for a whole large cluster it is the size of the reach relation.
    pub detail: bool,
}

/// Reach within a number of hops (cumulative).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reach {
    pub hops: usize,
    pub pods: usize,
    pub workloads: usize,
    pub namespaces: usize,
    /// Shares of the cluster's other pods, and of its workloads and namespaces.
    pub pods_share: f64,
    pub workloads_share: f64,
    pub namespaces_share: f64,
}

/// One hop of a path: the connection and the rules that allow it (egress, then ingress).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hop {
    pub from: String,
    pub to: String,
    pub protocol: String,
    pub ports: String,
    pub rules: Vec<String>,
}

impl std::fmt::Display for Hop {
    /// `ns/a -> ns/b TCP 8080`: the connection, without its rules.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} -> {} {} {}",
            self.from, self.to, self.protocol, self.ports
        )
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Path {
    /// A pod (`ns/pod`), `metadata-service` or `internet`.
    pub target: String,
    pub hops: Vec<Hop>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkloadRadius {
    /// `ns/kind/name`.
    pub workload: String,
    /// The pod standing for the workload (its first pod).
    pub pod: String,
    pub reach: Vec<Reach>,
    /// Workloads reached within the hops, with the hop count of the nearest (with
    /// [`Options::detail`]).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub reached_workloads: BTreeMap<String, usize>,
    pub paths: Vec<Path>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BlastRadius {
    pub hops: usize,
    /// Mean over the workloads of the pods reachable within the hops divided by (pods - 1):
    /// 0 is fully segmented, 1 is flat.
    pub score: f64,
    pub pods: usize,
    pub workloads: Vec<WorkloadRadius>,
}

/// Where the search stands for one source pod.
struct Search {
    /// The identity searched from.
    start: Option<usize>,
    /// Hops to each identity (the source's own identity: 0 for the source itself).
    /// In 32 bits, [`UNREACHED`] for none: the marks of 50,000 identities stay in cache.
    distance: Vec<u32>,
    parent: Vec<u32>,
    /// Hops to the other pods of the source's own identity, and from which identity.
    own_identity: Option<(usize, usize)>,
    /// Every identity reached (not the start), with its hops, in search order.
    reached: Vec<(usize, usize)>,
}

/// What an identity holds: its workloads and namespaces.
struct Holds {
    workloads: Vec<usize>,
    /// Those of `workloads` that another identity holds too, and may have counted already.
    shared_workloads: Vec<usize>,
    namespaces: Vec<usize>,
}

/// What every search reads of a reached identity, in 16 bytes: at 50,000 identities the
/// lists behind [`Holds`] were a cache miss each.
#[derive(Clone, Copy)]
struct Held {
    /// Pods, replica-weighted.
    pods: u32,
    /// How many of its workloads no other identity holds: reached with this identity only.
    workloads_alone: u32,
    /// Its one namespace, or [`SEVERAL`] (then see [`Holds::namespaces`]).
    namespace: u32,
    shares_workloads: bool,
}

const SEVERAL: u32 = u32::MAX;

/// What every workload's radius reads: the cluster's identities and what they hold, the
/// targets and the identities with egress to the special destinations.
struct Across<'a, 'c> {
    engine: &'a Engine<'c>,
    compiled: &'a CompiledConnectivity,
    options: &'a Options,
    total_pods: usize,
    targets: &'a [usize],
    /// The metadata service and the internet.
    specials: [Special<'a>; 2],
    holds: &'a [Holds],
    held: &'a [Held],
    pod_workload: &'a [usize],
    pod_namespace: &'a [usize],
    workload_names: &'a [String],
    namespaces: usize,
}

/// A destination outside the cluster that every workload's paths are searched to.
struct Special<'a> {
    /// `metadata-service`, `internet`.
    name: &'static str,
    /// The protocol and ports of each identity's egress to it.
    egress: &'a [Option<(Protocol, PortSet)>],
    address: &'static str,
}

/// One worker's memory for the workloads it takes: the search, and generation-stamped
/// "seen" marks for workloads and namespaces.
struct Scratch {
    search: Search,
    stamp: usize,
    workload_seen: Vec<usize>,
    namespace_seen: Vec<usize>,
}

impl Scratch {
    fn new(identities: usize, workloads: usize, namespaces: usize) -> Self {
        Self {
            search: Search::new(identities),
            stamp: 0,
            workload_seen: vec![usize::MAX; workloads],
            namespace_seen: vec![usize::MAX; namespaces],
        }
    }
}

impl Across<'_, '_> {
    /// The radius of `workload` from its pod `source`; `None` when the pod has no identity.
    fn workload(
        &self,
        scratch: &mut Scratch,
        workload: &str,
        source: usize,
    ) -> Option<WorkloadRadius> {
        let (engine, compiled, options) = (self.engine, self.compiled, self.options);
        let cluster = engine.cluster();
        let weight = |i: usize| cluster.pods[i].replicas;
        let start = compiled.identity_of[source]?;
        scratch.search.run(compiled, start, options.hops);
        scratch.stamp += 1;
        let Scratch {
            search,
            stamp,
            workload_seen,
            namespace_seen,
        } = scratch;
        let stamp = *stamp;
        // Of the source's own identity, its other pods and the source's other replicas.
        let own: Option<(usize, usize, Vec<usize>, Vec<usize>)> =
            search.own_identity.map(|(d, _)| {
                let others: Vec<usize> = compiled.identities[start]
                    .members
                    .iter()
                    .copied()
                    .filter(|&m| m != source || weight(m) > 1)
                    .collect();
                let pods = others
                    .iter()
                    .map(|&m| {
                        if m == source {
                            weight(m) - 1
                        } else {
                            weight(m)
                        }
                    })
                    .sum();
                (
                    d,
                    pods,
                    others.iter().map(|&m| self.pod_workload[m]).collect(),
                    others.iter().map(|&m| self.pod_namespace[m]).collect(),
                )
            });
        let mut reach = Vec::new();
        let mut reached_workloads: BTreeMap<String, usize> = BTreeMap::new();
        let (mut pods, mut wl, mut ns) = (0, 0, 0);
        // Workloads of reached identities that no other identity holds (without `detail`).
        let mut alone = 0;
        let mut next = 0;
        for h in 1..=options.hops {
            // The identities reached in this hop (the search lists them by hops), then the
            // source's own identity when it is reached in this hop.
            let mut count = |d: usize, p: usize, workloads: &[usize], namespaces: &[usize]| {
                pods += p;
                for &x in workloads {
                    if workload_seen[x] != stamp {
                        workload_seen[x] = stamp;
                        wl += 1;
                        if options.detail {
                            reached_workloads.insert(self.workload_names[x].clone(), d);
                        }
                    }
                }
                for &x in namespaces {
                    if namespace_seen[x] != stamp {
                        namespace_seen[x] = stamp;
                        ns += 1;
                    }
                }
            };
            while let Some(&(id, d)) = search.reached.get(next).filter(|(_, d)| *d <= h) {
                let held = self.held[id];
                let lists = &self.holds[id];
                let one_namespace = [held.namespace as usize];
                let namespaces: &[usize] = if held.namespace == SEVERAL {
                    &lists.namespaces
                } else {
                    &one_namespace
                };
                if options.detail {
                    count(d, held.pods as usize, &lists.workloads, namespaces);
                } else {
                    // Another identity's sole workloads cannot be the source identity's
                    // (counted below, with marks) nor any other reached identity's.
                    let shared: &[usize] = if held.shares_workloads {
                        &lists.shared_workloads
                    } else {
                        &[]
                    };
                    count(d, held.pods as usize, shared, namespaces);
                    alone += held.workloads_alone as usize;
                }
                next += 1;
            }
            if let Some((d, p, w, n)) = own.as_ref().filter(|o| o.0 == h) {
                count(*d, *p, w, n);
            }
            reach.push(Reach {
                hops: h,
                pods,
                workloads: wl + alone,
                namespaces: ns,
                pods_share: share(pods, self.total_pods.saturating_sub(1)),
                workloads_share: share(wl + alone, self.workload_names.len()),
                namespaces_share: share(ns, self.namespaces),
            });
        }
        let mut paths = Vec::new();
        // The nearest crown jewel or target pod.
        if let Some(t) = self
            .targets
            .iter()
            .filter(|&&t| t != source)
            .filter_map(|&t| search.hops_to_pod(compiled, t).map(|d| (d, t)))
            .min()
            .map(|(_, t)| t)
        {
            let chain = identity_chain(search, start, compiled.identity_of[t]);
            paths.push(Path {
                target: cluster.pods[t].key(),
                hops: pod_hops(engine, compiled, source, &chain, Some(t)),
            });
        }
        for Special {
            name,
            egress: special,
            address: ip,
        } in &self.specials
        {
            // The nearest identity with egress to it, the source's own identity at 0; only
            // identities the search reached can be nearer.
            let best = std::iter::once((start, 0))
                .chain(search.reached.iter().copied())
                // Hops first: most identities are reached in the last hop, and the table
                // of egress is a cache miss per identity.
                .filter(|&(id, d)| d < options.hops && special[id].is_some())
                .map(|(id, d)| (d, id))
                .min();
            if let Some((_, id)) = best {
                let chain = if id == start {
                    vec![start]
                } else {
                    identity_chain(search, start, Some(id))
                };
                let mut hops = pod_hops(engine, compiled, source, &chain, None);
                let last = hops
                    .last()
                    .map(|h| h.to.clone())
                    .unwrap_or_else(|| cluster.pods[source].key());
                let from = if id == start {
                    source
                } else {
                    compiled.identities[id].representative
                };
                if let (Some((protocol, ports)), Ok(addr)) = (&special[id], ip.parse::<IpAddr>()) {
                    hops.push(hop(
                        engine,
                        from,
                        last,
                        Endpoint::External(addr),
                        format!("ip:{ip}"),
                        *protocol,
                        ports,
                    ));
                }
                paths.push(Path {
                    target: name.to_string(),
                    hops,
                });
            }
        }
        Some(WorkloadRadius {
            workload: workload.to_string(),
            pod: cluster.pods[source].key(),
            reach,
            reached_workloads,
            paths,
        })
    }
}

pub fn blast_radius(engine: &Engine<'_>, options: &Options) -> BlastRadius {
    let compiled = engine.compile();
    let cluster = engine.cluster();
    let endpoints = engine.pod_endpoints();
    let weight = |i: usize| cluster.pods[i].replicas;
    let total_pods: usize = endpoints.iter().map(|&i| weight(i)).sum();
    let targets: Vec<usize> = endpoints
        .iter()
        .copied()
        .filter(|&i| {
            let pod = &cluster.pods[i];
            cluster.is_crown_jewel(pod)
                || options
                    .target
                    .as_ref()
                    .is_some_and(|s| s.matches(&pod.labels))
        })
        .collect();
    // Egress to the two special destinations, once per identity.
    let external = |ip: &str| -> Vec<Option<(Protocol, PortSet)>> {
        let Ok(ip) = ip.parse::<IpAddr>() else {
            return vec![None; compiled.identities.len()];
        };
        compiled
            .identities
            .iter()
            .map(|id| {
                [Protocol::Tcp, Protocol::Udp].into_iter().find_map(|p| {
                    let ports = engine.direction_ports(
                        bulkhead_model::Direction::Egress,
                        id.representative,
                        Endpoint::External(ip),
                        ip.is_ipv4(),
                        p,
                    );
                    (!ports.is_empty()).then_some((p, ports))
                })
            })
            .collect()
    };
    let metadata = external(METADATA_SERVICE);
    let internet = external(INTERNET);

    // Workloads and namespaces as small integers, and per identity what it holds, so each
    // workload's search costs the identities it reaches, not every pod.
    let mut workload_ids: BTreeMap<String, usize> = BTreeMap::new();
    let mut namespace_ids: BTreeMap<&str, usize> = BTreeMap::new();
    let mut pod_workload = vec![usize::MAX; cluster.pods.len()];
    let mut pod_namespace = vec![usize::MAX; cluster.pods.len()];
    for &i in &endpoints {
        let next = workload_ids.len();
        pod_workload[i] = *workload_ids.entry(workload_key(engine, i)).or_insert(next);
        let next = namespace_ids.len();
        pod_namespace[i] = *namespace_ids
            .entry(cluster.pods[i].namespace.as_str())
            .or_insert(next);
    }
    let mut workload_names = vec![String::new(); workload_ids.len()];
    for (name, &id) in &workload_ids {
        workload_names[id].clone_from(name);
    }
    let mut holds: Vec<Holds> = compiled
        .identities
        .iter()
        .map(|id| {
            let mut workloads: Vec<usize> = id.members.iter().map(|&m| pod_workload[m]).collect();
            let mut namespaces: Vec<usize> = id.members.iter().map(|&m| pod_namespace[m]).collect();
            workloads.sort_unstable();
            workloads.dedup();
            namespaces.sort_unstable();
            namespaces.dedup();
            Holds {
                workloads,
                shared_workloads: Vec::new(),
                namespaces,
            }
        })
        .collect();
    // Most workloads sit in one identity: those are counted by number, without a mark.
    let mut holders = vec![0usize; workload_ids.len()];
    for held in &holds {
        for &w in &held.workloads {
            holders[w] += 1;
        }
    }
    for lists in &mut holds {
        lists.shared_workloads = lists
            .workloads
            .iter()
            .copied()
            .filter(|&w| holders[w] > 1)
            .collect();
    }
    // In 32 bits: 4 billion pods or namespaces would not fit in memory before they overflowed.
    let held: Vec<Held> = compiled
        .identities
        .iter()
        .zip(&holds)
        .map(|(id, lists)| Held {
            pods: narrow(id.members.iter().map(|&m| weight(m)).sum()),
            workloads_alone: narrow(lists.workloads.len() - lists.shared_workloads.len()),
            namespace: match lists.namespaces.as_slice() {
                [one] => narrow(*one),
                _ => SEVERAL,
            },
            shares_workloads: !lists.shared_workloads.is_empty(),
        })
        .collect();
    // One source pod per workload: its first pod in name order.
    let mut sources: BTreeMap<String, usize> = BTreeMap::new();
    for &i in &endpoints {
        sources.entry(workload_key(engine, i)).or_insert(i);
    }
    let sources: Vec<(String, usize)> = sources
        .into_iter()
        .filter(|(workload, _)| options.only.as_ref().is_none_or(|o| o.contains(workload)))
        .collect();
    let across = Across {
        engine,
        compiled: &compiled,
        options,
        total_pods,
        targets: &targets,
        specials: [
            Special {
                name: "metadata-service",
                egress: &metadata,
                address: METADATA_SERVICE,
            },
            Special {
                name: "internet",
                egress: &internet,
                address: INTERNET,
            },
        ],
        holds: &holds,
        held: &held,
        pod_workload: &pod_workload,
        pod_namespace: &pod_namespace,
        workload_names: &workload_names,
        namespaces: namespace_ids.len(),
    };
    // Workloads in parallel, in order: at 50,000 workloads one core searched for 50 s. Each
    // worker keeps its search and "seen" marks, cleared where they were touched, so a
    // workload costs what it reaches, not the size of the cluster.
    let workloads: Vec<WorkloadRadius> = sources
        .par_iter()
        .map_init(
            || {
                Scratch::new(
                    compiled.identities.len(),
                    workload_names.len(),
                    namespace_ids.len(),
                )
            },
            |scratch, (workload, source)| across.workload(scratch, workload, *source),
        )
        .flatten()
        .collect();
    let score = if workloads.is_empty() || total_pods < 2 {
        0.0
    } else {
        workloads
            .iter()
            .map(|w| w.reach.last().map_or(0.0, |r| r.pods_share))
            .sum::<f64>()
            / workloads.len() as f64
    };
    BlastRadius {
        hops: options.hops,
        score,
        pods: total_pods,
        workloads,
    }
}

/// The shortest path within `hops` from pod `source` to any of `targets`, hop by hop with the
/// rules that allow it.
pub fn path_between(
    engine: &Engine<'_>,
    compiled: &CompiledConnectivity,
    source: usize,
    targets: &[usize],
    hops: usize,
) -> Option<Path> {
    let start = compiled.identity_of[source]?;
    let search = search(compiled, start, hops);
    let (_, t) = targets
        .iter()
        .filter(|&&t| t != source)
        .filter_map(|&t| search.hops_to_pod(compiled, t).map(|d| (d, t)))
        .min()?;
    let chain = identity_chain(&search, start, compiled.identity_of[t]);
    Some(Path {
        target: engine.cluster().pods[t].key(),
        hops: pod_hops(engine, compiled, source, &chain, Some(t)),
    })
}

/// How a change moves the blast radius: the score before and after, and the workloads whose
/// reach grew, with what they newly reach and how.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RadiusChange {
    pub hops: usize,
    pub score_before: f64,
    pub score_after: f64,
    pub grown: Vec<Grown>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Grown {
    pub workload: String,
    pub pods_before: usize,
    pub pods_after: usize,
    /// Workloads reached after the change that were not before (or only in more hops), with
    /// the hops they take now.
    pub newly_reached: BTreeMap<String, usize>,
    pub paths: Vec<Path>,
}

/// Compares the blast radius of two snapshots (`diff`); paths are found in `head`.
pub fn compare(base: &Engine<'_>, head: &Engine<'_>, hops: usize) -> RadiusChange {
    let options = Options {
        hops,
        only: None,
        target: None,
        detail: true,
    };
    let (before, after) = (blast_radius(base, &options), blast_radius(head, &options));
    let compiled = head.compile();
    let before_by: BTreeMap<&str, &WorkloadRadius> = before
        .workloads
        .iter()
        .map(|w| (w.workload.as_str(), w))
        .collect();
    let mut grown = Vec::new();
    for w in &after.workloads {
        let old = before_by.get(w.workload.as_str());
        let newly_reached: BTreeMap<String, usize> = w
            .reached_workloads
            .iter()
            .filter(|(target, hops)| {
                old.and_then(|o| o.reached_workloads.get(*target))
                    .is_none_or(|was| *was > **hops)
            })
            .map(|(t, h)| (t.clone(), *h))
            .collect();
        if newly_reached.is_empty() {
            continue;
        }
        let source = head
            .pod_endpoints()
            .into_iter()
            .find(|&i| head.cluster().pods[i].key() == w.pod);
        let paths = source
            .map(|source| {
                newly_reached
                    .keys()
                    .take(5)
                    .filter_map(|target| {
                        let pods = head.pods_for(target).ok()?;
                        path_between(head, &compiled, source, &pods, hops)
                    })
                    .collect()
            })
            .unwrap_or_default();
        grown.push(Grown {
            workload: w.workload.clone(),
            pods_before: old.and_then(|o| o.reach.last()).map_or(0, |r| r.pods),
            pods_after: w.reach.last().map_or(0, |r| r.pods),
            newly_reached,
            paths,
        });
    }
    RadiusChange {
        hops,
        score_before: before.score,
        score_after: after.score,
        grown,
    }
}

/// Markdown for a pull request: the score, and each workload whose reach grew with its paths.
pub fn markdown(change: &RadiusChange) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "\n**Blast radius** within {} hop(s): score {:.2} -> {:.2} (0 fully segmented, 1 flat)\n",
        change.hops, change.score_before, change.score_after
    );
    if change.grown.is_empty() {
        out.push_str("\nNo workload reaches more than before.\n");
        return out;
    }
    out.push_str("\n| workload | pods reachable before | after | newly reachable (hops) |\n|---|---|---|---|\n");
    for g in &change.grown {
        let new: Vec<String> = g
            .newly_reached
            .iter()
            .map(|(w, h)| format!("`{w}` ({h})"))
            .collect();
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            g.workload,
            g.pods_before,
            g.pods_after,
            new.join("<br>")
        );
    }
    for g in &change.grown {
        for p in &g.paths {
            let _ = writeln!(
                out,
                "\n`{}` now reaches `{}` in {} hop(s):",
                g.workload,
                p.target,
                p.hops.len()
            );
            for h in &p.hops {
                let _ = writeln!(
                    out,
                    "- `{}` -> `{}` {} {}: {}",
                    h.from,
                    h.to,
                    h.protocol,
                    h.ports,
                    h.rules.join("; ")
                );
            }
        }
    }
    out
}

fn share(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// `ns/kind/name` of the pod's workload, as `explain` accepts it.
pub fn workload_key(engine: &Engine<'_>, pod: usize) -> String {
    let p = &engine.cluster().pods[pod];
    p.workload_key()
}

impl Search {
    fn new(identities: usize) -> Self {
        Self {
            start: None,
            distance: vec![UNREACHED; identities],
            parent: vec![UNREACHED; identities],
            own_identity: None,
            reached: Vec::new(),
        }
    }

    /// Hops to identity `id`, if reached.
    fn distance(&self, id: usize) -> Option<usize> {
        let d = self.distance[id];
        (d != UNREACHED).then_some(d as usize)
    }

    /// Hops to pod `pod` (another than the source): to its identity, or for a pod of the
    /// source's own identity, back to that identity.
    fn hops_to_pod(&self, compiled: &CompiledConnectivity, pod: usize) -> Option<usize> {
        let id = compiled.identity_of[pod]?;
        if Some(id) == self.start {
            self.own_identity.map(|(d, _)| d)
        } else {
            self.distance(id)
        }
    }

    /// The identity `id` was first reached from.
    fn parent(&self, id: usize) -> Option<usize> {
        let p = self.parent[id];
        (p != UNREACHED).then_some(p as usize)
    }

    /// Searches from identity `start` within `hops`, after clearing what the previous search
    /// marked (its start and what it reached), so a search costs what it reaches.
    fn run(&mut self, compiled: &CompiledConnectivity, start: usize, hops: usize) {
        if let Some(previous) = self.start.take() {
            self.distance[previous] = UNREACHED;
        }
        for &(y, _) in &self.reached {
            self.distance[y] = UNREACHED;
            self.parent[y] = UNREACHED;
        }
        self.reached.clear();
        self.own_identity = None;
        self.start = Some(start);
        self.distance[start] = 0;
        let mut frontier = vec![start];
        for h in 1..=hops {
            let mut next = Vec::new();
            for &x in &frontier {
                for (y, _) in compiled.row(x) {
                    if *y == start {
                        if self.own_identity.is_none() {
                            self.own_identity = Some((h, x));
                        }
                        continue;
                    }
                    if self.distance[*y] == UNREACHED {
                        self.distance[*y] = narrow(h);
                        self.parent[*y] = narrow(x);
                        self.reached.push((*y, h));
                        next.push(*y);
                    }
                }
            }
            if next.is_empty() {
                break;
            }
            frontier = next;
        }
    }
}

/// A hop count or an identity as [`Search`] keeps it.
fn narrow(n: usize) -> u32 {
    u32::try_from(n)
        .ok()
        .filter(|&n| n != UNREACHED)
        .expect("fewer than 2^32 - 1 identities and hops")
}

const UNREACHED: u32 = u32::MAX;

fn search(compiled: &CompiledConnectivity, start: usize, hops: usize) -> Search {
    let mut search = Search::new(compiled.identities.len());
    search.run(compiled, start, hops);
    search
}

/// Identities from the start to `goal`, both included.
fn identity_chain(search: &Search, start: usize, goal: Option<usize>) -> Vec<usize> {
    let Some(goal) = goal else {
        return vec![start];
    };
    let mut chain = vec![goal];
    let mut at = if goal == start {
        search.own_identity.map(|(_, from)| from)
    } else {
        search.parent(goal)
    };
    while let Some(x) = at {
        chain.push(x);
        if x == start {
            break;
        }
        at = search.parent(x);
    }
    chain.reverse();
    chain
}

/// The hops along an identity chain, pod by pod: the source first, each intermediate
/// identity's representative (never the source again), the target pod last.
fn pod_hops(
    engine: &Engine<'_>,
    compiled: &CompiledConnectivity,
    source: usize,
    chain: &[usize],
    target: Option<usize>,
) -> Vec<Hop> {
    let cluster = engine.cluster();
    let mut pods = vec![source];
    for (k, &id) in chain.iter().enumerate().skip(1) {
        let last = k == chain.len() - 1;
        let pod = match (last, target) {
            (true, Some(t)) => t,
            _ => {
                let identity = &compiled.identities[id];
                identity
                    .members
                    .iter()
                    .copied()
                    .find(|&m| m != source)
                    .unwrap_or(identity.representative)
            }
        };
        pods.push(pod);
    }
    pods.windows(2)
        .filter_map(|w| {
            let (a, b) = (w[0], w[1]);
            let (ida, idb) = (compiled.identity_of[a]?, compiled.identity_of[b]?);
            let ports = compiled.identity_ports(ida, idb)?;
            let k = ports.iter().position(|p| !p.is_empty())?;
            let protocol = Protocol::L4[k];
            Some(hop(
                engine,
                a,
                cluster.pods[a].key(),
                Endpoint::Pod(b),
                cluster.pods[b].key(),
                protocol,
                &ports[k],
            ))
        })
        .collect()
}

fn hop(
    engine: &Engine<'_>,
    from_pod: usize,
    from: String,
    to: Endpoint,
    to_name: String,
    protocol: Protocol,
    ports: &PortSet,
) -> Hop {
    let port = ports.ranges().first().map(|r| r.start());
    let verdict = engine.evaluate(&Flow {
        src: Endpoint::Pod(from_pod),
        dst: to,
        protocol,
        port,
        icmp: None,
    });
    let mut rules = Vec::new();
    for (side, half) in [("egress", &verdict.egress), ("ingress", &verdict.ingress)] {
        if half.decided_by.is_empty() {
            // No rule to name: say why the side lets it through (not isolated, own node...).
            rules.push(format!(
                "{side}: {} [{}]",
                half.reason.describe(),
                half.reason.code()
            ));
        }
        for r in &half.decided_by {
            let name = match &r.namespace {
                Some(ns) => format!("{ns}/{}", r.name),
                None => r.name.clone(),
            };
            rules.push(match &r.rule {
                Some(rule) => format!("{side}: {} {name} {rule} ({})", r.kind, r.action),
                None => format!("{side}: {} {name} ({})", r.kind, r.action),
            });
        }
    }
    Hop {
        from,
        to: to_name,
        protocol: protocol.to_string(),
        ports: ports.to_string(),
        rules,
    }
}
