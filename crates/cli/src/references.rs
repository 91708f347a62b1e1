//! References as kubectl users type them: `-n shop` with `web`, `deployment/web` or
//! `statefulset/db`, and named ports (`--port http`). The engine resolves the full forms; this
//! module only turns a short form into one.

use anyhow::bail;
use bulkhead_engine::Engine;
use bulkhead_model::Protocol;

/// Words kubectl accepts for the workload kinds (`kubectl get deploy/web`).
fn kind_word(word: &str) -> Option<&'static str> {
    Some(match word.to_ascii_lowercase().as_str() {
        "pod" | "pods" | "po" => "pod",
        "deployment" | "deployments" | "deploy" => "deployment",
        "statefulset" | "statefulsets" | "sts" => "statefulset",
        "daemonset" | "daemonsets" | "ds" => "daemonset",
        "replicaset" | "replicasets" | "rs" => "replicaset",
        "job" | "jobs" => "job",
        "cronjob" | "cronjobs" | "cj" => "cronjob",
        _ => return None,
    })
}

fn is_address_or_node(reference: &str) -> bool {
    reference.starts_with("node:")
        || reference.starts_with("ip:")
        || reference.parse::<std::net::IpAddr>().is_ok()
}

/// The full form of a reference to one endpoint (`explain`): `web` with `-n shop` is
/// `shop/web` (or `shop/deployment/web` when only a workload has that name), and
/// `deploy/web` is `shop/deployment/web`. Without `-n`, kubectl's namespace `default`.
pub fn endpoint(engine: &Engine<'_>, reference: &str, namespace: Option<&str>) -> String {
    if is_address_or_node(reference) {
        return reference.to_string();
    }
    let ns = namespace.unwrap_or("default");
    match reference.split('/').collect::<Vec<_>>().as_slice() {
        [name] => qualify_name(engine, ns, name),
        [kind, name] if namespace.is_some() || !has_namespace(engine, kind) => {
            match kind_word(kind) {
                Some("pod") => format!("{ns}/{name}"),
                Some(kind) => format!("{ns}/{kind}/{name}"),
                None => reference.to_string(),
            }
        }
        [ns, kind, name] => match kind_word(kind) {
            Some("pod") => format!("{ns}/{name}"),
            Some(kind) => format!("{ns}/{kind}/{name}"),
            None => reference.to_string(),
        },
        _ => reference.to_string(),
    }
}

/// The full form of a `map --from/--to` selection: a bare word is a namespace, as before,
/// unless `-n` is given, which makes it a pod or workload of that namespace (kubectl's habit).
pub fn selection(engine: &Engine<'_>, reference: &str, namespace: Option<&str>) -> String {
    match (reference.contains('/'), namespace) {
        (false, None) => reference.to_string(),
        _ => endpoint(engine, reference, namespace),
    }
}

fn has_namespace(engine: &Engine<'_>, name: &str) -> bool {
    engine.cluster().namespace(name).is_some()
}

fn qualify_name(engine: &Engine<'_>, ns: &str, name: &str) -> String {
    let pods = &engine.cluster().pods;
    if pods.iter().any(|p| p.namespace == ns && p.name == name) {
        return format!("{ns}/{name}");
    }
    match pods
        .iter()
        .find(|p| p.namespace == ns && p.workload.name == name && p.workload.kind != "pod")
    {
        Some(p) => format!("{ns}/{}/{name}", p.workload.kind),
        None => format!("{ns}/{name}"),
    }
}

/// A `--port` value: a number, or a name the given destination pods declare for the
/// protocol. A name that means different numbers on different pods is an error.
pub fn port(
    engine: &Engine<'_>,
    value: &str,
    destinations: &[usize],
    protocol: Protocol,
) -> anyhow::Result<u16> {
    if let Ok(number) = value.parse::<u16>() {
        if number == 0 {
            bail!("--port must be between 1 and 65535");
        }
        return Ok(number);
    }
    if value.chars().all(|c| c.is_ascii_digit()) {
        bail!("--port {value}: must be between 1 and 65535");
    }
    let pods = &engine.cluster().pods;
    let mut numbers: Vec<u16> = destinations
        .iter()
        .filter_map(|&i| pods[i].named_port(value, protocol))
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    match numbers.as_slice() {
        [one] => Ok(*one),
        [] => {
            let declared: Vec<String> = destinations
                .iter()
                .flat_map(|&i| pods[i].ports.iter())
                .filter_map(|p| {
                    p.name
                        .as_ref()
                        .map(|n| format!("{n} ({}/{})", p.protocol, p.port))
                })
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            bail!(
                "--port {value}: no destination pod declares a {protocol} port named {value:?}{}",
                if declared.is_empty() {
                    String::new()
                } else {
                    format!("; declared: {}", declared.join(", "))
                }
            )
        }
        many => bail!(
            "--port {value}: the destination pods declare {value:?} as different ports ({}); give the number",
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
