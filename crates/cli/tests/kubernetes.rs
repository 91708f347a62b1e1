//! Commands reading a live cluster (`--kubeconfig`, `--context`, `--live`, `diff --base live`)
//! against the loopback API server double, which speaks the real list protocol (and is
//! itself checked against the real kubectl in `crates/apiserver-double/tests/kubectl.rs`).

mod support;

use bulkhead_apiserver_double::{ApiServer, ResourceType};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use support::{bulkhead, output, run};

/// A web pod of the `live` fixture to the database, on its port.
const WEB_TO_DB: [&str; 6] = [
    "--from",
    "shop/web-5d9c7b-a1",
    "--to",
    "payments/db-0",
    "--port",
    "5432",
];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A server holding the objects of `paths`, and a kubeconfig for it.
fn serve(kinds: Vec<ResourceType>, paths: &[PathBuf]) -> (ApiServer, tempfile::TempDir, String) {
    let server = ApiServer::start(kinds).expect("the API server double starts");
    let (stored, skipped) = server.apply_manifests(paths).expect("manifests load");
    assert!(stored > 0 && skipped.is_empty(), "{stored} {skipped:?}");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).expect("kubeconfig written");
    let path = kubeconfig.to_string_lossy().into_owned();
    (server, dir, path)
}

fn path_args(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

/// `args` run once on the files and once on the same objects through the API must print the
/// same thing.
fn same_through_the_api(kinds: Vec<ResourceType>, paths: &[PathBuf], args: &[&str]) -> String {
    let (_server, _dir, kubeconfig) = serve(kinds, paths);
    let mut files: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    files.splice(1..1, path_args(paths));
    let files = run(&files.iter().map(String::as_str).collect::<Vec<_>>());
    let mut live: Vec<&str> = args.to_vec();
    live.splice(1..1, ["--kubeconfig", kubeconfig.as_str()]);
    let live = run(&live);
    assert_eq!(files.code, 0, "{}", files.stderr);
    assert_eq!(live.code, 0, "{}", live.stderr);
    assert!(files.stdout.len() > 100, "{}", files.stdout);
    assert_eq!(
        live.stdout, files.stdout,
        "through the API: {}",
        live.stderr
    );
    live.stdout
}

#[test]
fn map_through_the_api_equals_map_of_the_files_with_workloads() {
    let paths = [fixture("live/kubernetes")];
    for by in ["workload", "pod"] {
        let out = same_through_the_api(
            ResourceType::bulkhead_kinds(),
            &paths,
            &["map", "--by", by, "-o", "json"],
        );
        if by == "workload" {
            // Deployments, StatefulSets and CronJobs: live pods and templates alike.
            for workload in [
                "shop/deployment/web",
                "payments/statefulset/db",
                "payments/deployment/api",
                "payments/cronjob/report",
            ] {
                assert!(out.contains(workload), "{workload} missing: {out}");
            }
        }
    }
}

#[test]
fn map_through_calico_v3_and_calico_crds_equals_map_of_the_files() {
    let paths = [fixture("live/kubernetes"), fixture("live/calico")];
    same_through_the_api(
        ResourceType::bulkhead_kinds(),
        &paths,
        &["map", "--by", "workload", "-o", "json"],
    );
    // The same objects where only crd.projectcalico.org/v1 exists.
    let crd_dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(fixture("live/calico/policies.yaml")).expect("fixture");
    std::fs::write(
        crd_dir.path().join("policies.yaml"),
        text.replace("projectcalico.org/v3", "crd.projectcalico.org/v1"),
    )
    .expect("written");
    same_through_the_api(
        ResourceType::bulkhead_kinds_with_calico_crds(),
        &[fixture("live/kubernetes"), crd_dir.path().to_path_buf()],
        &["map", "--by", "workload", "-o", "json"],
    );
}

#[test]
fn check_and_explain_through_the_api_name_the_object() {
    let paths = [fixture("live/kubernetes"), fixture("live/calico")];
    let (_server, _dir, kubeconfig) = serve(ResourceType::bulkhead_kinds(), &paths);
    let live = run(&["check", "--kubeconfig", &kubeconfig, "-o", "json"]);
    let files = run(&[
        "check",
        &paths[0].to_string_lossy(),
        &paths[1].to_string_lossy(),
        "-o",
        "json",
    ]);
    assert_eq!(live.code, files.code, "{}", live.stderr);
    let codes = |r: &support::Run| -> Vec<String> {
        r.json()["diagnostics"]
            .as_array()
            .expect("diagnostics")
            .iter()
            .map(|d| format!("{} {}", d["code"], d["message"]))
            .collect()
    };
    assert_eq!(codes(&live), codes(&files));
    // Locations name the object read from the API, not a file.
    let located: Vec<String> = live.json()["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .filter_map(|d| d["file"].as_str().map(str::to_string))
        .collect();
    assert!(
        located.iter().any(|f| f.starts_with("live:")),
        "{located:?}"
    );
    let mut explain = vec!["explain", "--kubeconfig", &kubeconfig];
    explain.extend(WEB_TO_DB);
    let explain = run(&explain);
    assert_eq!(explain.code, 0, "{}", explain.stderr);
    assert!(explain.stdout.contains("db-from-web"), "{}", explain.stdout);
}

/// Enough pods for several pages: the CLI lists with `limit` and follows `continue`.
#[test]
fn large_lists_are_read_in_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: big}\n");
    for i in 0..1_234 {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}, namespace: big, labels: {{app: a{}}}}}\nspec: {{nodeName: n1, containers: [{{name: c, image: i}}]}}\nstatus: {{podIP: 10.9.{}.{}}}\n",
            i % 7,
            i / 250,
            i % 250 + 1
        ));
    }
    text.push_str("---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: only-a1, namespace: big}\nspec:\n  podSelector: {matchLabels: {app: a0}}\n  ingress: [{from: [{podSelector: {matchLabels: {app: a1}}}]}]\n");
    std::fs::write(dir.path().join("big.yaml"), text).expect("written");
    let paths = [dir.path().to_path_buf()];
    let (server, _kdir, kubeconfig) = serve(ResourceType::bulkhead_kinds(), &paths);
    // The last pod listed (p1233, app a1) is on the third page; a1 may reach a0, a2 may not.
    for (from, code) in [("big/p1233", 0), ("big/p2", 1)] {
        let args = [
            "--from",
            from,
            "--to",
            "big/p0",
            "--port",
            "80",
            "-o",
            "json",
            "--fail-on-deny",
        ];
        let mut live = vec!["explain", "--kubeconfig", &kubeconfig];
        live.extend(args);
        let live = run(&live);
        let files_path = paths[0].to_string_lossy();
        let mut files = vec!["explain", &*files_path];
        files.extend(args);
        let files = run(&files);
        assert_eq!(live.code, code, "{from}: {}{}", live.stdout, live.stderr);
        // The same verdict and deciding rules; only where the rule was read from differs.
        let (live, files) = (live.json(), files.json());
        let sources = |v: &Value| -> Vec<String> {
            v["ingress"]["decided_by"]
                .as_array()
                .expect("decided_by")
                .iter()
                .map(|d| d["source"].as_str().expect("source").to_string())
                .collect()
        };
        assert!(
            sources(&live)
                .iter()
                .all(|s| s.starts_with("live:NetworkPolicy/big/only-a1:")),
            "{live:#}"
        );
        assert_eq!(without_sources(live), without_sources(files));
    }
    let pods: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("GET /api/v1/pods?"))
        .collect();
    // Two runs, each listing 1,234 pods in three pages of at most 500.
    assert_eq!(pods.len(), 6, "{pods:?}");
    assert!(pods.iter().all(|r| r.contains("limit=500")), "{pods:?}");
    assert_eq!(pods.iter().filter(|r| r.contains("continue=")).count(), 4);
}

/// `value` with every `source` field blanked.
fn without_sources(mut value: Value) -> Value {
    match &mut value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                *v = if key == "source" {
                    Value::Null
                } else {
                    without_sources(v.take())
                };
            }
        }
        Value::Array(items) => {
            for v in items.iter_mut() {
                *v = without_sources(v.take());
            }
        }
        _ => {}
    }
    value
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|d| d["policy"].as_str().expect("policy").to_string())
        .collect()
}

#[test]
fn diff_against_the_live_cluster_reports_exactly_the_planted_drift() {
    let paths = [fixture("live/kubernetes")];
    let (server, _dir, kubeconfig) = serve(ResourceType::bulkhead_kinds(), &paths);
    let git = path_args(&paths).remove(0);
    let drift_against_git = || {
        run(&[
            "diff",
            "--base",
            "live",
            "--head",
            &git,
            "--kubeconfig",
            &kubeconfig,
            "-o",
            "json",
            "--fail-on-drift",
        ])
    };
    // No drift yet.
    let same = drift_against_git();
    assert_eq!(same.code, 0, "{}{}", same.stdout, same.stderr);
    let policies = &same.json()["policies"];
    for side in ["only_in_base", "only_in_head", "changed"] {
        assert_eq!(policies[side], json!([]), "{side}");
    }
    // Planted: one policy added by hand in the cluster, one deleted, one edited.
    server
        .apply(json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "debug-allow-all", "namespace": "payments"},
            "spec": {"podSelector": {}, "ingress": [{}]},
        }))
        .expect("applied");
    assert!(
        server
            .delete(
                "policy.networking.k8s.io/v1alpha1",
                "AdminNetworkPolicy",
                None,
                "no-metadata-service"
            )
            .expect("deleted")
    );
    server
        .apply(json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "db-from-web", "namespace": "payments"},
            "spec": {
                "podSelector": {"matchLabels": {"app": "db"}},
                "ingress": [{"from": [{"namespaceSelector": {}}], "ports": [{"port": "pg"}]}],
            },
        }))
        .expect("applied");
    let drift = drift_against_git();
    assert_eq!(drift.code, 1, "{}{}", drift.stdout, drift.stderr);
    let report = drift.json();
    let policies = &report["policies"];
    assert_eq!(
        names(&policies["only_in_base"]),
        ["NetworkPolicy payments/debug-allow-all"]
    );
    assert_eq!(
        names(&policies["only_in_head"]),
        ["AdminNetworkPolicy no-metadata-service"]
    );
    assert_eq!(
        names(&policies["changed"]),
        ["NetworkPolicy payments/db-from-web"]
    );
    // The hand-made allow-all opens payments to everyone: its connectivity is listed with it.
    let opened = policies["only_in_base"][0]["connectivity"]
        .as_array()
        .expect("connectivity");
    assert!(
        opened
            .iter()
            .any(|l| l.as_str().is_some_and(|l| l.starts_with("- "))),
        "Git (head) removes what the cluster's extra policy allows: {opened:?}"
    );
    // The reverse direction reads the same drift from the other side.
    let reverse = run(&[
        "diff",
        "--base",
        &git,
        "--head",
        "live",
        "--kubeconfig",
        &kubeconfig,
    ]);
    assert_eq!(reverse.code, 0, "{}", reverse.stderr);
    assert!(
        reverse.stdout.contains("**Only in the live cluster** (1)")
            && reverse
                .stdout
                .contains("`NetworkPolicy payments/debug-allow-all`"),
        "{}",
        reverse.stdout
    );
}

#[test]
fn an_unreachable_cluster_or_a_missing_kubeconfig_is_an_input_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope");
    let r = run(&["map", "--kubeconfig", &missing.to_string_lossy()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("cannot read kubeconfig"), "{}", r.stderr);
    // A server that is not there: port 1 on loopback refuses at once.
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'http://127.0.0.1:1'}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\nusers:\n- name: u\n  user: {token: t}\n",
    )
    .expect("written");
    let r = run(&["check", "--kubeconfig", &kubeconfig.to_string_lossy()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("cannot reach the Kubernetes API at http://127.0.0.1:1"),
        "{}",
        r.stderr
    );
    // A context that the kubeconfig does not have.
    let mut command = bulkhead();
    command.args([
        "map",
        "--kubeconfig",
        &kubeconfig.to_string_lossy(),
        "--context",
        "elsewhere",
    ]);
    let r = output(command);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("elsewhere"), "{}", r.stderr);
}

#[test]
fn kubeconfig_from_the_environment_and_files_on_top() {
    let paths = [fixture("live/kubernetes")];
    let (_server, _dir, kubeconfig) = serve(ResourceType::bulkhead_kinds(), &paths);
    // A what-if: the cluster plus a policy from a file.
    let extra = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        extra.path().join("deny-web.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-web, namespace: shop}\nspec:\n  podSelector: {}\n  policyTypes: [Egress]\n",
    )
    .expect("written");
    let mut command = bulkhead();
    command
        .env("KUBECONFIG", &kubeconfig)
        .args(["explain", "--live"])
        .arg(extra.path())
        .args(WEB_TO_DB);
    let r = output(command);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("deny-web"), "{}", r.stdout);
    assert!(Path::new(&kubeconfig).exists());
}
