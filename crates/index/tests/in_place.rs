//! The live index without root: random sequences of cluster events fed to the index one
//! object at a time must leave the node's ruleset, after every step, exactly as a fresh full
//! compile of the same state gives it (same canonical text, same verdicts through the
//! interpreter), whether the step was made in place (pods of the other node) or compiled.

#[path = "../../engine/tests/support/cluster_events.rs"]
mod cluster_events;
#[path = "../../nft/tests/support/own_netns.rs"]
mod own_netns;
#[path = "../../engine/tests/support/random_cluster.rs"]
mod random_cluster;

use bulkhead_engine::{Engine, EngineOptions};
use bulkhead_index::{Commit, Event as IndexEvent, Index, NodeView, objects_of};
use bulkhead_model::Cluster;
use bulkhead_nft::render::render;
use bulkhead_nft::{CompileOptions, Enforcement, Ruleset, compile};
use cluster_events::{Event, NODES, State, apply_event, verdicts};
use own_netns::inside_own_netns;
use proptest::prelude::*;
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

/// The index and node view of `state`'s cluster (half the pods on each node) after the first
/// full compile, which is returned.
fn start(state: &mut State) -> (Index, NodeView, Ruleset) {
    for (i, pod) in state.cluster.pods.iter_mut().enumerate() {
        pod.node = Some(NODES[i % 2].into());
    }
    state.cluster.finish();
    let mut index = Index::new();
    index.handle(IndexEvent::Resync(objects_of(&state.cluster)));
    let mut view = NodeView::default();
    let cluster = index.cluster();
    let (first, _, _) = view.next(
        &cluster,
        &options(&cluster, &state.audit),
        Enforcement::default(),
    );
    view.committed(first.clone());
    index.clear_changes();
    (index, view, first)
}

/// Brings the index to `state`'s cluster, object by object, and asks the view for the next
/// ruleset as the agent does: in place when it can (the flag), else compiled.
fn advance(state: &State, index: &mut Index, view: &mut NodeView) -> (Ruleset, Commit, bool) {
    for e in index.events_towards(objects_of(&state.cluster)) {
        index.handle(e);
    }
    let cluster = index.cluster();
    let static_options = CompileOptions {
        interfaces: BTreeMap::new(),
        ..options(&cluster, &state.audit)
    };
    let enforcement = Enforcement::default();
    match view.next_in_place(index, index.changes(), &static_options, enforcement) {
        Some((ruleset, commit, _)) => (ruleset, commit, true),
        None => {
            let (ruleset, commit, _) =
                view.next(&cluster, &options(&cluster, &state.audit), enforcement);
            (ruleset, commit, false)
        }
    }
}

/// Follows `events` through the index and the node view; returns how many steps were made in
/// place. Fails (naming the step) where the view differs from a fresh compile.
fn follow(mut state: State, events: &[Event]) -> Result<usize, TestCaseError> {
    let (mut index, mut view, _) = start(&mut state);
    let mut in_place = 0;
    for (step, event) in events.iter().enumerate() {
        apply_event(&mut state, event);
        let (next, commit, made_in_place) = advance(&state, &mut index, &mut view);
        in_place += usize::from(made_in_place);
        let cluster = index.cluster();
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
        // The same text is the same ruleset; the interpreter's verdicts every tenth step
        // (and the last) check what that text does, at a tenth of the cost.
        if step % 10 == 9 || step + 1 == events.len() {
            prop_assert_eq!(verdicts(&next, &cluster), verdicts(&wanted, &cluster));
        }
        view.committed(next);
        index.clear_changes();
    }
    Ok(in_place)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn the_view_after_every_event_equals_a_fresh_compile(
        initial in random_cluster::cluster_strategy(true, true),
        events in proptest::collection::vec(cluster_events::pod_heavy_event_strategy(), 40..60),
    ) {
        let state = State { cluster: initial, audit: BTreeSet::new(), next_pod: 0, next_policy: 0 };
        follow(state, &events)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn policy_edits_in_place_or_compiled_equal_a_fresh_compile(
        initial in random_cluster::cluster_strategy(true, true),
        events in proptest::collection::vec(cluster_events::policy_heavy_event_strategy(), 40..60),
    ) {
        let state = State { cluster: initial, audit: BTreeSet::new(), next_pod: 0, next_policy: 0 };
        follow(state, &events)?;
    }
}

/// `count` events of `events` from a fixed seed on a cluster with (or without) ANP and Calico
/// objects; returns how many were made in place.
fn long_sequence(
    events: impl Strategy<Value = Event>,
    count: usize,
    other_apis: bool,
) -> (usize, usize) {
    use proptest::strategy::ValueTree as _;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let initial = random_cluster::cluster_strategy(other_apis, other_apis)
        .new_tree(&mut runner)
        .expect("cluster")
        .current();
    let events = proptest::collection::vec(events, count)
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
    (in_place, events.len())
}

/// 600 policy-heavy events: policy edits are made in place too.
#[test]
fn policy_heavy_events_in_place_or_compiled_equal_a_fresh_compile() {
    let (in_place, total) =
        long_sequence(cluster_events::policy_heavy_event_strategy(), 600, false);
    println!("{total} policy-heavy events, {in_place} made in place");
    assert!(
        in_place >= total / 5,
        "only {in_place} of {total} were made in place"
    );
}

/// One long sequence (1,200 events): many steps are made in place.
#[test]
fn a_thousand_events_in_place_or_compiled_equal_a_fresh_compile() {
    let (in_place, total) = long_sequence(cluster_events::pod_heavy_event_strategy(), 1200, true);
    println!("{total} events, {in_place} made in place");
    assert!(
        in_place >= total / 4,
        "pods of the other node are most events; only {in_place} of {total} were made in place"
    );
}

/// The table as nft lists it, line by line, sorted (the order of a set's elements and of
/// objects is nft's, the content is what is compared).
fn kernel_listing() -> Vec<String> {
    let out = std::process::Command::new("nft")
        .args(["list", "table", "inet", bulkhead_nft::ruleset::TABLE])
        .output()
        .expect("nft list table");
    assert!(out.status.success(), "nft list table");
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split(['\n', ','])
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    lines.sort();
    lines
}

/// The live index with the real kernel, in a network namespace of its own: 300 pod-heavy
/// events, each committed as the agent commits (in place with set elements over netlink,
/// else a delta batch through nft); every 25 steps the kernel's table must list exactly as a
/// full load of a fresh compile of the same state.
#[test]
fn the_kernel_follows_the_live_index_to_the_table_a_full_load_gives() {
    use bulkhead_nft::{Backend, NftCli};
    use proptest::strategy::ValueTree as _;
    if !inside_own_netns("the_kernel_follows_the_live_index_to_the_table_a_full_load_gives") {
        return;
    }
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut state = State {
        cluster: random_cluster::cluster_strategy(true, true)
            .new_tree(&mut runner)
            .expect("cluster")
            .current(),
        audit: BTreeSet::new(),
        next_pod: 0,
        next_policy: 0,
    };
    let events = proptest::collection::vec(cluster_events::pod_heavy_event_strategy(), 300)
        .new_tree(&mut runner)
        .expect("events")
        .current();
    let mut kernel = NftCli::default();
    let (mut index, mut view, first) = start(&mut state);
    kernel.apply(&render(&first)).expect("the first full load");
    let (mut by_netlink, mut by_batch) = (0, 0);
    for (step, event) in events.iter().enumerate() {
        apply_event(&mut state, event);
        let (next, commit, _) = advance(&state, &mut index, &mut view);
        let held = view.last().expect("committed").clone();
        match &commit {
            Commit::Nothing => {}
            Commit::Delta(t) => match t.elements_only() {
                Some(changes) => {
                    kernel.write_elements(changes).unwrap_or_else(|e| {
                        panic!("step {step} {event:?}: netlink refused {changes:?}: {e}")
                    });
                    by_netlink += 1;
                }
                None => {
                    let script = t.render(&held, &next, &Default::default());
                    kernel.apply(&script).unwrap_or_else(|e| {
                        panic!("step {step} {event:?}: nft refused the delta: {e}\n{script}")
                    });
                    by_batch += 1;
                }
            },
            Commit::Full => kernel.apply(&render(&next)).expect("full load"),
        }
        view.committed(next);
        index.clear_changes();
        if step % 25 == 24 || step + 1 == events.len() {
            let after_deltas = kernel_listing();
            let wanted = fresh(&index.cluster(), &state.audit);
            kernel.apply(&render(&wanted)).expect("full load");
            let after_full = kernel_listing();
            assert_eq!(
                after_deltas, after_full,
                "step {step}: the kernel after the index's commits differs from a full load"
            );
        }
    }
    println!(
        "{} events: {by_netlink} commits as set elements over netlink, {by_batch} as nft batches",
        events.len()
    );
    assert!(
        by_netlink > 20,
        "only {by_netlink} commits were set elements alone"
    );
    kernel
        .apply(&format!(
            "delete table inet {}\n",
            bulkhead_nft::ruleset::TABLE
        ))
        .expect("delete the table");
}
