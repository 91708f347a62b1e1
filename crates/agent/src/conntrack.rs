//! Policy tightening: when a new ruleset removes an allow, connections it no longer allows
//! are cut by deleting their conntrack entries over netlink (ctnetlink). The next packet of
//! such a flow is then new to the kernel and meets the policy (with `nf_conntrack_tcp_loose=1`,
//! the default, mid-stream packets are picked up as new; with 0 they are dropped as invalid).
//! Choice: cut, rather than let removed access live on until the connection ends.
//!
//! The loop only lists the tracked flows (one dump) and picks those the engine denies; the
//! deletions go to a [`Cutter`] thread that sends them in batches of many messages per
//! datagram, so thousands of cuts never hold up the next change.

use bulkhead_nft::netlink;
use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol, Tuple,
};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily};
use netlink_sys::{Socket, SocketAddr, constants::NETLINK_NETFILTER};
use prometheus_client::metrics::counter::Counter;
use std::net::IpAddr;
use std::sync::mpsc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackedFlow {
    pub protocol: String,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// Delete requests per datagram: about 100 bytes each, well inside one 64 KiB send.
const BATCH: usize = 256;

/// A ctnetlink socket in the calling thread's network namespace.
#[derive(Debug)]
pub struct Conntrack {
    socket: Socket,
    sequence: u32,
    buffer: Vec<u8>,
}

impl Conntrack {
    pub fn open() -> std::io::Result<Self> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // A dump of many flows arrives faster than it is parsed.
        let _ = socket.set_rx_buf_sz(4 * 1024 * 1024);
        Ok(Self {
            socket,
            sequence: 0,
            buffer: vec![0; 256 * 1024],
        })
    }

    /// The tracked TCP, UDP and SCTP flows (original direction) of every address family.
    pub fn list(&mut self) -> std::io::Result<Vec<TrackedFlow>> {
        self.sequence = self.sequence.wrapping_add(1);
        let request = netlink::encode(
            NetfilterProtoFamily::Unspec,
            ConntrackMessage::Get(vec![]),
            NLM_F_REQUEST | NLM_F_DUMP,
            self.sequence,
        );
        self.socket.send(&request, 0)?;
        let mut flows = Vec::new();
        loop {
            let size = self.socket.recv(&mut &mut self.buffer[..], 0)?;
            for parsed in netlink::messages(&self.buffer[..size]) {
                let (kind, _, message) = parsed.map_err(std::io::Error::other)?;
                match kind {
                    NLMSG_DONE => return Ok(flows),
                    NLMSG_ERROR => match netlink::error_code(message) {
                        0 => {}
                        errno => return Err(std::io::Error::from_raw_os_error(errno)),
                    },
                    _ => flows.extend(
                        NetlinkMessage::<NetfilterMessage>::deserialize(message)
                            .ok()
                            .and_then(|m| flow_of(&m)),
                    ),
                }
            }
        }
    }

    /// Deletes the entries of `flows`, many per datagram; returns how many the kernel deleted
    /// (a flow that ended meanwhile is not counted).
    pub fn delete(&mut self, flows: &[TrackedFlow]) -> std::io::Result<usize> {
        let mut deleted = 0;
        for batch in flows.chunks(BATCH) {
            let first = self.sequence.wrapping_add(1);
            let mut datagram = Vec::new();
            for flow in batch {
                let Some(attributes) = delete_request(flow) else {
                    continue;
                };
                self.sequence = self.sequence.wrapping_add(1);
                let family = match flow.src {
                    IpAddr::V4(_) => NetfilterProtoFamily::IPv4,
                    IpAddr::V6(_) => NetfilterProtoFamily::IPv6,
                };
                datagram.extend(netlink::encode(
                    family,
                    ConntrackMessage::Delete(attributes),
                    NLM_F_REQUEST | NLM_F_ACK,
                    self.sequence,
                ));
            }
            if datagram.is_empty() {
                continue;
            }
            self.socket.send(&datagram, 0)?;
            let expected = self.sequence.wrapping_sub(first).wrapping_add(1) as usize;
            let mut acknowledged = 0;
            while acknowledged < expected {
                let size = self.socket.recv(&mut &mut self.buffer[..], 0)?;
                for parsed in netlink::messages(&self.buffer[..size]) {
                    let (kind, _, message) = parsed.map_err(std::io::Error::other)?;
                    if kind == NLMSG_ERROR {
                        acknowledged += 1;
                        if netlink::error_code(message) == 0 {
                            deleted += 1;
                        }
                    }
                }
            }
        }
        Ok(deleted)
    }
}

/// Deletes flows on a thread of its own, counting what it cut; dropped, it finishes what it
/// was given and ends.
#[derive(Debug)]
pub struct Cutter {
    sender: Option<mpsc::Sender<Vec<TrackedFlow>>>,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl Cutter {
    /// Starts the thread (in the caller's network namespace, which threads inherit).
    pub fn start(cut: Counter) -> Self {
        let (sender, receiver) = mpsc::channel::<Vec<TrackedFlow>>();
        let worker = std::thread::Builder::new()
            .name("bulkhead-cut".into())
            .spawn(move || {
                let mut socket = None;
                for flows in receiver {
                    if socket.is_none() {
                        socket = Conntrack::open().ok();
                    }
                    if let Some(conntrack) = socket.as_mut() {
                        match conntrack.delete(&flows) {
                            Ok(n) => {
                                cut.inc_by(n as u64);
                            }
                            Err(_) => socket = None,
                        }
                    }
                }
            })
            .ok();
        Self {
            sender: Some(sender),
            worker,
        }
    }

    /// Hands `flows` to the thread; returns at once.
    pub fn cut(&self, flows: Vec<TrackedFlow>) {
        if let Some(sender) = &self.sender
            && !flows.is_empty()
        {
            let _ = sender.send(flows);
        }
    }
}

impl Drop for Cutter {
    fn drop(&mut self) {
        self.sender = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

fn protocol_number(name: &str) -> Option<Protocol> {
    match name {
        "tcp" => Some(Protocol::Tcp),
        "udp" => Some(Protocol::Udp),
        "sctp" => Some(Protocol::Sctp),
        _ => None,
    }
}

fn delete_request(flow: &TrackedFlow) -> Option<Vec<ConntrackAttribute>> {
    Some(vec![ConntrackAttribute::CtaTupleOrig(vec![
        Tuple::Ip(vec![
            IPTuple::SourceAddress(flow.src),
            IPTuple::DestinationAddress(flow.dst),
        ]),
        Tuple::Proto(vec![
            ProtoTuple::Protocol(protocol_number(&flow.protocol)?),
            ProtoTuple::SourcePort(flow.sport),
            ProtoTuple::DestinationPort(flow.dport),
        ]),
    ])])
}

/// The original-direction tuple of one dumped entry, for the protocols with ports.
fn flow_of(message: &NetlinkMessage<NetfilterMessage>) -> Option<TrackedFlow> {
    let NetlinkPayload::InnerMessage(inner) = &message.payload else {
        return None;
    };
    let NetfilterMessageInner::Conntrack(ConntrackMessage::New(attributes)) = &inner.inner else {
        return None;
    };
    let tuple = attributes.iter().find_map(|a| match a {
        ConntrackAttribute::CtaTupleOrig(t) => Some(t),
        _ => None,
    })?;
    let (mut src, mut dst, mut protocol, mut sport, mut dport) = (None, None, None, None, None);
    for part in tuple {
        match part {
            Tuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(a) => src = Some(*a),
                        IPTuple::DestinationAddress(a) => dst = Some(*a),
                        _ => {}
                    }
                }
            }
            Tuple::Proto(protos) => {
                for p in protos {
                    match p {
                        ProtoTuple::Protocol(n) => protocol = Some(*n),
                        ProtoTuple::SourcePort(n) => sport = Some(*n),
                        ProtoTuple::DestinationPort(n) => dport = Some(*n),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let protocol = match protocol? {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
        _ => return None,
    };
    Some(TrackedFlow {
        protocol: protocol.to_string(),
        src: src?,
        dst: dst?,
        sport: sport?,
        dport: dport?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delete_request_round_trips_to_the_flow_it_names() {
        let flow = TrackedFlow {
            protocol: "tcp".into(),
            src: "10.0.1.1".parse().expect("ip"),
            dst: "10.0.2.1".parse().expect("ip"),
            sport: 40000,
            dport: 80,
        };
        let bytes = netlink::encode(
            NetfilterProtoFamily::IPv4,
            ConntrackMessage::New(delete_request(&flow).expect("tcp has ports")),
            NLM_F_REQUEST,
            7,
        );
        let parsed = NetlinkMessage::<NetfilterMessage>::deserialize(&bytes).expect("parses");
        assert_eq!(parsed.header.sequence_number, 7);
        assert_eq!(flow_of(&parsed), Some(flow));
    }

    #[test]
    fn flows_without_ports_are_not_requested() {
        let icmp = TrackedFlow {
            protocol: "icmp".into(),
            src: "10.0.1.1".parse().expect("ip"),
            dst: "10.0.2.1".parse().expect("ip"),
            sport: 0,
            dport: 0,
        };
        assert!(delete_request(&icmp).is_none());
    }
}
