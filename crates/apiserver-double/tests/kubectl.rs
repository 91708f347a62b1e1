//! The double is checked against the real client: Debian's `kubectl` (package
//! `kubernetes-client`, which scripts/test.sh unpacks into target/ and names in
//! BULKHEAD_KUBECTL) lists, pages, gets and watches through a kubeconfig, as it would against a
//! real API server. Without kubectl these tests say so and pass, unless
//! BULKHEAD_REQUIRE_KUBECTL=1 (set by the test command), where a missing kubectl fails.

use bulkhead_apiserver_double::{ApiServer, ResourceType};
use serde_json::{Value, json};
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn kubectl() -> Option<String> {
    let path = std::env::var("BULKHEAD_KUBECTL").unwrap_or_else(|_| "kubectl".to_string());
    let found = Command::new(&path)
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(path);
    }
    assert!(
        std::env::var("BULKHEAD_REQUIRE_KUBECTL").is_err(),
        "BULKHEAD_REQUIRE_KUBECTL is set but {path} does not run"
    );
    eprintln!("note: {path} not found; the kubectl checks of the API server double did not run");
    None
}

fn pod(namespace: &str, name: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "i"}]},
        "status": {"podIP": ip, "podIPs": [{"ip": ip}]},
    })
}

struct Cluster {
    server: ApiServer,
    _dir: tempfile::TempDir,
    kubeconfig: std::path::PathBuf,
    kubectl: String,
}

impl Cluster {
    fn new() -> Option<Self> {
        let kubectl = kubectl()?;
        let server = ApiServer::start(ResourceType::bulkhead_kinds()).expect("starts");
        for (ns, name, ip) in [
            ("shop", "web-1", "10.0.0.1"),
            ("shop", "web-2", "10.0.0.2"),
            ("shop", "web-3", "10.0.0.3"),
            ("payments", "db-0", "10.0.1.1"),
            ("payments", "api-1", "10.0.1.2"),
        ] {
            server.apply(pod(ns, name, ip)).expect("applied");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, server.kubeconfig()).expect("written");
        Some(Self {
            server,
            _dir: dir,
            kubeconfig,
            kubectl,
        })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.kubectl);
        c.env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self._dir.path())
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("kubectl runs");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            format!(
                "{}/{}",
                i["metadata"]["namespace"].as_str().unwrap_or(""),
                i["metadata"]["name"].as_str().expect("name")
            )
        })
        .collect();
    names.sort();
    names
}

#[test]
fn kubectl_lists_and_gets_through_discovery_and_a_kubeconfig() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    let all: Value = serde_json::from_str(&cluster.run(&["get", "pods", "-A", "-o", "json"]))
        .expect("kubectl prints JSON");
    assert_eq!(
        names(&all),
        [
            "payments/api-1",
            "payments/db-0",
            "shop/web-1",
            "shop/web-2",
            "shop/web-3"
        ]
    );
    // kubectl puts kind and apiVersion back on the items the server sends without them.
    assert_eq!(all["items"][0]["kind"], "Pod");
    // The same as YAML, the form `kubectl get -o yaml | bulkhead check -` reads.
    let yaml = cluster.run(&["get", "pods", "-A", "-o", "yaml"]);
    let documents = bulkhead_k8s::yaml_tree::parse_documents(&yaml);
    let [Ok(document)] = documents.as_slice() else {
        panic!("one YAML document: {yaml}");
    };
    let from_yaml = document.root.as_ref().expect("a list").to_json();
    assert_eq!(from_yaml["kind"], "List");
    assert_eq!(names(&from_yaml), names(&all));
    let shop: Value =
        serde_json::from_str(&cluster.run(&["get", "pods", "-n", "shop", "-o", "json"]))
            .expect("JSON");
    assert_eq!(names(&shop), ["shop/web-1", "shop/web-2", "shop/web-3"]);
    let one: Value =
        serde_json::from_str(&cluster.run(&["get", "pod", "db-0", "-n", "payments", "-o", "json"]))
            .expect("JSON");
    assert_eq!(one["status"]["podIP"], "10.0.1.1");
    // A resource of another group, found through /apis discovery.
    cluster
        .server
        .apply(json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "deny", "namespace": "shop"},
            "spec": {"podSelector": {}},
        }))
        .expect("applied");
    assert_eq!(
        cluster
            .run(&["get", "networkpolicies", "-A", "-o", "name"])
            .trim(),
        "networkpolicy.networking.k8s.io/deny"
    );
    let missing = cluster
        .command(&["get", "pod", "nope", "-n", "shop"])
        .output()
        .expect("runs");
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("not found"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}

#[test]
fn kubectl_pages_with_limit_and_continue() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    let all: Value = serde_json::from_str(&cluster.run(&[
        "get",
        "pods",
        "-A",
        "--chunk-size",
        "2",
        "-o",
        "json",
    ]))
    .expect("JSON");
    assert_eq!(names(&all).len(), 5);
    let pages: Vec<String> = cluster
        .server
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("GET /api/v1/pods?") && r.contains("limit=2"))
        .collect();
    assert_eq!(pages.len(), 3, "5 pods in pages of 2: {pages:?}");
    assert_eq!(
        pages.iter().filter(|r| r.contains("continue=")).count(),
        2,
        "{pages:?}"
    );
}

#[test]
fn kubectl_watch_sees_adds_changes_and_deletes() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    let mut child = cluster
        .command(&[
            "get",
            "pods",
            "-A",
            "--watch",
            "--output-watch-events",
            "-o",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl starts");
    let stdout = child.stdout.take().expect("stdout");
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let next = || -> (String, String) {
        let line = received
            .recv_timeout(Duration::from_secs(20))
            .expect("kubectl printed an event in time");
        let event: Value = serde_json::from_str(&line).expect("one JSON event per line");
        (
            event["type"].as_str().expect("type").to_string(),
            event["object"]["metadata"]["name"]
                .as_str()
                .expect("name")
                .to_string(),
        )
    };
    // The list kubectl starts from, then the watch.
    let initial: Vec<(String, String)> = (0..5).map(|_| next()).collect();
    assert!(initial.iter().all(|(t, _)| t == "ADDED"), "{initial:?}");
    cluster
        .server
        .apply(pod("shop", "web-4", "10.0.0.4"))
        .expect("applied");
    assert_eq!(next(), ("ADDED".to_string(), "web-4".to_string()));
    cluster
        .server
        .apply(pod("shop", "web-4", "10.0.0.44"))
        .expect("applied");
    assert_eq!(next(), ("MODIFIED".to_string(), "web-4".to_string()));
    assert!(
        cluster
            .server
            .delete("v1", "Pod", Some("shop"), "web-4")
            .expect("deleted")
    );
    assert_eq!(next(), ("DELETED".to_string(), "web-4".to_string()));
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn raw_watches_get_bookmarks_and_410_after_compaction() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    cluster
        .server
        .set_bookmark_interval(Duration::from_millis(200));
    let version = cluster.server.resource_version();
    let raw = cluster.run(&[
        "get",
        "--raw",
        &format!(
            "/api/v1/pods?watch=1&allowWatchBookmarks=true&resourceVersion={version}&timeoutSeconds=1"
        ),
    ]);
    let events: Vec<Value> = raw
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert!(!events.is_empty(), "{raw}");
    assert!(events.iter().all(|e| e["type"] == "BOOKMARK"), "{raw}");
    assert_eq!(
        events[0]["object"]["metadata"]["resourceVersion"],
        version.to_string()
    );
    cluster
        .server
        .apply(pod("shop", "web-9", "10.0.0.9"))
        .expect("applied");
    cluster.server.compact();
    let gone = cluster.run(&[
        "get",
        "--raw",
        &format!("/api/v1/pods?watch=1&resourceVersion={version}"),
    ]);
    let event: Value = serde_json::from_str(gone.trim()).expect("one event");
    assert_eq!(event["type"], "ERROR");
    assert_eq!(event["object"]["code"], 410);
    assert_eq!(event["object"]["reason"], "Expired");
}
