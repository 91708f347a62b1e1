//! Deltas without root: random sequences of cluster events (pods added, removed, relabelled,
//! readdressed; policies of every API added, edited, deleted; namespaces relabelled; a
//! namespace's audit toggled) applied one transaction at a time must give, after every step,
//! exactly the ruleset a fresh full compile gives (same canonical text, same verdicts through
//! the interpreter), and a transaction must touch only what changed.

#[path = "../../engine/tests/support/cluster_events.rs"]
mod cluster_events;
#[path = "../../engine/tests/support/random_cluster.rs"]
mod random_cluster;

use bulkhead_engine::{Engine, EngineOptions};
use bulkhead_model::Cluster;
use bulkhead_nft::delta::Transaction;
use bulkhead_nft::render::render;
use bulkhead_nft::{CompileOptions, Ruleset, compile};
use cluster_events::{Event, NODES, State, apply_event, event_strategy, new_pod, verdicts};
use proptest::prelude::*;
use random_cluster::NAMESPACES;
use std::collections::{BTreeMap, BTreeSet};

/// The full compile of every node, each pod on its own interface.
fn compile_all(cluster: &Cluster, audit: &BTreeSet<String>, calico: bool) -> Vec<Ruleset> {
    let options = if calico {
        EngineOptions {
            semantics: bulkhead_engine::Semantics::Calico,
            self_traffic_allowed: true,
        }
    } else {
        EngineOptions::default()
    };
    let engine = Engine::new(cluster, options);
    NODES
        .iter()
        .map(|node| {
            let interfaces: BTreeMap<String, String> = cluster
                .pods
                .iter()
                .filter(|p| p.node.as_deref() == Some(node))
                .map(|p| (p.key(), format!("v-{}", p.name)))
                .collect();
            compile(
                &engine,
                &CompileOptions {
                    node: (*node).to_string(),
                    interfaces,
                    audit_namespaces: audit.clone(),
                    // Fail closed on every test interface: the pod_interfaces set follows
                    // every pod added and removed.
                    pod_interface_prefixes: vec!["v-".into()],
                    pod_cidrs: Vec::new(),
                },
            )
            .0
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn deltas_lead_to_the_fresh_compile_after_every_event(
        initial in random_cluster::cluster_strategy(true, true),
        events in proptest::collection::vec(event_strategy(), 45..60),
        calico in proptest::bool::ANY,
    ) {
        let mut state = State { cluster: initial, audit: BTreeSet::new(), next_pod: 0, next_policy: 0 };
        // Half the pods move to the second node.
        for (i, pod) in state.cluster.pods.iter_mut().enumerate() {
            pod.node = Some(NODES[i % 2].into());
        }
        let mut kernel = compile_all(&state.cluster, &state.audit, calico);
        for (step, event) in events.iter().enumerate() {
            apply_event(&mut state, event);
            let fresh = compile_all(&state.cluster, &state.audit, calico);
            for (node, (held, wanted)) in kernel.iter_mut().zip(&fresh).enumerate() {
                let Some(delta) = Transaction::between(held, wanted) else {
                    // Only a change of the enforcement maps needs a full replace; the
                    // compiler never changes them.
                    prop_assert!(false, "step {step} {event:?}: no delta on node {node}");
                    unreachable!();
                };
                let script = delta.render(held, wanted, &Default::default());
                prop_assert!(delta.is_empty() == (held == wanted), "step {step}: {script}");
                let applied = delta.apply(held);
                prop_assert_eq!(
                    render(&applied),
                    render(wanted),
                    "step {} {:?} on node {}: old + delta != fresh compile; delta:\n{}",
                    step, event, node, script
                );
                prop_assert_eq!(verdicts(&applied, &state.cluster), verdicts(wanted, &state.cluster));
                *held = applied;
            }
        }
    }
}

#[test]
fn adding_a_pod_elsewhere_touches_no_chain_of_this_node() {
    let mut state = State {
        cluster: Cluster::default(),
        audit: BTreeSet::new(),
        next_pod: 0,
        next_policy: 0,
    };
    for n in NAMESPACES {
        state.cluster.namespaces.push(bulkhead_model::Namespace {
            name: n.into(),
            labels: random_cluster::labels(&[("kubernetes.io/metadata.name", n)]),
            defined: true,
            source: None,
        });
    }
    for k in 0..6 {
        let pod = new_pod(&mut state, k % 3, k % 3, 0);
        state.cluster.pods.push(pod);
    }
    // A default-deny ingress in every namespace: the node's chains do not depend on who else
    // exists, only on the sets that hold peers.
    for n in NAMESPACES {
        let yaml = format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: deny, namespace: {n}}}\nspec: {{podSelector: {{}}, policyTypes: [Ingress]}}\n"
        );
        let loaded = bulkhead_k8s::load(
            &[bulkhead_k8s::Input::new("p.yaml", yaml)],
            &bulkhead_k8s::LoadOptions::default(),
        );
        state.cluster.policies.extend(loaded.cluster.policies);
    }
    state.cluster.finish();
    let before = compile_all(&state.cluster, &state.audit, false);
    apply_event(
        &mut state,
        &Event::AddPod {
            namespace: 1,
            app: 0,
            node: 1,
        },
    );
    let after = compile_all(&state.cluster, &state.audit, false);
    let delta = Transaction::between(&before[0], &after[0]).expect("delta");
    assert!(
        delta.is_empty(),
        "a pod on another node, selected by nothing here: {delta:?}"
    );
    // On its own node: its chains and dispatch entries, nothing else.
    let delta = Transaction::between(&before[1], &after[1]).expect("delta");
    assert_eq!(delta.chains_replaced, vec![], "no existing chain changes");
    assert!(delta.chains_removed.is_empty());
    assert_eq!(delta.dispatch.len(), 2, "{:?}", delta.dispatch);
    assert!(
        delta
            .chains_added
            .iter()
            .all(|c| c.endpoint.ends_with("b/q6")),
        "{:?}",
        delta.chains_added
    );
}

/// A network namespace of this test, deleted when the test ends however it ends.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

fn root_with_nft() -> bool {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let tools = [("nft", "--version"), ("ip", "-V")]
        .iter()
        .all(|(t, flag)| {
            std::process::Command::new(t)
                .arg(flag)
                .output()
                .is_ok_and(|o| o.status.success())
        });
    root && tools
}

fn nft_in(netns: &str, script: &str) -> Result<String, String> {
    use std::io::Write as _;
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", netns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    child
        .stdin
        .take()
        .ok_or("stdin")?
        .write_all(script.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The kernel's table as nft lists it, its top-level blocks sorted by their first line (a
/// delta adds chains in another order than a full load; their contents must be equal).
fn listing(netns: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args([
            "netns", "exec", netns, "nft", "list", "table", "inet", "bulkhead",
        ])
        .output()
        .expect("nft list");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut blocks: Vec<String> = Vec::new();
    // The table's own first and last lines are not part of any block.
    for line in text
        .lines()
        .filter(|l| !l.starts_with("table ") && *l != "}")
    {
        // Blocks open at one tab of indentation.
        if line.starts_with('\t') && !line.starts_with("\t\t") && !line.trim().starts_with('}') {
            blocks.push(String::new());
        }
        if let Some(b) = blocks.last_mut() {
            b.push_str(line);
            b.push('\n');
        }
    }
    let mut blocks: Vec<String> = blocks.iter().map(|b| b.trim_end().to_string()).collect();
    blocks.sort();
    blocks
}

#[test]
fn the_kernel_follows_deltas_to_the_table_a_full_load_gives() {
    if !root_with_nft() {
        assert!(
            std::env::var_os("BULKHEAD_REQUIRE_PRIVILEGED").is_none(),
            "root, nft and ip are required (BULKHEAD_REQUIRE_PRIVILEGED is set)"
        );
        eprintln!("SKIPPED: needs root, nft and ip");
        return;
    }
    use proptest::strategy::ValueTree as _;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let initial = random_cluster::cluster_strategy(true, true)
        .new_tree(&mut runner)
        .expect("cluster")
        .current();
    let events = proptest::collection::vec(event_strategy(), 150)
        .new_tree(&mut runner)
        .expect("events")
        .current();
    let netns = Netns(format!("bh-delta-{}", std::process::id()));
    let status = std::process::Command::new("ip")
        .args(["netns", "add", &netns.0])
        .status()
        .expect("ip netns add");
    assert!(status.success());
    let mut state = State {
        cluster: initial,
        audit: BTreeSet::new(),
        next_pod: 0,
        next_policy: 0,
    };
    for (i, pod) in state.cluster.pods.iter_mut().enumerate() {
        pod.node = Some(NODES[i % 2].into());
    }
    let mut held = compile_all(&state.cluster, &state.audit, true).remove(0);
    nft_in(&netns.0, &render(&held)).expect("the first full load");
    let started = std::time::Instant::now();
    let mut objects = 0;
    for (step, event) in events.iter().enumerate() {
        apply_event(&mut state, event);
        let wanted = compile_all(&state.cluster, &state.audit, true).remove(0);
        let delta = Transaction::between(&held, &wanted).expect("delta");
        objects += delta.size();
        if !delta.is_empty() {
            let script = delta.render(&held, &wanted, &Default::default());
            nft_in(&netns.0, &script).unwrap_or_else(|e| {
                panic!("step {step} {event:?}: nft refused the delta: {e}\n{script}")
            });
        }
        held = wanted;
        if step % 25 == 24 || step + 1 == events.len() {
            let after_deltas = listing(&netns.0);
            nft_in(&netns.0, &render(&held)).expect("full load");
            let after_full = listing(&netns.0);
            let only_deltas: Vec<&String> = after_deltas
                .iter()
                .filter(|b| !after_full.contains(b))
                .collect();
            let only_full: Vec<&String> = after_full
                .iter()
                .filter(|b| !after_deltas.contains(b))
                .collect();
            assert!(
                only_deltas.is_empty() && only_full.is_empty(),
                "step {step}: the kernel after deltas differs from a full load:\nonly after deltas: {only_deltas:#?}\nonly after a full load: {only_full:#?}"
            );
        }
    }
    println!(
        "{} events, {objects} objects changed, applied as deltas in {:.2} s (with the checks)",
        events.len(),
        started.elapsed().as_secs_f64()
    );
}
