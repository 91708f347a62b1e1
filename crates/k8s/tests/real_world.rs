//! Published manifests from eight projects (tests/real-world, see its README) must load without a
//! false error. The `known-invalid/` and `legacy-v1alpha1-shape/` folders hold Calico and
//! AdminNetworkPolicy objects whose validation belongs to the tiered-policy work; here they are
//! only required not to crash the loader.

use bulkhead_k8s::{LoadOptions, load, read_paths};
use bulkhead_model::Severity;
use std::path::{Path, PathBuf};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/real-world")
}

fn yaml_files(dir: &Path, include_negative: bool, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable corpus").flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if path.is_dir() {
            if include_negative || (name != "known-invalid" && name != "legacy-v1alpha1-shape") {
                yaml_files(&path, include_negative, out);
            }
        } else if name.ends_with(".yaml") {
            out.push(path);
        }
    }
}

#[test]
fn every_valid_set_loads_without_errors() {
    let mut sets: Vec<PathBuf> = std::fs::read_dir(corpus())
        .expect("corpus")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    sets.sort();
    assert_eq!(sets.len(), 8, "eight published sets");
    let mut policies = 0;
    for set in sets {
        let mut files = Vec::new();
        yaml_files(&set, false, &mut files);
        files.sort();
        let (inputs, io) = read_paths(&files);
        assert!(io.is_empty(), "{io:?}");
        let snapshot = load(&inputs, &LoadOptions::default());
        let errors: Vec<String> = snapshot
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| format!("{:?}: {} {}", d.location, d.code, d.message))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", set.display());
        policies += snapshot.cluster.network_policies.len();
    }
    assert!(policies >= 60, "NetworkPolicies loaded: {policies}");
}

#[test]
fn negative_folders_never_crash_the_loader() {
    let mut files = Vec::new();
    yaml_files(&corpus(), true, &mut files);
    let (inputs, _) = read_paths(&files);
    let snapshot = load(&inputs, &LoadOptions::default());
    assert!(!snapshot.cluster.pods.is_empty());
}

#[test]
fn kube_prometheus_host_network_and_lists_are_understood() {
    let (inputs, _) = read_paths(&[corpus().join("kube-prometheus")]);
    let snapshot = load(&inputs, &LoadOptions::default());
    let node_exporter = snapshot
        .cluster
        .pods
        .iter()
        .find(|p| p.workload.kind == "daemonset" && p.workload.name == "node-exporter")
        .expect("node-exporter template pod");
    assert!(node_exporter.host_network);
    assert_eq!(node_exporter.namespace, "monitoring");
}
