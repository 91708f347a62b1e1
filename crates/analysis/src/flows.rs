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
    /// Absent in logs that name endpoints only (Calico's Goldmane/Whisker flows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_port: Option<u16>,
    /// `TCP`, `UDP`, `SCTP`, `ICMP`, `ICMPv6` or a protocol number.
    pub protocol: String,
    /// `ns/pod`, when the producer knew it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<String>,
    /// `allow`, `deny`, `would-deny` or `would-allow`.
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
    /// The last record's time, when records of one flow were merged ([`Aggregator`]).
    #[serde(skip)]
    pub last_time: Option<serde_json::Value>,
    /// How many records were merged into this one (0 and 1: one).
    #[serde(skip)]
    pub merged: u64,
}

/// A line that is not a flow record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine {
    pub line: usize,
    pub message: String,
}

/// One JSON line of any format Bulkhead reads, recognised by its fields: Bulkhead's own
/// (`src_ip`, including the agent's `WOULD-DENY` records), Cilium Hubble's (`IP`, or
/// `{"flow": ...}`), Calico Enterprise's (`source_ip`/`dest_ip` with names) and Calico Open
/// Source's Goldmane/Whisker flows (`source_name`, `dest_name`, no addresses). `Ok(None)` for
/// blank lines, comments and records that are not flows of their own (replies).
pub fn parse_json_line(line: &str) -> Result<Option<FlowRecord>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let v = serde_json::from_str::<serde_json::Value>(line).map_err(|e| e.to_string())?;
    if v.get("src_ip").is_some() {
        serde_json::from_value::<FlowRecord>(v)
            .map(Some)
            .map_err(|e| e.to_string())
    } else if v.get("flow").is_some() || v.get("IP").is_some() {
        from_hubble(&v)
    } else if v.get("source_name").is_some()
        || v.get("dest_name").is_some()
        || v.get("source_ip").is_some()
    {
        from_calico(&v).map(Some)
    } else {
        Err("not a flow record of a known format: Bulkhead (src_ip, dst_ip, ...), Hubble (IP, l4, ...), Calico (source_name, dest_name, ...)".to_string())
    }
}

/// A Calico flow log record: Calico Enterprise's (Elasticsearch JSON: `source_ip`, `dest_ip`
/// (null when aggregated), `*_name`, `*_namespace`, `*_type`, `dest_port`, `proto`, `action`,
/// `start_time`, `num_flows`) or Calico Open Source's Goldmane/Whisker flow (`source_name`,
/// `source_namespace`, `source_type`, `dest_*`, `proto`, `action`, `start_time`,
/// `num_connections_started`), as `../shared/dataplane.md` §2.1 documents them.
fn from_calico(v: &serde_json::Value) -> Result<FlowRecord, String> {
    let text = |k: &str| v.get(k).and_then(serde_json::Value::as_str).map(str::trim);
    let ip = |k: &str| -> Result<Option<IpAddr>, String> {
        match text(k) {
            None | Some("" | "-") => Ok(None),
            Some(t) => t.parse().map(Some).map_err(|e| format!("{k}: {e}")),
        }
    };
    // A workload endpoint is named `namespace/name` (aggregated names end in `-*`); a network
    // (`pub`, `pvt`) or host endpoint has no pod name to resolve.
    let name = |side: &str| -> Option<String> {
        let kind = text(&format!("{side}_type")).unwrap_or("wep");
        let ns = text(&format!("{side}_namespace")).filter(|n| !n.is_empty() && *n != "-");
        let name = text(&format!("{side}_name"))
            .or_else(|| text(&format!("{side}_name_aggr")))
            .filter(|n| !n.is_empty() && *n != "-");
        match (kind, ns, name) {
            ("wep" | "WorkloadEndpoint" | "workload_endpoint", Some(ns), Some(name)) => {
                Some(format!("{ns}/{name}"))
            }
            (_, _, Some(name)) if matches!(name, "pub" | "pvt") => Some(format!("network:{name}")),
            _ => None,
        }
    };
    let protocol = match v.get("proto") {
        Some(serde_json::Value::String(p)) => p.to_ascii_uppercase(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => return Err("a Calico flow without proto".to_string()),
    };
    let dst_port = match v.get("dest_port") {
        Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
        Some(serde_json::Value::String(p)) => p.parse().ok(),
        _ => None,
    };
    let count = ["num_flows", "num_connections_started", "num_flows_started"]
        .iter()
        .find_map(|k| v.get(*k).and_then(serde_json::Value::as_u64))
        .filter(|n| *n > 0);
    let (src_ip, dst_ip) = (ip("source_ip")?, ip("dest_ip")?);
    // A network endpoint's name is only its aggregate (`pub`, `pvt`): its address, when the
    // record has it, is what decides.
    let named = |side: &str, address: Option<IpAddr>| match name(side) {
        Some(n) if n.starts_with("network:") && address.is_some() => None,
        other => other,
    };
    let (src, dst) = (named("source", src_ip), named("dest", dst_ip));
    if (src_ip.is_none() && src.is_none()) || (dst_ip.is_none() && dst.is_none()) {
        return Err(
            "a Calico flow with neither an address nor a workload name on one side".to_string(),
        );
    }
    Ok(FlowRecord {
        time: v.get("start_time").cloned(),
        src_ip,
        src_port: None,
        dst_ip,
        dst_port,
        protocol,
        src,
        dst,
        verdict: text("action").map(str::to_ascii_lowercase),
        policy: None,
        rule: None,
        packets: count,
        bytes: None,
        last_time: None,
        merged: 0,
    })
}

/// Reads a CSV flow log with a header line. Columns are found by name (any of Bulkhead's,
/// Calico's or common spellings): `src_ip|source_ip|srcIP`, `dst_ip|dest_ip|dstIP`,
/// `dst_port|dest_port|dstPort`, `protocol|proto`, `src|source|src_pod`, `dst|dest|dst_pod`,
/// `time|start_time|startTime`, `packets|count|num_flows`. Bad rows are reported by line.
pub fn parse_csv(
    reader: impl std::io::Read,
    mut on_record: impl FnMut(FlowRecord),
    mut on_bad: impl FnMut(BadLine),
) {
    let mut csv = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(reader);
    let headers = match csv.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            on_bad(BadLine {
                line: 1,
                message: format!("no CSV header: {e}"),
            });
            return;
        }
    };
    let column = |names: &[&str]| {
        headers
            .iter()
            .position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)))
    };
    let src_ip = column(&["src_ip", "source_ip", "srcIP", "src_addr"]);
    let dst_ip = column(&["dst_ip", "dest_ip", "dstIP", "dst_addr"]);
    let dst_port = column(&["dst_port", "dest_port", "dstPort"]);
    let protocol = column(&["protocol", "proto"]);
    let src = column(&["src", "source", "src_pod"]);
    let dst = column(&["dst", "dest", "dst_pod"]);
    let time = column(&["time", "start_time", "startTime"]);
    let packets = column(&["packets", "count", "num_flows"]);
    if protocol.is_none()
        || (src_ip.is_none() && src.is_none())
        || (dst_ip.is_none() && dst.is_none())
    {
        on_bad(BadLine {
            line: 1,
            message: format!(
                "the CSV header names no protocol or no source/destination column: {:?}",
                headers.iter().collect::<Vec<_>>()
            ),
        });
        return;
    }
    for row in csv.records() {
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                let line = e
                    .position()
                    .map_or(0, |p| usize::try_from(p.line()).unwrap_or(0));
                on_bad(BadLine {
                    line,
                    message: e.to_string(),
                });
                continue;
            }
        };
        let line = row
            .position()
            .map_or(0, |p| usize::try_from(p.line()).unwrap_or(0));
        let field = |c: Option<usize>| {
            c.and_then(|c| row.get(c))
                .map(str::trim)
                .filter(|f| !f.is_empty() && *f != "-")
        };
        let parse_ip = |c: Option<usize>, what: &str| -> Result<Option<IpAddr>, String> {
            field(c)
                .map(|t| t.parse().map_err(|e| format!("{what} {t:?}: {e}")))
                .transpose()
        };
        let record = (|| -> Result<FlowRecord, String> {
            let dst_port = field(dst_port)
                .map(|p| p.parse::<u16>().map_err(|e| format!("dst_port {p:?}: {e}")))
                .transpose()?;
            Ok(FlowRecord {
                time: field(time).map(|t| serde_json::Value::String(t.to_string())),
                src_ip: parse_ip(src_ip, "src_ip")?,
                src_port: None,
                dst_ip: parse_ip(dst_ip, "dst_ip")?,
                dst_port,
                protocol: field(protocol).ok_or("no protocol")?.to_string(),
                src: field(src).map(str::to_string),
                dst: field(dst).map(str::to_string),
                verdict: None,
                policy: None,
                rule: None,
                packets: field(packets).and_then(|p| p.parse().ok()),
                bytes: None,
                last_time: None,
                merged: 0,
            })
        })();
        match record {
            Ok(r) if r.src_ip.is_some() || r.src.is_some() => on_record(r),
            Ok(_) => on_bad(BadLine {
                line,
                message: "no source address or name".into(),
            }),
            Err(message) => on_bad(BadLine { line, message }),
        }
    }
}

/// A flow's identity with names interned: hashing it allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FlowKey {
    src: Option<u32>,
    src_ip: Option<IpAddr>,
    dst: Option<u32>,
    dst_ip: Option<IpAddr>,
    protocol: u32,
    port: Option<u16>,
}

/// Bulkhead's own record, borrowed from the line: the fast path for the common format.
#[derive(Deserialize)]
struct Borrowed<'a> {
    #[serde(default)]
    time: Option<serde_json::Number>,
    #[serde(borrow, default)]
    src_ip: Option<&'a str>,
    #[serde(default)]
    src_port: Option<u16>,
    #[serde(borrow, default)]
    dst_ip: Option<&'a str>,
    #[serde(default)]
    dst_port: Option<u16>,
    #[serde(borrow)]
    protocol: &'a str,
    #[serde(borrow, default)]
    src: Option<&'a str>,
    #[serde(borrow, default)]
    dst: Option<&'a str>,
    #[serde(default)]
    packets: Option<u64>,
}

/// Merges records of one (source, destination, protocol, port) as they stream in: memory
/// grows with the distinct flows, not with the records. Counts add up; the first and last
/// times are kept. [`Aggregator::add_line`] reads Bulkhead's own records without building a
/// JSON tree and without allocating for a flow already seen.
#[derive(Debug, Default)]
pub struct Aggregator {
    flows: std::collections::HashMap<FlowKey, FlowRecord>,
    names: std::collections::HashMap<String, u32>,
    pub records: u64,
}

impl Aggregator {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.names.get(name) {
            return id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.insert(name.to_string(), id);
        id
    }

    fn key(
        &mut self,
        src: Option<&str>,
        src_ip: Option<IpAddr>,
        dst: Option<&str>,
        dst_ip: Option<IpAddr>,
        protocol: &str,
        port: Option<u16>,
    ) -> FlowKey {
        let protocol = if protocol.bytes().any(|b| b.is_ascii_lowercase()) {
            self.intern(&protocol.to_ascii_uppercase())
        } else {
            self.intern(protocol)
        };
        FlowKey {
            src: src.map(|n| self.intern(n)),
            src_ip,
            dst: dst.map(|n| self.intern(n)),
            dst_ip,
            protocol,
            port,
        }
    }

    fn merge(
        &mut self,
        key: FlowKey,
        time: Option<serde_json::Value>,
        packets: Option<u64>,
        record: impl FnOnce() -> FlowRecord,
    ) {
        self.records += 1;
        match self.flows.get_mut(&key) {
            Some(seen) => {
                seen.merged += 1;
                // Packet counts add up when the records carry them; else records count.
                seen.packets = match (seen.packets, packets) {
                    (None, None) => None,
                    (a, b) => Some(a.unwrap_or(1) + b.unwrap_or(1)),
                };
                if time.is_some() {
                    seen.last_time = time;
                }
            }
            None => {
                let mut r = record();
                r.merged = 1;
                r.last_time.clone_from(&r.time);
                self.flows.insert(key, r);
            }
        }
    }

    pub fn add(&mut self, r: FlowRecord) {
        let key = self.key(
            r.src.as_deref(),
            r.src_ip,
            r.dst.as_deref(),
            r.dst_ip,
            &r.protocol,
            r.dst_port,
        );
        let (time, packets) = (r.time.clone(), r.packets);
        self.merge(key, time, packets, || r);
    }

    /// Reads one line of any JSON format [`parse_json_line`] knows; Bulkhead's own records
    /// take the fast path. `Ok(false)`: a blank line, a comment or a reply.
    pub fn add_line(&mut self, line: &str) -> Result<bool, String> {
        let trimmed = line.trim();
        if trimmed.starts_with('{')
            && trimmed.contains("\"src_ip\"")
            && let Ok(b) = serde_json::from_str::<Borrowed<'_>>(trimmed)
        {
            {
                let ip = |t: Option<&str>| -> Result<Option<IpAddr>, String> {
                    t.map(|t| t.parse().map_err(|e| format!("address {t:?}: {e}")))
                        .transpose()
                };
                let (src_ip, dst_ip) = (ip(b.src_ip)?, ip(b.dst_ip)?);
                let key = self.key(b.src, src_ip, b.dst, dst_ip, b.protocol, b.dst_port);
                let time = b.time.map(serde_json::Value::Number);
                let record = || FlowRecord {
                    time: time.clone(),
                    src_ip,
                    src_port: b.src_port,
                    dst_ip,
                    dst_port: b.dst_port,
                    protocol: b.protocol.to_string(),
                    src: b.src.map(str::to_string),
                    dst: b.dst.map(str::to_string),
                    verdict: None,
                    policy: None,
                    rule: None,
                    packets: b.packets,
                    bytes: None,
                    last_time: None,
                    merged: 0,
                };
                self.merge(key, time.clone(), b.packets, record);
                return Ok(true);
            }
        }
        match parse_json_line(line)? {
            Some(r) => {
                self.add(r);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The distinct flows, in a stable order.
    pub fn into_records(self) -> Vec<FlowRecord> {
        let mut out: Vec<FlowRecord> = self.flows.into_values().collect();
        out.sort_by(|a, b| {
            (&a.src, a.src_ip, &a.dst, a.dst_ip, &a.protocol, a.dst_port).cmp(&(
                &b.src,
                b.src_ip,
                &b.dst,
                b.dst_ip,
                &b.protocol,
                b.dst_port,
            ))
        });
        out
    }
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
        src_ip: Some(src_ip),
        src_port,
        dst_ip: Some(dst_ip),
        dst_port,
        protocol,
        src: pod("source"),
        dst: pod("destination"),
        verdict,
        policy: None,
        rule: None,
        packets: None,
        bytes: None,
        last_time: None,
        merged: 0,
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
    /// `would_deny` in JSON, the name `audit -o json` has always used.
    #[serde(rename = "would_deny")]
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
            p.workload_key()
        }
        Endpoint::Node(i) => format!("node:{}", cluster.nodes[i].name),
        Endpoint::External(ip) => ip.to_string(),
    }
}

/// The endpoint a record's side stands for. A pod name (`ns/pod`) is the exact pod, else its
/// owner: `web-5d8f7c9b4-x7k2p` and Calico's aggregated `web-5d8f7c9b4-*` are Deployment
/// `web`, `db-0` is StatefulSet `db` (so live names match templates from Git); `ns/kind/name`
/// is that workload. Without a name the address decides: a pod's, a node's, or outside.
pub fn resolve(
    engine: &Engine<'_>,
    name: Option<&str>,
    ip: Option<IpAddr>,
) -> Result<Endpoint, String> {
    let Some(name) = name.map(str::trim).filter(|n| !n.is_empty() && *n != "-") else {
        return ip
            .map(|ip| engine.endpoint_for_ip(ip))
            .ok_or_else(|| "a record with neither an address nor a name".to_string());
    };
    if let Some(range) = name.strip_prefix("network:") {
        return Err(format!(
            "{name}: Calico aggregated the address into {range:?} ({}); the audit needs the address",
            if range == "pub" {
                "a public address"
            } else {
                "a private address outside the cluster"
            }
        ));
    }
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
    found.map(Endpoint::Pod).ok_or_else(|| match ip {
        Some(ip) => format!("{name} ({ip}): no such pod or workload in the snapshot"),
        None => format!("{name}: no such pod or workload in the snapshot"),
    })
}

/// Replays `records` against the engine's policies.
pub fn audit(engine: &Engine<'_>, records: &[FlowRecord]) -> AuditReport {
    let weight = |r: &FlowRecord| usize::try_from(r.merged.max(1)).unwrap_or(usize::MAX);
    let mut report = AuditReport {
        flows: records.iter().map(weight).sum(),
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
                *unresolved.entry(e).or_default() += r.merged.max(1);
                report.unresolved_records += weight(r);
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
            report.allowed += weight(r);
            continue;
        }
        report.denied_records += weight(r);
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
        entry.seen += r.packets.unwrap_or(r.merged).max(1);
        entry.last_seen.clone_from(if r.last_time.is_some() {
            &r.last_time
        } else {
            &r.time
        });
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
    for p in cluster.policies.iter().filter(|p| p.staged.is_none()) {
        let kind = p.kind.display_name();
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

    /// Reads JSON lines; blank lines and `#` comments are skipped, every other bad line reported.
    fn parse(text: &str) -> (Vec<FlowRecord>, Vec<BadLine>) {
        let (mut records, mut bad) = (Vec::new(), Vec::new());
        for (i, line) in text.lines().enumerate() {
            match parse_json_line(line) {
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
        assert_eq!(first.src_ip, "10.244.1.60".parse::<IpAddr>().ok());
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
