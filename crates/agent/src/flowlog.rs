//! Flow logs of denied connections: the NFLOG records the ruleset sends for every deny (and, in
//! audit mode, every would-be deny), read from a netlink socket and turned into records that
//! name the pod, the direction and the deciding rule (the log prefix, see
//! `bulkhead_nft::render::parse_deny_log_prefix`).
//!
//! NFLOG is best-effort by design: the ruleset rate-limits records per rule, and a reader that
//! lags loses records, never packets' verdicts.

use bulkhead_nft::render::parse_deny_log_prefix;
use bulkhead_nft::ruleset::DENY_LOG_GROUP;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::nflog::{
    ConfigCmd, ConfigMode, PacketNla, ULogMessage, config_request,
};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily};
use netlink_sys::{Socket, constants::NETLINK_NETFILTER};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One denied (or, in audit mode, would-be denied) connection attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DenyRecord {
    /// Audit mode: the packet was let through.
    pub audit: bool,
    /// An audited (or staged) policy's would-be verdict, not a deny of the enforced
    /// policies: `Some(true)` would deny (the packet passed), `Some(false)` would allow (it
    /// was denied, by another rule's own record).
    pub would: Option<bool>,
    /// `ingress` or `egress`.
    pub direction: String,
    /// The pod whose policy decided, `ns/name`.
    pub pod: String,
    /// The deciding rule, e.g. `NetworkPolicy x/web ingress[0]` or `end of tier default`.
    pub rule: String,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number (6 TCP, 17 UDP, 132 SCTP, 1 ICMP, 58 ICMPv6).
    pub protocol: u8,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    /// When the record was read (NFLOG's own timestamp is optional).
    pub time: std::time::SystemTime,
}

impl DenyRecord {
    /// The namespace of the pod whose policy decided.
    pub fn namespace(&self) -> &str {
        self.pod
            .split_once('/')
            .map_or(self.pod.as_str(), |(ns, _)| ns)
    }

    /// `deny`, `would-deny` (audit, or an audited policy) or `would-allow` (an audited policy):
    /// the flow-log verdict.
    pub fn verdict(&self) -> &'static str {
        match (self.would, self.audit) {
            (Some(false), _) => "would-allow",
            (_, true) => "would-deny",
            (_, false) => "deny",
        }
    }

    /// The IP protocol, named where it has a name (6 is TCP).
    pub fn protocol(&self) -> bulkhead_model::Protocol {
        bulkhead_model::Protocol::Number(self.protocol).canonical()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FlowLogError {
    #[error("NFLOG socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("NFLOG bind to group {group} refused: error {code}")]
    Refused { group: u16, code: i32 },
    #[error("NFLOG: {0}")]
    Decode(String),
}

/// A bound NFLOG reader for Bulkhead's deny group.
#[derive(Debug)]
pub struct DenyLog {
    socket: Socket,
    buffer: Vec<u8>,
    /// Where the agent keeps its rule id table, and the table as last read.
    state_dir: Option<std::path::PathBuf>,
    table: crate::rules::RuleTable,
    table_read: Option<std::time::SystemTime>,
    group: u16,
}

impl DenyLog {
    /// Binds [`DENY_LOG_GROUP`] (needs CAP_NET_ADMIN). Only one reader per group per netns.
    /// `state_dir`: where the agent writes its rule id table (records are named by it, and by
    /// the names in their prefix where it has no entry).
    pub fn open(state_dir: Option<&std::path::Path>) -> Result<Self, FlowLogError> {
        Self::open_group(state_dir, DENY_LOG_GROUP)
    }

    /// Binds another of Bulkhead's NFLOG groups: [`bulkhead_nft::ruleset::DENY_COUNT_GROUP`]
    /// carries every denied packet (the agent counts connections from it).
    pub fn open_group(
        state_dir: Option<&std::path::Path>,
        group: u16,
    ) -> Result<Self, FlowLogError> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        // Room for bursts: a lagging reader drops records, not packets.
        let _ = socket.set_rx_buf_sz(4 * 1024 * 1024);
        let mut log = Self {
            socket,
            buffer: vec![0; 65536],
            state_dir: state_dir.map(std::path::Path::to_path_buf),
            table: crate::rules::RuleTable::default(),
            table_read: None,
            group,
        };
        log.configure(vec![
            ConfigCmd::Bind.into(),
            ConfigMode::new_packet(128).into(),
        ])?;
        Ok(log)
    }

    fn configure(
        &mut self,
        nlas: Vec<netlink_packet_netfilter::nflog::ConfigNla>,
    ) -> Result<(), FlowLogError> {
        let request = config_request(NetfilterProtoFamily::Unspec, self.group, nlas);
        let mut bytes = vec![0; request.header.length as usize];
        request.serialize(&mut bytes[..]);
        self.socket.send(&bytes, 0)?;
        let size = self.socket.recv(&mut &mut self.buffer[..], 0)?;
        let reply = NetlinkMessage::<NetfilterMessage>::deserialize(&self.buffer[..size])
            .map_err(|e| FlowLogError::Decode(e.to_string()))?;
        if let NetlinkPayload::Error(e) = reply.payload
            && let Some(code) = e.code
        {
            return Err(FlowLogError::Refused {
                group: self.group,
                code: code.get(),
            });
        }
        Ok(())
    }

    /// Blocks until the kernel delivers records; returns Bulkhead's deny records among them.
    pub fn next_batch(&mut self) -> Result<Vec<DenyRecord>, FlowLogError> {
        let size = self.socket.recv(&mut &mut self.buffer[..], 0)?;
        // The agent rewrites the table after each commit: read it again when it changed.
        if let Some(dir) = &self.state_dir {
            let modified = std::fs::metadata(crate::rules::RuleTable::path(dir))
                .and_then(|m| m.modified())
                .ok();
            if modified != self.table_read {
                self.table = crate::rules::RuleTable::load(dir);
                self.table_read = modified;
            }
        }
        let mut out = Vec::new();
        let mut offset = 0;
        while offset < size {
            let Ok(message) =
                NetlinkMessage::<NetfilterMessage>::deserialize(&self.buffer[offset..size])
            else {
                break;
            };
            let length = message.header.length as usize;
            if let NetlinkPayload::InnerMessage(NetfilterMessage {
                inner: NetfilterMessageInner::ULog(ULogMessage::Packet(nlas)),
                ..
            }) = &message.payload
                && let Some(record) = record(nlas, &self.table)
            {
                out.push(record);
            }
            if length == 0 {
                break;
            }
            offset += length;
        }
        Ok(out)
    }
}

/// A deny record from one NFLOG packet's attributes; `None` for records that are not ours.
pub fn record(nlas: &[PacketNla], table: &crate::rules::RuleTable) -> Option<DenyRecord> {
    let mut prefix = None;
    let mut payload = None;
    for nla in nlas {
        match nla {
            PacketNla::Prefix(p) => prefix = p.to_str().ok(),
            PacketNla::Payload(p) => payload = Some(p.as_slice()),
            _ => {}
        }
    }
    let parsed = parse_deny_log_prefix(prefix?)?;
    // The id table names the rule whatever its length; the names in the prefix (possibly cut
    // to the kernel's 127 bytes) are the fallback.
    let (direction, pod, rule) = match parsed.id.and_then(|id| table.get(id)) {
        Some(identity) => (
            identity.direction.clone(),
            identity.pod.clone(),
            identity.rule.clone(),
        ),
        None => {
            let (direction, pod) = parsed.endpoint.split_once(" of ")?;
            (
                direction.to_string(),
                pod.to_string(),
                parsed.rule.to_string(),
            )
        }
    };
    let audit = parsed.audit;
    let header = ip_header(payload?)?;
    Some(DenyRecord {
        audit,
        would: parsed.would,
        direction,
        pod,
        rule,
        src: header.src,
        dst: header.dst,
        protocol: header.protocol,
        sport: header.sport,
        dport: header.dport,
        time: std::time::SystemTime::now(),
    })
}

struct IpHeader {
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    sport: Option<u16>,
    dport: Option<u16>,
}

/// Addresses, protocol and destination port from the start of an IPv4 or IPv6 packet.
fn ip_header(p: &[u8]) -> Option<IpHeader> {
    // Source port, then destination port, at the start of the transport header.
    let port_at = |offset: usize, protocol: u8| {
        matches!(protocol, 6 | 17 | 132 | 136)
            .then(|| p.get(offset..offset + 2))
            .flatten()
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    match p.first()? >> 4 {
        4 => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            let protocol = *p.get(9)?;
            let src: [u8; 4] = p.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = p.get(16..20)?.try_into().ok()?;
            Some(IpHeader {
                src: Ipv4Addr::from(src).into(),
                dst: Ipv4Addr::from(dst).into(),
                protocol,
                sport: port_at(ihl, protocol),
                dport: port_at(ihl + 2, protocol),
            })
        }
        6 => {
            let protocol = *p.get(6)?;
            let src: [u8; 16] = p.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = p.get(24..40)?.try_into().ok()?;
            Some(IpHeader {
                src: Ipv6Addr::from(src).into(),
                dst: Ipv6Addr::from(dst).into(),
                protocol,
                // Extension headers are not followed: their ports stay unknown.
                sport: port_at(40, protocol),
                dport: port_at(42, protocol),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn tcp_syn_v4(src: [u8; 4], dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[9] = 6;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&dport.to_be_bytes());
        p
    }

    #[test]
    fn a_record_with_a_cut_prefix_is_named_by_its_id() {
        // A 253-character pod name: the prefix holds the id and the start of the names only.
        let pod = format!("x/{}", "p".repeat(253));
        let endpoint = format!("ingress of {pod}");
        let id = bulkhead_nft::ruleset::rule_id(&endpoint, "end of tier default");
        let prefix: String = format!("bh:D:{id}:{endpoint}:end of tier default")
            .chars()
            .take(127)
            .collect();
        let nlas = vec![
            PacketNla::Prefix(CString::new(prefix).expect("no nul")),
            PacketNla::Payload(tcp_syn_v4([10, 77, 0, 1], [10, 77, 0, 2], 80)),
        ];
        let mut table = crate::rules::RuleTable::default();
        table.merge(std::collections::BTreeMap::from([(
            id.clone(),
            bulkhead_nft::ruleset::RuleIdentity {
                direction: "ingress".into(),
                pod: pod.clone(),
                rule: "end of tier default".into(),
            },
        )]));
        let r = record(&nlas, &table).expect("ours");
        assert_eq!(r.pod, pod, "the whole name, from the table");
        assert_eq!(r.rule, "end of tier default");
        let without = record(&nlas, &crate::rules::RuleTable::default()).expect("still ours");
        assert!(
            pod.starts_with(&without.pod),
            "without the table: the cut name"
        );
    }

    #[test]
    fn a_record_names_pod_direction_rule_and_flow() {
        let nlas = vec![
            PacketNla::Prefix(
                CString::new("bh:A:ingress of x/server:NetworkPolicy x/web ingress[0]")
                    .expect("no nul"),
            ),
            PacketNla::Payload(tcp_syn_v4([10, 77, 0, 1], [10, 77, 0, 2], 80)),
        ];
        let r = record(&nlas, &crate::rules::RuleTable::default()).expect("ours");
        assert!(r.audit);
        assert_eq!(
            (r.direction.as_str(), r.pod.as_str(), r.rule.as_str()),
            ("ingress", "x/server", "NetworkPolicy x/web ingress[0]")
        );
        assert_eq!(r.src, IpAddr::from([10, 77, 0, 1]));
        assert_eq!(r.dst, IpAddr::from([10, 77, 0, 2]));
        assert_eq!((r.protocol, r.sport, r.dport), (6, Some(40000), Some(80)));
        assert_eq!(r.protocol(), bulkhead_model::Protocol::Tcp);
        assert_eq!(r.namespace(), "x");
    }

    #[test]
    fn each_prefix_mode_reads_as_its_verdict() {
        for (mode, verdict) in [
            ("D", "deny"),
            ("A", "would-deny"),
            ("W", "would-deny"),
            ("O", "would-allow"),
        ] {
            let nlas = vec![
                PacketNla::Prefix(
                    CString::new(format!("bh:{mode}:ingress of x/server:end of tier default"))
                        .expect("no nul"),
                ),
                PacketNla::Payload(tcp_syn_v4([10, 77, 0, 1], [10, 77, 0, 2], 80)),
            ];
            let r = record(&nlas, &crate::rules::RuleTable::default()).expect("ours");
            assert_eq!(r.verdict(), verdict, "bh:{mode}");
        }
    }

    #[test]
    fn records_of_other_loggers_and_truncated_packets_are_not_ours() {
        let other = vec![
            PacketNla::Prefix(CString::new("calico-deny").expect("no nul")),
            PacketNla::Payload(tcp_syn_v4([1, 1, 1, 1], [2, 2, 2, 2], 80)),
        ];
        assert!(record(&other, &crate::rules::RuleTable::default()).is_none());
        let short = vec![
            PacketNla::Prefix(CString::new("bh:D:egress of x/a:end of tier default").expect("")),
            PacketNla::Payload(vec![0x45, 0, 0]),
        ];
        assert!(record(&short, &crate::rules::RuleTable::default()).is_none());
    }

    #[test]
    fn icmp_has_no_port_and_ipv6_is_read() {
        let mut v4 = tcp_syn_v4([10, 0, 0, 1], [10, 0, 0, 2], 0);
        v4[9] = 1;
        assert_eq!(ip_header(&v4).expect("v4").dport, None);
        let mut v6 = vec![0u8; 48];
        v6[0] = 0x60;
        v6[6] = 17;
        v6[8..24].copy_from_slice(&"fd00::1".parse::<Ipv6Addr>().expect("ip").octets());
        v6[24..40].copy_from_slice(&"fd00::2".parse::<Ipv6Addr>().expect("ip").octets());
        v6[42..44].copy_from_slice(&53u16.to_be_bytes());
        let h = ip_header(&v6).expect("v6");
        assert_eq!((h.protocol, h.dport), (17, Some(53)));
        assert_eq!(h.dst, "fd00::2".parse::<IpAddr>().expect("ip"));
    }
}
