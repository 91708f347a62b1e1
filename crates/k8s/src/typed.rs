//! Typed deserialisation of one object with k8s-openapi, reporting wrong types at their span and
//! the unknown fields the typed structs would silently drop (kubectl's strict field validation).

use crate::codes;
use crate::document::{FieldPath, ObjectContext};
use crate::names::edit_distance;
use crate::yaml_tree::Segment;
use bulkhead_model::Diagnostic;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Deserialises the object; on a type error returns `None` and the diagnostic. Unknown fields are
/// reported but do not stop the object (the API server would reject it, yet the user wants to
/// see its other problems too).
pub fn deserialize<T: DeserializeOwned + Serialize>(
    ctx: &ObjectContext<'_>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<T> {
    let json = ctx.node.to_json();
    let typed: T = match serde_path_to_error::deserialize(&json) {
        Ok(t) => t,
        Err(e) => {
            let path = FieldPath(
                e.path()
                    .iter()
                    .filter_map(|s| match s {
                        serde_path_to_error::Segment::Seq { index } => Some(Segment::Index(*index)),
                        serde_path_to_error::Segment::Map { key } => {
                            Some(Segment::Key(key.clone()))
                        }
                        _ => None,
                    })
                    .collect(),
            );
            let inner = e.into_inner().to_string();
            let field = if path.0.is_empty() {
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
            return None;
        }
    };
    if let Ok(round_trip) = serde_json::to_value(&typed) {
        let mut unknown = Vec::new();
        find_unknown(&json, &round_trip, &FieldPath::root(), &mut unknown);
        for path in unknown {
            let key = match path.0.last() {
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
    Some(typed)
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
                if v.is_null() || (path.0.is_empty() && k == "status") {
                    continue;
                }
                match b.get(k) {
                    Some(tv) => find_unknown(v, tv, &path.key(k), out),
                    None => out.push(path.key(k)),
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

    #[test]
    fn suggestions_catch_typos_but_not_unrelated_words() {
        assert_eq!(suggestion("podSelecter"), Some("podSelector"));
        assert_eq!(suggestion("policytypes"), Some("policyTypes"));
        assert_eq!(suggestion("endport"), Some("endPort"));
        assert_eq!(suggestion("frobnicate"), None);
    }
}
