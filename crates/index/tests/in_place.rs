//! The live index without root: random sequences of cluster events fed to the index one
//! object at a time must leave the node's ruleset, after every step, exactly as a fresh full
//! compile of the same state gives it (same canonical text, same verdicts through the
//! interpreter), whether the step was made in place (pods of the other node) or compiled.

#[path = "../../engine/tests/support/cluster_events.rs"]
mod cluster_events;
#[path = "../../engine/tests/support/random_cluster.rs"]
mod random_cluster;

use bulkhead_engine::{Engine, EngineOptions};
use bulkhead_index::{Commit, Event as IndexEvent, Index, NodeView, objects_of};
use bulkhead_model::{Cluster, Protocol};
use bulkhead_nft::interpret::Packet;
use bulkhead_nft::render::render;
use bulkhead_nft::{CompileOptions, Enforcement, Ruleset, compile};
use cluster_events::{Event, NODES, State, apply_event};
use proptest::prelude::*;
use random_cluster::PORTS;
use std::collections::{BTreeMap, BTreeSet};

const NODE: &str = NODES[0];

fn options(cluster: &Cluster, audit: &BTreeSet<String>) -> CompileOptions {
    CompileOptions {
        node: NODE.into(),
        interfaces: cluster
            .pods
            .iter()
            .filter(|p| p.node.as_deref() == Some(NODE))
            .map(|p| (p.key(), format!("v-{}", p.name)))
            .collect(),
        audit_namespaces: audit.clone(),
        pod_interface_prefixes: vec!["v-".into()],
        pod_cidrs: Vec::new(),
    }
}

fn fresh(cluster: &Cluster, audit: &BTreeSet<String>) -> Ruleset {
    let engine = Engine::new(cluster, EngineOptions::for_cluster(cluster));
    compile(&engine, &options(cluster, audit)).0
}

/// Packets between every pair of pods on the sampled ports.
fn verdicts(ruleset: &Ruleset, cluster: &Cluster) -> Vec<bool> {
    let mut out = Vec::new();
    for a in &cluster.pods {
        for b in &cluster.pods {
            for port in PORTS {
                out.push(ruleset.allows(&Packet {
                    iif: Some(format!("v-{}", a.name)),
                    oif: Some(format!("v-{}", b.name)),
                    src: a.ips[0],
                    dst: b.ips[0],
                    protocol: Protocol::Tcp,
                    dport: Some(port),
                    icmp: None,
                    dst_local: false,
                }));
            }
        }
    }
    out
}

/// Follows `events` through the index and the node view; returns how many steps were made in
/// place. Fails (naming the step) where the view differs from a fresh compile.
fn follow(mut state: State, events: &[Event]) -> Result<usize, TestCaseError> {
    for (i, pod) in state.cluster.pods.iter_mut().enumerate() {
        pod.node = Some(NODES[i % 2].into());
    }
    state.cluster.finish();
    let mut index = Index::new();
    index.handle(IndexEvent::Resync(objects_of(&state.cluster)));
    let mut view = NodeView::default();
    let enforcement = Enforcement::default();
    let cluster = index.cluster();
    let (first, _, _) = view.next(&cluster, &options(&cluster, &state.audit), enforcement);
    view.committed(first);
    index.clear_changes();
    let mut in_place = 0;
    for (step, event) in events.iter().enumerate() {
        apply_event(&mut state, event);
        for e in index.events_towards(objects_of(&state.cluster)) {
            index.handle(e);
        }
        let cluster = index.cluster();
        let static_options = CompileOptions {
            interfaces: BTreeMap::new(),
            ..options(&cluster, &state.audit)
        };
        let (next, commit) =
            match view.next_in_place(&index, index.changes(), &static_options, enforcement) {
                Some((ruleset, commit, _)) => {
                    in_place += 1;
                    (ruleset, commit)
                }
                None => {
                    let (ruleset, commit, _) =
                        view.next(&cluster, &options(&cluster, &state.audit), enforcement);
                    (ruleset, commit)
                }
            };
        let wanted = fresh(&cluster, &state.audit);
        prop_assert_eq!(
            render(&next),
            render(&wanted),
            "step {} {:?}: the view differs from a fresh compile",
            step,
            event
        );
        let held = view.last().expect("committed").clone();
        match commit {
            Commit::Delta(t) => prop_assert_eq!(
                render(&t.apply(&held)),
                render(&wanted),
                "step {} {:?}: old + delta differs from a fresh compile",
                step,
                event
            ),
            Commit::Nothing => prop_assert_eq!(render(&held), render(&wanted)),
            Commit::Full => {}
        }
        prop_assert_eq!(verdicts(&next, &cluster), verdicts(&wanted, &cluster));
        view.committed(next);
        index.clear_changes();
    }
    Ok(in_place)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn the_view_after_every_event_equals_a_fresh_compile(
        initial in random_cluster::cluster_strategy(true, true),
        events in proptest::collection::vec(cluster_events::pod_heavy_event_strategy(), 40..60),
    ) {
        let state = State { cluster: initial, audit: BTreeSet::new(), next_pod: 0, next_policy: 0 };
        follow(state, &events)?;
    }
}

/// One long sequence (1,200 events) from a fixed seed: many steps are made in place.
#[test]
fn a_thousand_events_in_place_or_compiled_equal_a_fresh_compile() {
    use proptest::strategy::ValueTree as _;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let initial = random_cluster::cluster_strategy(true, true)
        .new_tree(&mut runner)
        .expect("cluster")
        .current();
    let events = proptest::collection::vec(cluster_events::pod_heavy_event_strategy(), 1200)
        .new_tree(&mut runner)
        .expect("events")
        .current();
    let state = State {
        cluster: initial,
        audit: BTreeSet::new(),
        next_pod: 0,
        next_policy: 0,
    };
    let in_place = follow(state, &events).unwrap_or_else(|e| panic!("{e}"));
    println!("{} events, {in_place} made in place", events.len());
    assert!(
        in_place >= events.len() / 4,
        "pods of the other node are most events; only {in_place} of {} were made in place",
        events.len()
    );
}
