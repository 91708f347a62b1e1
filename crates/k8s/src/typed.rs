//! Typed deserialisation of one object with k8s-openapi, reporting wrong types at their span and
//! the unknown fields the typed structs would silently drop (kubectl's strict field validation).

use crate::codes;
use crate::document::{FieldPath, ObjectContext};
use crate::names::edit_distance;
use crate::yaml_tree::Segment;
use bulkhead_model::Diagnostic;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Deserialises the object; on type errors returns `None` and a diagnostic for each of them.
/// Unknown fields are reported but do not stop the object (the API server would reject it, yet
/// the user wants to see its other problems too).
///
/// serde stops at the first type error, so each error's value is taken out of the JSON and the
/// object deserialised again: fixing one error never reveals four more. A required field that
/// was taken out makes the next attempt fail with "missing field", which is not a mistake of
/// the user's: then the object holding it is taken out in turn, unreported.
pub fn deserialize<T: DeserializeOwned + Serialize>(
    ctx: &ObjectContext<'_>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<T> {
    let mut unknown = Vec::new();
    match crate::node_de::from_node::<T>(ctx.node, &mut unknown) {
        Ok(typed) => {
            // `status` is written by the server, never applied: a newer server may add fields.
            unknown.retain(|path| path.first() != Some(&Segment::Key("status".into())));
            report_unknown_paths(ctx, unknown, diagnostics);
            Some(typed)
        }
        Err(_) => deserialize_via_json(ctx, diagnostics),
    }
}

/// [`deserialize`] through JSON and a typed round trip, for a type with `#[serde(flatten)]`,
/// whose inner struct's unknown fields serde hides from the deserialiser. It is also the slow
/// path that reports type errors: serde stops at the first, so each error's value is taken out
/// and the object deserialised again.
pub fn deserialize_via_json<T: DeserializeOwned + Serialize>(
    ctx: &ObjectContext<'_>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<T> {
    /// Enough for any real object; bounds the work on a pathological one.
    const MAX_TYPE_ERRORS: usize = 50;
    let mut json = ctx.node.to_json();
    let mut reported: Vec<FieldPath> = Vec::new();
    let mut nulled: Vec<FieldPath> = Vec::new();
    let mut attempts = 0;
    let typed: T = loop {
        let e = match serde_path_to_error::deserialize::<_, T>(&json) {
            Ok(t) if reported.is_empty() => break t,
            Ok(t) => {
                report_unknown(ctx, &json, &t, diagnostics);
                return None;
            }
            Err(e) => e,
        };
        let path = FieldPath::from_segments(e.path().iter().filter_map(|s| match s {
            serde_path_to_error::Segment::Seq { index } => Some(Segment::Index(*index)),
            serde_path_to_error::Segment::Map { key } => Some(Segment::Key(key.clone().into())),
            _ => None,
        }));
        let inner = e.into_inner().to_string();
        let caused_by_us =
            inner.starts_with("missing field") && reported.iter().any(|r| r.is_child_of(&path));
        attempts += 1;
        if attempts > MAX_TYPE_ERRORS {
            return None;
        }
        if !caused_by_us && !reported.contains(&path) {
            let field = if path.is_empty() {
                String::new()
            } else {
                format!("{path}: ")
            };
            diagnostics.push(ctx.diagnostic(
                codes::WRONG_TYPE,
                &path,
                false,
                format!("{field}{inner}"),
            ));
            reported.push(path.clone());
        }
        // Take the value out: a map entry is removed, a list item nulled (keeping the indices
        // of later items true), and removed if null is not accepted either.
        let removed = if nulled.contains(&path) {
            remove_at(&mut json, &path.to_segments(), true)
        } else {
            nulled.push(path.clone());
            remove_at(&mut json, &path.to_segments(), false)
        };
        if !removed {
            return None;
        }
    };
    report_unknown(ctx, &json, &typed, diagnostics);
    Some(typed)
}

/// Removes the value at `path` (a map entry), or nulls it (a list item; removed when
/// `remove_items`). False when there is nothing to remove (the error is at the root).
fn remove_at(json: &mut serde_json::Value, path: &[Segment], remove_items: bool) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut here = json;
    for segment in parents {
        let next = match (segment, here) {
            (Segment::Key(k), serde_json::Value::Object(m)) => m.get_mut(k.as_ref()),
            (Segment::Index(i), serde_json::Value::Array(a)) => a.get_mut(*i),
            _ => None,
        };
        match next {
            Some(n) => here = n,
            None => return false,
        }
    }
    match (last, here) {
        (Segment::Key(k), serde_json::Value::Object(m)) => m.remove(k.as_ref()).is_some(),
        (Segment::Index(i), serde_json::Value::Array(a)) if *i < a.len() => {
            if remove_items {
                a.remove(*i);
            } else if a[*i].is_null() {
                return false;
            } else {
                a[*i] = serde_json::Value::Null;
            }
            true
        }
        _ => false,
    }
}

fn report_unknown<T: Serialize>(
    ctx: &ObjectContext<'_>,
    json: &serde_json::Value,
    typed: &T,
    diagnostics: &mut Vec<Diagnostic>,
) {
    if let Ok(round_trip) = serde_json::to_value(typed) {
        let mut unknown = Vec::new();
        find_unknown(json, &round_trip, &FieldPath::root(), &mut unknown);
        report_unknown_paths(ctx, unknown, diagnostics);
    }
}

fn report_unknown_paths(
    ctx: &ObjectContext<'_>,
    unknown: Vec<FieldPath>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    for path in unknown {
        let key = match path.last() {
            Some(Segment::Key(k)) => k.clone(),
            _ => continue,
        };
        let mut d = ctx.diagnostic(
            codes::UNKNOWN_FIELD,
            &path,
            true,
            format!("unknown field \"{key}\" at {path}"),
        );
        d.help = Some(match suggestion(&key) {
            Some(s) => format!("did you mean \"{s}\"? kubectl apply rejects unknown fields"),
            None => "remove it: kubectl apply rejects unknown fields".to_string(),
        });
        diagnostics.push(d);
    }
}

/// Keys present (and not null) in the input but absent after a typed round trip. `status` is
/// written by the server, never applied, so it is not checked: a newer server may add fields.
fn find_unknown(
    input: &serde_json::Value,
    typed: &serde_json::Value,
    path: &FieldPath,
    out: &mut Vec<FieldPath>,
) {
    match (input, typed) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in a {
                if v.is_null() || (path.is_empty() && k == "status") {
                    continue;
                }
                match b.get(k) {
                    Some(tv) => find_unknown(v, tv, &path.key_of(k), out),
                    None => out.push(path.key_of(k)),
                }
            }
        }
        (serde_json::Value::Array(a), serde_json::Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                find_unknown(x, y, &path.index(i), out);
            }
        }
        _ => {}
    }
}

/// Field names people mistype most, for the "did you mean" hint.
const KNOWN_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "spec",
    "status",
    "name",
    "namespace",
    "labels",
    "annotations",
    "podSelector",
    "namespaceSelector",
    "policyTypes",
    "ingress",
    "egress",
    "from",
    "to",
    "ports",
    "port",
    "endPort",
    "protocol",
    "ipBlock",
    "cidr",
    "except",
    "matchLabels",
    "matchExpressions",
    "key",
    "operator",
    "values",
    "containers",
    "initContainers",
    "containerPort",
    "hostNetwork",
    "nodeName",
    "serviceAccountName",
    "template",
    "selector",
    "replicas",
    "jobTemplate",
    "image",
    "items",
    "addresses",
    "podIP",
    "podIPs",
    "ownerReferences",
    "targetPort",
];

fn suggestion(key: &str) -> Option<&'static str> {
    KNOWN_FIELDS
        .iter()
        .map(|k| {
            let d = if k.eq_ignore_ascii_case(key) {
                0
            } else {
                edit_distance(&k.to_ascii_lowercase(), &key.to_ascii_lowercase())
            };
            (d, *k)
        })
        .filter(|(d, k)| *d <= 2.max(k.len() / 4) && *k != key)
        .min()
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Input;
    use crate::yaml_tree::parse_documents;

    /// The fast path (typed from the tree, unknown fields where serde skips a value) says what
    /// the JSON round trip says, on objects with unknown fields at every depth.
    #[test]
    fn the_tree_path_finds_the_unknown_fields_the_round_trip_finds() {
        let text = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a, namespace: x, labelz: {a: b}, annotations: {k: v}}
spec:
  podSelecter: {}
  podSelector: {matchLabels: {app: web}, matchLabel: {}}
  ingress:
  - from: [{podSelector: {}, ipBlok: {cidr: 10.0.0.0/8}}]
    ports: [{port: 80, protocl: TCP}, {port: http}]
  - {}
  egress: [{to: [], nothing: null}]
  policyTypes: [Ingress]
status: {whatever: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: p, ownerReferences: [{apiVersion: v1, kind: ReplicaSet, name: r, uid: u, controler: true}]}
spec:
  containers: [{name: c, image: i, ports: [{containerPort: 80, hostPrt: 1}]}]
  initContainers: [{name: i, resourcez: {}}]
status: {podIP: 10.0.0.1, podIPs: [{ip: 10.0.0.1, extra: x}], newField: 1}
"#;
        let input = Input::new("t.yaml", text.to_string());
        let docs = parse_documents(text);
        for (i, doc) in docs.into_iter().enumerate() {
            let root = doc.expect("parses").root.expect("root");
            let ctx = ObjectContext {
                input: &input,
                node: &root,
                resource: None,
            };
            let (mut fast, mut slow) = (Vec::new(), Vec::new());
            let found = if i == 0 {
                let a =
                    deserialize::<k8s_openapi::api::networking::v1::NetworkPolicy>(&ctx, &mut fast);
                let b = deserialize_via_json::<k8s_openapi::api::networking::v1::NetworkPolicy>(
                    &ctx, &mut slow,
                );
                (a.is_some(), b.is_some())
            } else {
                let a = deserialize::<k8s_openapi::api::core::v1::Pod>(&ctx, &mut fast);
                let b = deserialize_via_json::<k8s_openapi::api::core::v1::Pod>(&ctx, &mut slow);
                (a.is_some(), b.is_some())
            };
            assert_eq!(found, (true, true));
            let key = |d: &Diagnostic| (d.location.clone(), d.message.clone(), d.help.clone());
            let mut fast: Vec<_> = fast.iter().map(key).collect();
            let mut slow: Vec<_> = slow.iter().map(key).collect();
            fast.sort();
            slow.sort();
            assert!(fast.len() >= 3, "{fast:?}");
            assert_eq!(fast, slow);
        }
    }

    #[test]
    fn suggestions_catch_typos_but_not_unrelated_words() {
        assert_eq!(suggestion("podSelecter"), Some("podSelector"));
        assert_eq!(suggestion("policytypes"), Some("policyTypes"));
        assert_eq!(suggestion("endport"), Some("endPort"));
        assert_eq!(suggestion("frobnicate"), None);
    }
}
