//! Blast radius against a brute-force breadth-first search over per-flow verdicts (`explain`),
//! on random clusters of every policy API: the identity-level search must count the same pods,
//! workloads and namespaces at every hop, and every path it prints must be allowed hop by hop.

#[path = "../../engine/tests/support/random_cluster.rs"]
mod random_cluster;

use bulkhead_analysis::blast_radius::{Options, blast_radius, workload_key};
use bulkhead_engine::{Endpoint, Engine, EngineOptions, Flow, Semantics};
use bulkhead_model::{Cluster, Protocol};
use proptest::prelude::*;
use random_cluster::{PORTS, cluster_strategy};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Whether any sampled port of any protocol is allowed from pod `s` to pod `d` (every port a
/// random cluster's rules can name is among the samples).
fn edge(engine: &Engine<'_>, s: usize, d: usize) -> bool {
    [Protocol::Tcp, Protocol::Udp, Protocol::Sctp]
        .into_iter()
        .any(|protocol| {
            PORTS.iter().chain(&[1u16, 65535]).any(|&port| {
                engine
                    .evaluate(&Flow {
                        src: Endpoint::Pod(s),
                        dst: Endpoint::Pod(d),
                        protocol,
                        port: Some(port),
                        icmp: None,
                    })
                    .allowed
            })
        })
}

/// Checks `cluster` as generated (a workload per pod), and with its pods grouped into three
/// deployments per namespace, so a workload spans pods of different labels and identities.
fn check(cluster: &Cluster, semantics: Semantics) -> Result<(), TestCaseError> {
    check_workloads(cluster, semantics)?;
    let mut grouped = cluster.clone();
    for (i, pod) in grouped.pods.iter_mut().enumerate() {
        pod.workload = bulkhead_model::WorkloadRef {
            kind: "deployment".into(),
            name: format!("d{}", i % 3),
        };
    }
    check_workloads(&grouped, semantics)
}

fn check_workloads(cluster: &Cluster, semantics: Semantics) -> Result<(), TestCaseError> {
    let engine = Engine::new(
        cluster,
        EngineOptions {
            semantics,
            self_traffic_allowed: true,
        },
    );
    let hops = 3;
    let options = |detail| Options {
        hops,
        only: None,
        target: None,
        detail,
    };
    let report = blast_radius(&engine, &options(true));
    // Without the list of reached workloads the counts are taken another way (a workload
    // held by one identity is counted without a mark): they must be the same.
    let counted = blast_radius(&engine, &options(false));
    prop_assert_eq!(report.workloads.len(), counted.workloads.len());
    for (w, c) in report.workloads.iter().zip(&counted.workloads) {
        prop_assert_eq!(&w.reach, &c.reach, "{}", w.workload);
        prop_assert_eq!(&w.paths, &c.paths, "{}", w.workload);
        prop_assert!(c.reached_workloads.is_empty());
    }
    let pods = engine.pod_endpoints();
    for w in &report.workloads {
        let source = pods
            .iter()
            .copied()
            .find(|&i| cluster.pods[i].key() == w.pod)
            .expect("the source pod exists");
        // Brute force: BFS over pods with an edge wherever explain allows some port.
        let mut distance: BTreeMap<usize, usize> = BTreeMap::from([(source, 0)]);
        let mut queue = VecDeque::from([source]);
        while let Some(p) = queue.pop_front() {
            let d = distance[&p];
            if d == hops {
                continue;
            }
            for &q in &pods {
                if q != p && !distance.contains_key(&q) && edge(&engine, p, q) {
                    distance.insert(q, d + 1);
                    queue.push_back(q);
                }
            }
        }
        for reach in &w.reach {
            let within: Vec<usize> = distance
                .iter()
                .filter(|(q, d)| **q != source && **d <= reach.hops)
                .map(|(q, _)| *q)
                .collect();
            let workloads: BTreeSet<String> =
                within.iter().map(|&q| workload_key(&engine, q)).collect();
            let namespaces: BTreeSet<&str> = within
                .iter()
                .map(|&q| cluster.pods[q].namespace.as_str())
                .collect();
            prop_assert_eq!(
                reach.pods,
                within.len(),
                "{} within {} hops",
                w.workload,
                reach.hops
            );
            prop_assert_eq!(reach.workloads, workloads.len());
            prop_assert_eq!(reach.namespaces, namespaces.len());
        }
        let mut nearest: BTreeMap<String, usize> = BTreeMap::new();
        for (&q, &d) in &distance {
            if q != source {
                let e = nearest.entry(workload_key(&engine, q)).or_insert(d);
                *e = (*e).min(d);
            }
        }
        prop_assert_eq!(&w.reached_workloads, &nearest, "{}", w.workload);
        for path in &w.paths {
            for hop in &path.hops {
                let from = pods
                    .iter()
                    .copied()
                    .find(|&i| cluster.pods[i].key() == hop.from);
                let to = pods
                    .iter()
                    .copied()
                    .find(|&i| cluster.pods[i].key() == hop.to);
                if let (Some(a), Some(b)) = (from, to) {
                    prop_assert!(
                        edge(&engine, a, b),
                        "{} -> {} is not allowed",
                        hop.from,
                        hop.to
                    );
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    #[test]
    fn network_policies_match_a_brute_force_search(cluster in cluster_strategy(false, false)) {
        check(&cluster, Semantics::Kubernetes)?;
    }

    #[test]
    fn admin_policies_match_a_brute_force_search(cluster in cluster_strategy(true, false)) {
        check(&cluster, Semantics::Kubernetes)?;
    }

    #[test]
    fn calico_tiers_match_a_brute_force_search(cluster in cluster_strategy(true, true)) {
        check(&cluster, Semantics::Calico)?;
    }
}
