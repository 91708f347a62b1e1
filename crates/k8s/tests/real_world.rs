//! Published manifests from eight projects (tests/real-world, see its README) must load without a
//! false error, and every file of `known-invalid/` and the invalid ones of
//! `legacy-v1alpha1-shape/` must be reported.

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

/// Errors in the "valid" sets that are real: the corpus README checked structure only, and
/// Calico's own validator rejects these documentation examples too.
const TRUE_ERRORS_IN_VALID_SETS: &[(&str, &str, &str)] = &[
    (
        "calico-docs/examples/calico-labels-1.yaml",
        "BH021",
        "numeric port without protocol (CAL-VAL-2)",
    ),
    (
        "calico-docs/examples/calico-labels-6.yaml",
        "BH021",
        "the same mistake in the page's second version of foo-and-bar",
    ),
    (
        "calico-docs/examples/services-cluster-ips-1.yaml",
        "BH025",
        "`10.20.30.40/32  Cluster IP A`: the comment marker is missing upstream",
    ),
    (
        "calico-docs/examples/services-cluster-ips-2.yaml",
        "BH025",
        "same missing comment marker",
    ),
];

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
            .filter(|d| {
                !TRUE_ERRORS_IN_VALID_SETS.iter().any(|(file, code, _)| {
                    d.code == *code && d.location.as_ref().is_some_and(|l| l.file.ends_with(file))
                })
            })
            .map(|d| format!("{:?}: {} {}", d.location, d.code, d.message))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", set.display());
        policies += snapshot.cluster.policies.len();
    }
    assert!(policies >= 60, "NetworkPolicies loaded: {policies}");
}

fn error_count(file: &Path) -> usize {
    let (inputs, _) = read_paths(&[file.to_path_buf()]);
    let snapshot = load(&inputs, &LoadOptions::default());
    snapshot.error_count()
}

#[test]
fn every_known_invalid_file_is_reported() {
    let mut files = Vec::new();
    yaml_files(
        &corpus().join("calico-docs/known-invalid"),
        true,
        &mut files,
    );
    assert_eq!(files.len(), 3);
    for file in files {
        assert!(error_count(&file) > 0, "{} loaded silently", file.display());
    }
}

#[test]
fn legacy_v1alpha1_shapes_are_reported_and_valid_neighbours_are_not() {
    let root = corpus().join("network-policy-api/legacy-v1alpha1-shape");
    let mut files = Vec::new();
    yaml_files(&root, true, &mut files);
    let valid = [
        "user-story-3.yaml",
        "npv1.yaml",
        "demo-deployment-a.yaml",
        "demo-pod-b.yaml",
    ];
    let mut invalid = 0;
    for file in &files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let errors = error_count(file);
        if valid.contains(&name.as_str()) {
            assert_eq!(errors, 0, "{} is valid", file.display());
        } else {
            assert!(errors > 0, "{} loaded silently", file.display());
            invalid += 1;
        }
    }
    assert_eq!(
        invalid, 10,
        "seven demo policies and user stories 1, 2 and 5"
    );
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
