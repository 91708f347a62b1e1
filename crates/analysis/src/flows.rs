//! Flow logs (design.md §6) and the audit of recorded flows against proposed policies: which
//! flows that really happened would the policies deny, and by which rule.
//!
//! One JSON object per line: `{"time", "src_ip", "src_port", "dst_ip", "dst_port", "protocol",
//! "src"?, "dst"?, "verdict"?, "policy"?, "rule"?, "packets"?, "bytes"?}`; other fields are
//! kept out of the way, so other producers' extra fields do not break reading.

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
        match serde_json::from_str::<FlowRecord>(line) {
            Ok(r) => records.push(r),
            Err(e) => bad.push(BadLine {
                line: i + 1,
                message: e.to_string(),
            }),
        }
    }
    (records, bad)
}

/// Recorded flows of one (source, destination, protocol, port) that the policies deny.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeniedFlow {
    /// Workload (`ns/kind/name`), `node:NAME` or the address.
    pub from: String,
    pub to: String,
    pub protocol: Protocol,
    pub port: Option<u16>,
    /// Records (or packets, when the records count them) seen.
    pub seen: u64,
    /// The deciding rules, per direction that denied: `egress: NetworkPolicy x/y (...)`.
    pub denied_by: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditReport {
    pub flows: usize,
    pub allowed: usize,
    /// Records the policies deny; `denied` groups them.
    pub denied_records: usize,
    pub denied: Vec<DeniedFlow>,
    /// Records naming a pod (`src`/`dst`) whose address the snapshot gives to nobody or to
    /// someone else: the snapshot is stale or the log is from another cluster.
    pub unknown: Vec<String>,
    /// Records whose protocol is not one the engine knows.
    pub unreadable: Vec<String>,
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

/// Replays `records` against the engine's policies.
pub fn audit(engine: &Engine<'_>, records: &[FlowRecord]) -> AuditReport {
    let mut report = AuditReport {
        flows: records.len(),
        ..AuditReport::default()
    };
    let cluster = engine.cluster();
    let mut denied: BTreeMap<(String, String, Protocol, Option<u16>), DeniedFlow> = BTreeMap::new();
    for r in records {
        let (src, dst) = (
            engine.endpoint_for_ip(r.src_ip),
            engine.endpoint_for_ip(r.dst_ip),
        );
        for (named, endpoint, ip) in [(&r.src, src, r.src_ip), (&r.dst, dst, r.dst_ip)] {
            if let Some(name) = named {
                let matches =
                    matches!(endpoint, Endpoint::Pod(i) if cluster.pods[i].key() == *name);
                if !matches {
                    report.unknown.push(format!(
                        "{name} ({ip}): the snapshot has {}",
                        match endpoint {
                            Endpoint::External(_) => "no pod with this address".to_string(),
                            other => format!("{} at this address", endpoint_name(engine, other)),
                        }
                    ));
                }
            }
        }
        let Ok(protocol) = r.protocol.parse::<Protocol>() else {
            report.unreadable.push(format!("protocol {:?}", r.protocol));
            continue;
        };
        let port = r.dst_port.filter(|_| protocol.has_ports());
        let verdict = engine.evaluate(&Flow {
            src,
            dst,
            protocol,
            port,
            icmp: None,
        });
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
                denied_by,
            });
        entry.seen += r.packets.unwrap_or(1).max(1);
    }
    report.unknown.sort();
    report.unknown.dedup();
    report.unreadable.sort();
    report.unreadable.dedup();
    report.denied = denied.into_values().collect();
    report
}
