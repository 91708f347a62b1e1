//! A `kubectl get -o yaml` list longer than one parsing group is handed to the loader in
//! parts: the result must be the one of the same objects loaded as separate documents, the
//! list counted once, and a broken item still reported at its line.

use bulkhead_k8s::{Input, LoadOptions, load};

fn pod(i: usize) -> String {
    format!(
        "- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: pod-{i}\n    namespace: ns-{}\n    labels: {{app: a{}, tier: web}}\n  spec:\n    nodeName: node-{}\n    hostNetwork: no\n    containers:\n    - name: c\n      image: registry.example/app:1\n      ports: [{{name: http, containerPort: 8080}}]\n  status:\n    phase: Running\n    podIP: 10.{}.{}.{}\n",
        i % 50,
        i % 7,
        i % 13,
        (i >> 16) & 255,
        (i >> 8) & 255,
        i & 255
    )
}

/// Enough pods for two parts (each part is about 4 MiB of items).
const PODS: usize = 15_000;

fn list_text() -> String {
    let mut text =
        String::from("apiVersion: v1\nkind: List\nmetadata:\n  resourceVersion: \"\"\nitems:\n");
    for i in 0..PODS {
        text.push_str(&pod(i));
    }
    text
}

#[test]
fn a_long_list_loads_as_its_items_would_one_by_one() {
    let text = list_text();
    assert!(text.len() > 4 * 1024 * 1024, "{} bytes", text.len());
    let as_list = load(&[Input::new("pods.yaml", text)], &LoadOptions::default());
    let mut separate = String::new();
    for i in 0..PODS {
        separate.push_str("---\n");
        for line in pod(i).lines() {
            // `- apiVersion` and its indented fields, as a document of its own.
            separate.push_str(line.get(2..).unwrap_or_default());
            separate.push('\n');
        }
    }
    let as_documents = load(
        &[Input::new("pods.yaml", separate)],
        &LoadOptions::default(),
    );
    assert_eq!(as_list.cluster.pods.len(), PODS);
    // Everything but where each pod is written (the two texts put them on other lines).
    let view = |s: &bulkhead_k8s::Snapshot| {
        s.cluster
            .pods
            .iter()
            .map(|p| {
                (
                    p.key(),
                    p.labels.clone(),
                    p.ips.clone(),
                    p.node.clone(),
                    format!("{:?}", p.ports),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(view(&as_list), view(&as_documents));
    assert_eq!(as_list.cluster.namespaces, as_documents.cluster.namespaces);
    assert_eq!(as_list.object_counts.get("List"), Some(&1));
    assert_eq!(as_list.object_counts.get("Pod"), Some(&PODS));
    // `hostNetwork: no` is a YAML 1.1 boolean in every item: one warning per item, each at
    // its own line, in the parts as in the whole.
    let surprises = |s: &bulkhead_k8s::Snapshot| {
        s.diagnostics
            .iter()
            .filter(|d| d.message.contains("boolean"))
            .count()
    };
    assert_eq!(surprises(&as_list), PODS);
    let lines: std::collections::BTreeSet<usize> = as_list
        .diagnostics
        .iter()
        .filter_map(|d| d.location.as_ref().map(|l| l.line))
        .collect();
    assert_eq!(lines.len(), PODS, "each item's warning is at its own line");
}

#[test]
fn a_broken_item_late_in_a_long_list_is_reported_at_its_line() {
    let mut text = list_text();
    // The last item's labels lose their closing brace.
    let broken = text.rfind("tier: web}").expect("last item");
    text.replace_range(broken.."tier: web}".len() + broken, "tier: web");
    let line = text[..broken].lines().count() + 1;
    let snapshot = load(&[Input::new("pods.yaml", text)], &LoadOptions::default());
    let errors: Vec<_> = snapshot
        .diagnostics
        .iter()
        .filter(|d| d.severity == bulkhead_model::Severity::Error)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let at = errors[0].location.as_ref().expect("a location").line;
    assert!(
        (line..line + 3).contains(&at),
        "the syntax error is reported at line {at}, the broken item is at {line}"
    );
}

/// The same long list as one line of JSON (how `kubectl get -o json` is often piped) loads
/// the same cluster, each item's unknown field reported at its own column.
#[test]
fn a_long_json_list_loads_as_the_yaml_one() {
    let yaml = list_text().replace("tier: web}", "tier: web}\n    labelz: {}");
    let tree = bulkhead_k8s::yaml_tree::parse_documents(&yaml)
        .remove(0)
        .expect("parses")
        .root
        .expect("a root");
    let json = serde_json::to_string(&tree.to_json()).expect("JSON");
    assert!(json.len() > 4 * 1024 * 1024 && !json.contains('\n'));
    let from_yaml = load(&[Input::new("pods.yaml", yaml)], &LoadOptions::default());
    let from_json = load(&[Input::new("pods.json", json)], &LoadOptions::default());
    let view = |s: &bulkhead_k8s::Snapshot| {
        s.cluster
            .pods
            .iter()
            .map(|p| (p.key(), p.labels.clone(), p.ips.clone(), p.node.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(from_json.cluster.pods.len(), PODS);
    assert_eq!(view(&from_json), view(&from_yaml));
    assert_eq!(from_json.object_counts, from_yaml.object_counts);
    let unknown: Vec<_> = from_json
        .diagnostics
        .iter()
        .filter(|d| d.message.contains("unknown field \"labelz\""))
        .filter_map(|d| d.location.as_ref().map(|l| (l.line, l.column)))
        .collect();
    assert_eq!(unknown.len(), PODS);
    let columns: std::collections::BTreeSet<usize> = unknown.iter().map(|(_, c)| *c).collect();
    assert_eq!(
        columns.len(),
        PODS,
        "each at its own column of the one line"
    );
    assert!(unknown.iter().all(|(line, _)| *line == 1));
}
