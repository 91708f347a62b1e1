//! Flow logs (design.md §6) and the audit of recorded flows against proposed policies: which
//! flows that really happened would the policies deny, and by which rule.
//!
//! One JSON object per line: `{"time", "src_ip", "src_port", "dst_ip", "dst_port", "protocol",
//! "src"?, "dst"?, "verdict"?, "policy"?, "rule"?, "packets"?, "bytes"?}`; other fields are
//! kept out of the way, so other producers' extra fields do not break reading. Cilium Hubble
//! flows (`hubble observe -o json`, or its exporter's `{"flow": ...}` lines) are recognised
//! line by line and read into the same record.

use bulkhead_engine::{Endpoint, Engine, Flow};
use bulkhead_model::Protocol;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// Seconds since the Unix epoch (Bulkhead's agent), or the producer's own timestamp text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<serde_json::Value>,
    pub src_ip: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_port: Option<u16>,
    pub dst_ip: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_port: Option<u16>,
    /// `TCP`, `UDP`, `SCTP`, `ICMP`, `ICMPv6` or a protocol number.
    pub protocol: String,
    /// `ns/pod`, when the producer knew it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<String>,
    /// `allow`, `deny` or `would-deny`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// A line that is not a flow record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine {
    pub line: usize,
    pub message: String,
}

/// Reads JSON lines; blank lines and `#` comments are skipped, every other bad line reported.
pub fn parse(text: &str) -> (Vec<FlowRecord>, Vec<BadLine>) {
    let (mut records, mut bad) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = serde_json::from_str::<serde_json::Value>(line)
            .map_err(|e| e.to_string())
            .and_then(|v| {
                if v.get("src_ip").is_some() {
                    serde_json::from_value::<FlowRecord>(v)
                        .map(Some)
                        .map_err(|e| e.to_string())
                } else if v.get("flow").is_some() || v.get("IP").is_some() {
                    from_hubble(&v)
                } else {
                    Err("neither a Bulkhead flow record (src_ip, dst_ip, ...) nor a Hubble flow (IP, l4, ...)".to_string())
                }
            });
        match parsed {
            Ok(Some(r)) => records.push(r),
            Ok(None) => {}
            Err(message) => bad.push(BadLine {
                line: i + 1,
                message,
            }),
        }
    }
    (records, bad)
}

/// A Cilium Hubble flow (`hubble observe -o json`, or the exporter's `{"flow": ...}` lines).
/// Replies are not flows of their own and are skipped (`Ok(None)`), as are non-IP events.
fn from_hubble(v: &serde_json::Value) -> Result<Option<FlowRecord>, String> {
    let flow = v.get("flow").unwrap_or(v);
    if flow["is_reply"].as_bool() == Some(true) {
        return Ok(None);
    }
    let Some(ip) = flow.get("IP") else {
        return Ok(None);
    };
    let address = |side: &str| -> Result<IpAddr, String> {
        ip[side]
            .as_str()
            .ok_or_else(|| format!("Hubble flow without IP.{side}"))?
            .parse()
            .map_err(|e| format!("IP.{side}: {e}"))
    };
    let (src_ip, dst_ip) = (address("source")?, address("destination")?);
    let l4 = flow["l4"].as_object().and_then(|m| m.iter().next());
    let (protocol, src_port, dst_port) = match l4 {
        Some((name, body)) => {
            let port = |k: &str| body[k].as_u64().and_then(|p| u16::try_from(p).ok());
            // A SYN-ACK answers a connection; the SYN already stands for it.
            if body["flags"]["SYN"].as_bool() == Some(true)
                && body["flags"]["ACK"].as_bool() == Some(true)
            {
                return Ok(None);
            }
            let protocol = match name.as_str() {
                "ICMPv4" => "ICMP".to_string(),
                other => other.to_string(),
            };
            (protocol, port("source_port"), port("destination_port"))
        }
        None => return Ok(None),
    };
    let pod = |side: &str| {
        let e = &flow[side];
        match (e["namespace"].as_str(), e["pod_name"].as_str()) {
            (Some(ns), Some(name)) if !ns.is_empty() && !name.is_empty() => {
                Some(format!("{ns}/{name}"))
            }
            _ => None,
        }
    };
    let verdict = flow["verdict"].as_str().map(|v| match v {
        "FORWARDED" => "allow".to_string(),
        "DROPPED" => "deny".to_string(),
        "AUDIT" => "would-deny".to_string(),
        other => other.to_ascii_lowercase(),
    });
    Ok(Some(FlowRecord {
        time: flow.get("time").cloned(),
        src_ip,
        src_port,
        dst_ip,
        dst_port,
        protocol,
        src: pod("source"),
        dst: pod("destination"),
        verdict,
        policy: None,
        rule: None,
        packets: None,
        bytes: None,
    }))
}

/// Recorded flows of one (source, destination, protocol, port) that the policies deny.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeniedFlow {
    /// Workload (`ns/kind/name`), `node:NAME` or the address.
    pub from: String,
    pub to: String,
    #[serde(serialize_with = "protocol_text")]
    pub protocol: Protocol,
    pub port: Option<u16>,
    /// Records (or packets, when the records count them) seen.
    pub seen: u64,
    /// The first and last record time, as the records give it.
    pub first_seen: Option<serde_json::Value>,
    pub last_seen: Option<serde_json::Value>,
    /// The deciding rules, per direction that denied: `egress: NetworkPolicy x/y (...)`.
    pub denied_by: Vec<String>,
}

fn protocol_text<S: serde::Serializer>(p: &Protocol, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string())
}

/// Records whose endpoints name something the snapshot does not have, grouped by the reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unresolved {
    pub reason: String,
    pub records: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    pub flows: usize,
    pub allowed: usize,
    /// Records the policies deny; `denied` groups them.
    pub denied_records: usize,
    pub denied: Vec<DeniedFlow>,
    /// Records that name a pod the snapshot does not have (stale snapshot, another cluster):
    /// not evaluated, and never counted as allowed.
    pub unresolved: Vec<Unresolved>,
    pub unresolved_records: usize,
    /// Records whose protocol is not one the engine knows.
    pub unreadable: Vec<String>,
    /// Allow rules no recorded flow was allowed by: candidates to narrow or delete.
    pub unused_rules: Vec<String>,
}

fn endpoint_name(engine: &Engine<'_>, endpoint: Endpoint) -> String {
    let cluster = engine.cluster();
    match endpoint {
        Endpoint::Pod(i) => {
            let p = &cluster.pods[i];
            format!("{}/{}", p.namespace, p.workload)
        }
        Endpoint::Node(i) => format!("node:{}", cluster.nodes[i].name),
        Endpoint::External(ip) => ip.to_string(),
    }
}

/// The endpoint a record's side stands for. A pod name (`ns/pod`) is the exact pod, else its
/// owner: `web-5d8f7c9b4-x7k2p` and Calico's aggregated `web-5d8f7c9b4-*` are Deployment
/// `web`, `db-0` is StatefulSet `db` (so live names match templates from Git); `ns/kind/name`
/// is that workload. Without a name the address decides: a pod's, a node's, or outside.
pub fn resolve(engine: &Engine<'_>, name: Option<&str>, ip: IpAddr) -> Result<Endpoint, String> {
    let Some(name) = name.map(str::trim).filter(|n| !n.is_empty() && *n != "-") else {
        return Ok(engine.endpoint_for_ip(ip));
    };
    let cluster = engine.cluster();
    let pods = engine.pod_endpoints();
    let parts: Vec<&str> = name.split('/').collect();
    let found = match parts.as_slice() {
        [ns, pod] => {
            let pod = pod.trim_end_matches("-*").trim_end_matches('*');
            let exact = pods
                .iter()
                .copied()
                .find(|&i| cluster.pods[i].namespace == *ns && cluster.pods[i].name == pod);
            exact
                .or_else(|| {
                    // Owners by the controllers' naming: drop one or two generated segments.
                    let mut candidates = vec![pod.to_string()];
                    let segments: Vec<&str> = pod.split('-').collect();
                    for drop in 1..=2 {
                        if segments.len() > drop {
                            candidates.push(segments[..segments.len() - drop].join("-"));
                        }
                    }
                    candidates.iter().find_map(|owner| {
                        pods.iter().copied().find(|&i| {
                            let p = &cluster.pods[i];
                            p.namespace == *ns
                                && p.workload.kind != "pod"
                                && p.workload.name == *owner
                        })
                    })
                })
                .or_else(|| {
                    engine
                        .pods_for(&format!("{ns}/{pod}"))
                        .ok()
                        .and_then(|p| p.first().copied())
                })
        }
        [_, _, _] => engine.pods_for(name).ok().and_then(|p| p.first().copied()),
        _ => None,
    };
    // A name the snapshot does not have is not guessed from the address: the address may
    // belong to another pod by now (a stale snapshot), and a guess could read as "allowed".
    found
        .map(Endpoint::Pod)
        .ok_or_else(|| format!("{name} ({ip}): no such pod or workload in the snapshot"))
}

/// Replays `records` against the engine's policies.
pub fn audit(engine: &Engine<'_>, records: &[FlowRecord]) -> AuditReport {
    let mut report = AuditReport {
        flows: records.len(),
        ..AuditReport::default()
    };
    let mut denied: BTreeMap<(String, String, Protocol, Option<u16>), DeniedFlow> = BTreeMap::new();
    let mut unresolved: BTreeMap<String, u64> = BTreeMap::new();
    let mut used_rules: std::collections::BTreeSet<String> = Default::default();
    // Records repeat: one verdict per distinct (src, dst, protocol, port).
    let mut verdicts: std::collections::HashMap<
        (Endpoint, Endpoint, Protocol, Option<u16>),
        bulkhead_engine::Verdict,
    > = Default::default();
    for r in records {
        let (src, dst) = match (
            resolve(engine, r.src.as_deref(), r.src_ip),
            resolve(engine, r.dst.as_deref(), r.dst_ip),
        ) {
            (Ok(s), Ok(d)) => (s, d),
            (Err(e), _) | (_, Err(e)) => {
                *unresolved.entry(e).or_default() += 1;
                report.unresolved_records += 1;
                continue;
            }
        };
        let Ok(protocol) = r.protocol.parse::<Protocol>() else {
            report.unreadable.push(format!("protocol {:?}", r.protocol));
            continue;
        };
        let port = r.dst_port.filter(|_| protocol.has_ports());
        let verdict = verdicts
            .entry((src, dst, protocol, port))
            .or_insert_with(|| {
                engine.evaluate(&Flow {
                    src,
                    dst,
                    protocol,
                    port,
                    icmp: None,
                })
            })
            .clone();
        for half in [&verdict.egress, &verdict.ingress] {
            for d in &half.decided_by {
                if let Some(rule) = &d.rule {
                    used_rules.insert(rule_key(d.kind, d.namespace.as_deref(), &d.name, rule));
                }
            }
        }
        if verdict.allowed {
            report.allowed += 1;
            continue;
        }
        report.denied_records += 1;
        let mut denied_by = Vec::new();
        for half in [&verdict.egress, &verdict.ingress] {
            if half.allowed {
                continue;
            }
            let rule = half
                .decided_by
                .last()
                .map(|d| {
                    format!(
                        "{} {}{}",
                        d.kind,
                        d.namespace
                            .as_ref()
                            .map(|n| format!("{n}/"))
                            .unwrap_or_default(),
                        d.name
                    ) + &d.rule.as_ref().map(|r| format!(" {r}")).unwrap_or_default()
                })
                .unwrap_or_else(|| "no rule".to_string());
            denied_by.push(format!(
                "{}: {rule} ({})",
                half.direction,
                half.reason.code()
            ));
        }
        let (from, to) = (endpoint_name(engine, src), endpoint_name(engine, dst));
        let entry = denied
            .entry((from.clone(), to.clone(), protocol, port))
            .or_insert_with(|| DeniedFlow {
                from,
                to,
                protocol,
                port,
                seen: 0,
                first_seen: r.time.clone(),
                last_seen: None,
                denied_by,
            });
        entry.seen += r.packets.unwrap_or(1).max(1);
        entry.last_seen.clone_from(&r.time);
    }
    report.unresolved = unresolved
        .into_iter()
        .map(|(reason, records)| Unresolved { reason, records })
        .collect();
    report.unreadable.sort();
    report.unreadable.dedup();
    report.denied = denied.into_values().collect();
    report.unused_rules = allow_rules(engine)
        .into_iter()
        .filter(|r| !used_rules.contains(r))
        .collect();
    report
}

fn rule_key(kind: &str, namespace: Option<&str>, name: &str, rule: &str) -> String {
    match namespace {
        Some(ns) => format!("{kind} {ns}/{name} {rule}"),
        None => format!("{kind} {name} {rule}"),
    }
}

/// Every allow rule of the snapshot, named as explanations name them.
fn allow_rules(engine: &Engine<'_>) -> Vec<String> {
    use bulkhead_model::{Action, Direction};
    let cluster = engine.cluster();
    let mut out = Vec::new();
    for p in &cluster.network_policies {
        for d in [Direction::Ingress, Direction::Egress] {
            for i in 0..p.rules(d).len() {
                out.push(rule_key(
                    "NetworkPolicy",
                    Some(&p.namespace),
                    &p.name,
                    &format!("{d}[{i}]"),
                ));
            }
        }
    }
    for p in cluster
        .tiered_policies
        .iter()
        .filter(|p| p.staged.is_none())
    {
        let kind = match p.kind {
            bulkhead_model::TieredKind::CalicoNetworkPolicy => "NetworkPolicy",
            other => other.as_str(),
        };
        for d in [Direction::Ingress, Direction::Egress] {
            for (i, r) in p.rules(d).iter().enumerate() {
                if r.action == Action::Allow {
                    out.push(rule_key(
                        kind,
                        p.namespace.as_deref(),
                        &p.name,
                        &format!("{d}[{i}]"),
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hubble_flows_are_read_and_replies_skipped() {
        let text = concat!(
            r#"{"flow":{"time":"2023-08-21T12:12:18.510175415Z","verdict":"DROPPED","IP":{"source":"10.244.1.60","destination":"10.244.1.5","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":44916,"destination_port":80,"flags":{"SYN":true}}},"source":{"namespace":"default","pod_name":"xwing"},"destination":{"namespace":"default","pod_name":"deathstar-7848d6c4d5-th9v2"},"drop_reason_desc":"POLICY_DENIED"},"node_name":"kind-worker"}"#,
            "\n",
            r#"{"time":"1970-01-01T00:20:34.567800Z","verdict":"FORWARDED","IP":{"source":"1.1.1.1","destination":"2.2.2.2"},"l4":{"UDP":{"source_port":31793,"destination_port":53}},"Type":"L3_L4"}"#,
            "\n",
            r#"{"flow":{"verdict":"FORWARDED","IP":{"source":"10.0.1.13","destination":"10.0.1.178"},"l4":{"TCP":{"source_port":8080,"destination_port":60778,"flags":{"ACK":true}}},"is_reply":true}}"#,
            "\n",
            r#"{"flow":{"verdict":"DROPPED","IP":{"source":"fe80::1","destination":"ff02::2"},"l4":{"ICMPv6":{"type":133}}}}"#,
            "\n",
            r#"{"something":"else"}"#,
            "\n",
        );
        let (records, bad) = parse(text);
        assert_eq!(records.len(), 3, "{records:#?}");
        let first = &records[0];
        assert_eq!(first.src_ip, "10.244.1.60".parse::<IpAddr>().expect("ip"));
        assert_eq!(
            (first.protocol.as_str(), first.src_port, first.dst_port),
            ("TCP", Some(44916), Some(80))
        );
        assert_eq!(first.src.as_deref(), Some("default/xwing"));
        assert_eq!(first.verdict.as_deref(), Some("deny"));
        assert_eq!(
            (records[1].protocol.as_str(), records[1].dst_port),
            ("UDP", Some(53))
        );
        assert_eq!(records[1].verdict.as_deref(), Some("allow"));
        assert_eq!(records[2].protocol, "ICMPv6");
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 5);
    }

    #[test]
    fn bulkhead_records_are_read_and_comments_skipped() {
        let (records, bad) = parse(
            "# recorded\n{\"src_ip\": \"10.0.0.1\", \"dst_ip\": \"10.0.0.2\", \"dst_port\": 80, \"protocol\": \"TCP\", \"extra\": 1}\n\nnot json\n",
        );
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].dst_port, Some(80));
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 4);
    }
}
