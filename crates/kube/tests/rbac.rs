//! The shipped RBAC (`deploy/agent/rbac.yaml`) lets the agent read everything it watches: every
//! kind the agent reads, in every group that may serve it, and the break-glass ConfigMap in
//! its namespace. A kind added to the agent without its grant would leave the agent waiting
//! for a first list it is forbidden to make.

use bulkhead_kube::{BREAK_GLASS, WANTED};
use kube::api::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::Value;

fn documents() -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/agent/rbac.yaml");
    let text = std::fs::read_to_string(path).expect("deploy/agent/rbac.yaml");
    bulkhead_k8s::yaml_tree::parse_documents(&text)
        .into_iter()
        .map(|d| d.expect("parses").root.expect("not empty").to_json())
        .collect()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Whether `role`'s rules grant get, list and watch of `plural` in `group`.
fn reads(role: &Value, group: &str, plural: &str) -> bool {
    role["rules"].as_array().into_iter().flatten().any(|rule| {
        let verbs = strings(&rule["verbs"]);
        strings(&rule["apiGroups"]).contains(&group)
            && strings(&rule["resources"]).contains(&plural)
            && ["get", "list", "watch"].iter().all(|v| verbs.contains(v))
    })
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("deploy/agent/rbac.yaml has no {kind} {name}"))
}

fn bound_to_agent(docs: &[Value], binding_kind: &str, role_kind: &str, role: &str) -> bool {
    docs.iter().any(|d| {
        d["kind"] == binding_kind
            && d["roleRef"]["kind"] == role_kind
            && d["roleRef"]["name"] == role
            && d["subjects"].as_array().into_iter().flatten().any(|s| {
                s["kind"] == "ServiceAccount"
                    && s["name"] == "bulkhead-agent"
                    && s["namespace"] == "bulkhead-system"
            })
    })
}

#[test]
fn the_deployed_roles_let_the_agent_read_what_it_watches() {
    let docs = documents();
    let cluster_role = find(&docs, "ClusterRole", "bulkhead-agent");
    assert!(bound_to_agent(
        &docs,
        "ClusterRoleBinding",
        "ClusterRole",
        "bulkhead-agent"
    ));
    let mut checked = 0;
    for wanted in WANTED.iter().filter(|w| w.agent) {
        for group in wanted.groups {
            let plural =
                ApiResource::from_gvk(&GroupVersionKind::gvk(group, "v1", wanted.kind)).plural;
            assert!(
                reads(cluster_role, group, &plural),
                "the agent watches {plural} in group {group:?}, the ClusterRole does not grant it"
            );
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} grants checked");
    let (namespace, _) = BREAK_GLASS;
    let role = find(&docs, "Role", "bulkhead-agent-break-glass");
    assert_eq!(role["metadata"]["namespace"], namespace);
    assert!(reads(role, "", "configmaps"));
    assert!(bound_to_agent(
        &docs,
        "RoleBinding",
        "Role",
        "bulkhead-agent-break-glass"
    ));
    // Read-only, but for the Events of automated rollback: no other write in the shipped roles.
    let mut creates_events = false;
    for role in [cluster_role, role] {
        for rule in role["rules"].as_array().into_iter().flatten() {
            let events_only =
                strings(&rule["apiGroups"]) == [""] && strings(&rule["resources"]) == ["events"];
            for verb in strings(&rule["verbs"]) {
                if events_only && verb == "create" {
                    creates_events = true;
                    continue;
                }
                assert!(["get", "list", "watch"].contains(&verb), "{verb} in {rule}");
            }
        }
    }
    assert!(
        creates_events,
        "the agent may create the Events of a rollback"
    );
}
