//! The agent's Kubernetes source against the loopback API server double: after the first list
//! and after every change (applies, deletes, dropped watches, a 410 relist, the server
//! stopped and restarted) the index holds what a fresh list of the cluster gives, and the
//! node's ruleset compiled from it equals the one compiled from that list.

use bulkhead_agent::source::Source as _;
use bulkhead_apiserver_double::{ApiServer, ResourceType};
use bulkhead_engine::{Engine, EngineOptions};
use bulkhead_index::{Event, Index, ObjectKey, objects_of};
use bulkhead_k8s::LoadOptions;
use bulkhead_kube::{KubernetesSource, Target};
use bulkhead_model::{Cluster, PodOrigin};
use bulkhead_nft::render::render;
use bulkhead_nft::{CompileOptions, compile};
use serde_json::json;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const NODE: &str = "node-1";

fn fixtures() -> Vec<PathBuf> {
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../cli/tests/fixtures/live");
    vec![base.join("kubernetes"), base.join("calico")]
}

struct Live {
    server: ApiServer,
    _dir: tempfile::TempDir,
    target: Target,
}

fn live() -> Live {
    let server = ApiServer::start(ResourceType::bulkhead_kinds()).expect("starts");
    server.apply_manifests(&fixtures()).expect("manifests");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).expect("written");
    Live {
        server,
        _dir: dir,
        target: Target {
            kubeconfig: Some(kubeconfig),
            context: None,
        },
    }
}

fn options() -> LoadOptions {
    LoadOptions {
        default_namespace: "default".into(),
    }
}

/// The cluster as a fresh paged list reads it, without workload templates (the agent
/// enforces live pods only).
fn listed(target: &Target) -> Cluster {
    let read = bulkhead_kube::read_cluster(target, &mut |_| {}).expect("lists");
    let mut cluster = bulkhead_k8s::load(&read.inputs, &options()).cluster;
    cluster.pods.retain(|p| p.origin == PodOrigin::Live);
    cluster.finish();
    cluster
}

fn keys(objects: Vec<bulkhead_index::Object>) -> BTreeSet<ObjectKey> {
    objects.iter().map(|o| o.key()).collect()
}

fn ruleset(cluster: &Cluster) -> String {
    let engine = Engine::new(cluster, EngineOptions::for_cluster(cluster));
    let options = CompileOptions {
        node: NODE.into(),
        interfaces: cluster
            .pods
            .iter()
            .filter(|p| p.node.as_deref() == Some(NODE))
            .map(|p| (p.key(), format!("v-{}", p.name)))
            .collect(),
        audit_namespaces: Default::default(),
        pod_interface_prefixes: vec!["v-".into()],
        pod_cidrs: Vec::new(),
    };
    render(&compile(&engine, &options).0)
}

/// Whether the index holds what a fresh list gives.
fn agrees(index: &Index, expected: &Cluster) -> bool {
    let held = index.cluster();
    keys(objects_of(&held)) == keys(objects_of(expected)) && ruleset(&held) == ruleset(expected)
}

/// Feeds the source's deliveries into the index until it agrees with a fresh list.
fn settle(source: &mut KubernetesSource, index: &mut Index, target: &Target, what: &str) {
    let expected = listed(target);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !agrees(index, &expected) {
        assert!(
            Instant::now() < deadline,
            "{what}: the index did not follow within 60 s; held {:?}",
            keys(objects_of(&index.cluster()))
        );
        if let Some(delivery) = source.changes(index, Duration::from_millis(100)) {
            assert!(delivery.rejected.is_empty(), "{:?}", delivery.rejected);
            for event in delivery.events {
                index.handle(event);
            }
        }
    }
}

fn start(live: &Live) -> (KubernetesSource, Index) {
    let mut source = KubernetesSource::start(live.target.clone(), options());
    let mut index = Index::new();
    assert!(
        source.wait_synced(&index, Duration::from_secs(60)),
        "the first list arrived: {:?}",
        source.health()
    );
    let delivery = source.resync(&index);
    for event in delivery.events {
        index.handle(event);
    }
    assert!(
        agrees(&index, &listed(&live.target)),
        "after the first list"
    );
    assert!(source.health().connected);
    (source, index)
}

fn pod(name: &str, app: &str, node: &str, ip: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "labels": {"app": app}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    })
}

#[test]
fn the_index_follows_applies_and_deletes_of_every_kind() {
    let live = live();
    let (mut source, mut index) = start(&live);
    // A pod added on another node, a relabel, a policy deleted, a Calico set changed.
    live.server
        .apply(pod("web-x", "web", "node-2", "10.1.2.99"))
        .expect("applied");
    settle(&mut source, &mut index, &live.target, "pod added");
    live.server
        .apply(pod("web-x", "other", "node-2", "10.1.2.99"))
        .expect("applied");
    settle(&mut source, &mut index, &live.target, "pod relabelled");
    assert!(
        live.server
            .delete(
                "networking.k8s.io/v1",
                "NetworkPolicy",
                Some("payments"),
                "db-from-web"
            )
            .expect("deleted")
    );
    settle(&mut source, &mut index, &live.target, "policy deleted");
    live.server
        .apply(json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "GlobalNetworkSet",
            "metadata": {"name": "bad-nets", "labels": {"role": "bad"}},
            "spec": {"nets": ["192.0.2.0/24"]},
        }))
        .expect("applied");
    settle(&mut source, &mut index, &live.target, "network set changed");
    live.server
        .apply(json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "shop", "labels": {"team": "elsewhere"}},
        }))
        .expect("applied");
    settle(
        &mut source,
        &mut index,
        &live.target,
        "namespace relabelled",
    );
    // A status-only change lowers to the same object: nothing is handed over.
    let mut same = pod("web-x", "other", "node-2", "10.1.2.99");
    same["status"]["phase"] = json!("Running");
    same["metadata"]["annotations"] = json!({"touched": "yes"});
    live.server.apply(same).expect("applied");
    let quiet = Instant::now() + Duration::from_secs(1);
    while Instant::now() < quiet {
        if let Some(d) = source.changes(&index, Duration::from_millis(100)) {
            assert!(d.events.is_empty(), "{:?}", d.events);
        }
    }
}

#[test]
fn an_object_that_does_not_load_keeps_its_last_good_version_loudly() {
    let live = live();
    let (mut source, index) = start(&live);
    live.server
        .apply(json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny", "namespace": "payments"},
            "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 99999}]}]},
        }))
        .expect("applied");
    let deadline = Instant::now() + Duration::from_secs(30);
    let rejected = loop {
        assert!(Instant::now() < deadline, "the bad object was reported");
        if let Some(d) = source.changes(&index, Duration::from_millis(100)) {
            for event in &d.events {
                assert!(!matches!(event, Event::Delete(_)), "{event:?}");
            }
            if !d.rejected.is_empty() {
                break d.rejected;
            }
        }
    };
    assert!(
        rejected[0].contains("live:NetworkPolicy/payments/default-deny")
            && rejected[0].contains("last good"),
        "{rejected:?}"
    );
    assert!(
        index
            .get(&ObjectKey {
                kind: bulkhead_index::ObjectKind::Policy,
                namespace: Some("payments".into()),
                name: "NetworkPolicy/default-deny".into(),
            })
            .is_some()
    );
}

#[test]
fn dropped_watches_a_410_relist_and_a_stopped_server_lose_nothing() {
    let mut live = live();
    let (mut source, mut index) = start(&live);
    // Watches dropped: the watcher re-watches from where it was.
    live.server.drop_watches();
    live.server
        .apply(pod("web-y", "web", "node-1", "10.1.1.99"))
        .expect("applied");
    settle(
        &mut source,
        &mut index,
        &live.target,
        "after dropped watches",
    );
    // History compacted and the watches dropped: the re-watch gets 410 Gone and relists.
    let relists = source.health().relists;
    live.server.compact();
    live.server.drop_watches();
    assert!(
        live.server
            .delete("v1", "Pod", Some("shop"), "web-5d9c7b-b2")
            .expect("deleted")
    );
    live.server.compact();
    settle(&mut source, &mut index, &live.target, "after a 410 relist");
    let relisted = Instant::now() + Duration::from_secs(30);
    while source.health().relists == relists {
        assert!(
            Instant::now() < relisted,
            "a relist after 410: {:?}",
            source.health()
        );
        if let Some(d) = source.changes(&index, Duration::from_millis(100)) {
            for event in d.events {
                index.handle(event);
            }
        }
    }
    settle(&mut source, &mut index, &live.target, "after the relist");
    // The server stopped: nothing changes, the source says it is down; changes made meanwhile
    // arrive after the restart.
    live.server.stop();
    live.server
        .apply(pod("web-z", "web", "node-2", "10.1.2.77"))
        .expect("stored while stopped");
    let held = keys(objects_of(&index.cluster()));
    let down = Instant::now() + Duration::from_secs(30);
    while source.health().connected {
        assert!(
            Instant::now() < down,
            "the source noticed the server is down"
        );
        if let Some(d) = source.changes(&index, Duration::from_millis(200)) {
            assert!(d.events.is_empty(), "events while down: {:?}", d.events);
        }
    }
    assert_eq!(keys(objects_of(&index.cluster())), held);
    assert!(source.health().last_error.is_some());
    live.server.restart().expect("restarts");
    settle(&mut source, &mut index, &live.target, "after the restart");
}

/// Waits (bounded) until the source's cluster break-glass is `want`, handing each delivery to
/// the index as the agent does.
fn glass_becomes(
    source: &mut KubernetesSource,
    index: &mut Index,
    want: Option<bulkhead_agent::source::ClusterBreakGlass>,
    what: &str,
) {
    let started = Instant::now();
    loop {
        if let Some(delivery) = source.changes(index, Duration::from_millis(100)) {
            for e in delivery.events {
                index.handle(e);
            }
        }
        let now = source.cluster_break_glass();
        if now.as_ref().map(|g| (g.all, &g.namespaces))
            == want.as_ref().map(|g| (g.all, &g.namespaces))
        {
            println!("{what}: after {:?}", started.elapsed());
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what}: the break-glass should be {want:?}, is {now:?}"
        );
    }
}

#[test]
fn the_break_glass_config_map_is_followed() {
    use bulkhead_agent::source::ClusterBreakGlass;
    let live = live();
    let (namespace, name) = bulkhead_kube::BREAK_GLASS;
    let config_map = |name: &str, data: serde_json::Value| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": name, "namespace": namespace}, "data": data})
    };
    // On before the agent starts: its first delivery already knows.
    live.server
        .apply(config_map(
            name,
            json!({"namespaces": "x, y", "reason": "drill"}),
        ))
        .expect("applied");
    let mut source = KubernetesSource::start(live.target.clone(), options());
    let mut index = Index::new();
    assert!(
        source.wait_synced(&index, Duration::from_secs(20)),
        "synced"
    );
    for e in source.resync(&index).events {
        index.handle(e);
    }
    let glass = source.cluster_break_glass().expect("on from the start");
    assert!(!glass.all);
    assert_eq!(
        glass.namespaces,
        BTreeSet::from(["x".to_string(), "y".to_string()])
    );
    assert!(
        glass.origin.ends_with("break-glass: drill"),
        "{}",
        glass.origin
    );
    // Another ConfigMap of that namespace changes nothing.
    live.server
        .apply(config_map("unrelated", json!({"namespaces": "*"})))
        .expect("applied");
    std::thread::sleep(Duration::from_millis(300));
    let _ = source.changes(&index, Duration::from_millis(100));
    assert_eq!(source.cluster_break_glass(), Some(glass.clone()));
    // No namespaces named: everything.
    live.server
        .apply(config_map(name, json!({"reason": "outage"})))
        .expect("applied");
    glass_becomes(
        &mut source,
        &mut index,
        Some(ClusterBreakGlass {
            all: true,
            ..Default::default()
        }),
        "everything open",
    );
    assert!(
        live.server
            .delete("v1", "ConfigMap", Some(namespace), name)
            .expect("deleted")
    );
    glass_becomes(&mut source, &mut index, None, "deleted");
}

/// A rollback is posted as a Kubernetes Event on the namespace, through the API.
#[test]
fn a_rollback_is_posted_as_an_event_on_its_namespace() {
    let live = live();
    let source = KubernetesSource::start(live.target.clone(), options());
    let decision = bulkhead_agent::rollback::Decision {
        namespace: "shop".into(),
        newly_denied: 12,
        revision: 9,
        within: Duration::from_secs(4),
    };
    source.announce_rollback("node-1", &decision);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let events = loop {
        let events = live.server.events();
        if !events.is_empty() || std::time::Instant::now() > deadline {
            break events;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event["metadata"]["namespace"], "shop");
    assert!(
        event["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("bulkhead-rollback-")),
        "{event}"
    );
    assert_eq!(event["involvedObject"]["kind"], "Namespace");
    assert_eq!(event["involvedObject"]["name"], "shop");
    assert_eq!(event["reason"], "BulkheadRollback");
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["source"]["host"], "node-1");
    let message = event["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("node node-1 moved namespace shop to audit")
            && message.contains("12 connection(s) the previous revision allowed")
            && message.contains("revision 9"),
        "{message}"
    );
    assert!(event["firstTimestamp"].is_string(), "{event}");
    assert!(
        live.server
            .requests()
            .iter()
            .any(|r| r.starts_with("POST /api/v1/namespaces/shop/events")),
        "{:?}",
        live.server.requests()
    );
}
