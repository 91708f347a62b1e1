//! Cheap reads of the kernel's nf_tables state over netlink, for noticing changes made behind
//! the agent's back without listing the table (`nft list` of a table with 100k set elements
//! takes seconds, `../shared/dataplane.md` §4.4).
//!
//! Two reads: the ruleset generation id, which the kernel bumps on every committed
//! transaction of any process (one request, microseconds), and a fingerprint of Bulkhead's
//! table: the name and handle of every chain, rule and set, plus the elements of the small
//! mode maps. Set elements of the peer sets are left out on purpose (they are the expensive
//! part); handles are enough for everything else, since the kernel gives a new handle to every
//! rule, chain or set it creates, including a rule replaced in place.

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader, NetlinkMessage,
    NetlinkPayload, NlasIterator,
};
use netlink_packet_netfilter::nftables::{
    ChainMessage, GenMessage, NfTablesMessage, RuleAttribute, RuleMessage, SetMessage,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::{Socket, SocketAddr, constants::NETLINK_NETFILTER};
use std::hash::{Hash as _, Hasher as _};

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// Replies of nf_tables: `NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_*`.
const NFT_MSG_NEWCHAIN: u16 = 10 << 8 | 3;
const NFT_MSG_NEWRULE: u16 = 10 << 8 | 6;
const NFT_MSG_NEWSET: u16 = 10 << 8 | 9;
const NFT_MSG_NEWSETELEM: u16 = 10 << 8 | 12;
const NFT_MSG_NEWGEN: u16 = 10 << 8 | 15;
const NFT_MSG_GETSETELEM: u8 = 13;
/// The size of `struct nfgenmsg` before a reply's attributes.
const NFGENMSG_LEN: usize = 4;

/// What a fingerprint reads of each object: `(attribute kind that names it, kinds hashed)`.
const CHAIN_TABLE: u16 = 1;
const CHAIN_HASHED: &[u16] = &[2, 3, 4, 5, 7]; // handle, name, hook, policy, type
const RULE_TABLE: u16 = 1;
const RULE_HASHED: &[u16] = &[2, 3, 7]; // chain, handle, user data (comment)
/// A rule's expressions are hashed too (a rule replaced in place keeps its handle), all but
/// the packet and byte counts of its counters, which move with traffic.
const RULE_EXPRESSIONS: u16 = 4;
const LIST_ELEM: u16 = 1;
const EXPR_NAME: u16 = 1;
const EXPR_DATA: u16 = 2;
const SET_TABLE: u16 = 1;
const SET_HASHED: &[u16] = &[2, 16]; // name, handle
const SET_ELEM_LIST_ELEMENTS: u16 = 3;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("nf_tables answered {request} with error {errno}")]
    Kernel { request: &'static str, errno: i32 },
    #[error("nf_tables sent a reply that does not parse ({0})")]
    Malformed(String),
}

/// A netlink socket to nf_tables in the calling thread's network namespace.
#[derive(Debug)]
pub struct NfTables {
    socket: Socket,
    sequence: u32,
    buffer: Vec<u8>,
}

impl NfTables {
    pub fn open() -> Result<Self, NetlinkError> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Self {
            socket,
            sequence: 0,
            buffer: vec![0; 64 * 1024],
        })
    }

    /// The ruleset generation: it changes whenever any process commits an nf_tables
    /// transaction in this network namespace.
    pub fn generation(&mut self) -> Result<u32, NetlinkError> {
        let mut id = None;
        self.request(
            "GETGEN",
            NetfilterProtoFamily::Unspec,
            NfTablesMessage::GetGen(GenMessage { attributes: vec![] }),
            false,
            |kind, attributes| {
                if kind == NFT_MSG_NEWGEN {
                    for nla in attributes.flatten() {
                        if nla.kind() == 1 && nla.value().len() == 4 {
                            let v = nla.value();
                            id = Some(u32::from_be_bytes([v[0], v[1], v[2], v[3]]));
                        }
                    }
                }
            },
        )?;
        id.ok_or_else(|| NetlinkError::Malformed("NEWGEN without a generation id".into()))
    }

    /// A hash of the structure of `table` (family inet) and of the elements of `small_sets`;
    /// `None` when the table does not exist.
    pub fn fingerprint(
        &mut self,
        table: &str,
        small_sets: &[&str],
    ) -> Result<Option<u64>, NetlinkError> {
        let name = nul_terminated(table);
        let mut print = Print {
            table: &name,
            hasher: std::collections::hash_map::DefaultHasher::new(),
            objects: 0,
        };
        // Chains and sets are dumped for the whole family and filtered here (the kernel
        // filters those dumps by family only); rules are filtered by table in the kernel.
        let dumps = [
            (
                "GETCHAIN",
                NfTablesMessage::GetChain(ChainMessage { attributes: vec![] }),
                NFT_MSG_NEWCHAIN,
                CHAIN_TABLE,
                CHAIN_HASHED,
            ),
            (
                "GETSET",
                NfTablesMessage::GetSet(SetMessage { attributes: vec![] }),
                NFT_MSG_NEWSET,
                SET_TABLE,
                SET_HASHED,
            ),
            (
                "GETRULE",
                NfTablesMessage::GetRule(RuleMessage {
                    attributes: vec![RuleAttribute::Table(table.to_string())],
                }),
                NFT_MSG_NEWRULE,
                RULE_TABLE,
                RULE_HASHED,
            ),
        ];
        for (name, request, reply, table_kind, hashed) in dumps {
            self.request(
                name,
                NetfilterProtoFamily::Inet,
                request,
                true,
                |kind, attributes| {
                    if kind == reply {
                        print.absorb(kind, table_kind, hashed, attributes);
                    }
                },
            )?;
            // A table has its base chains: none of ours means no table.
            if print.objects == 0 {
                return Ok(None);
            }
        }
        for set in small_sets {
            let elements = self.elements(table, set)?;
            set.hash(&mut print.hasher);
            elements.hash(&mut print.hasher);
        }
        Ok(Some(print.hasher.finish()))
    }

    /// The raw element list of one set of `table` (empty when it has none); an error when
    /// the set does not exist.
    pub fn elements(&mut self, table: &str, set: &str) -> Result<Vec<u8>, NetlinkError> {
        let mut elements = Vec::new();
        let request = NfTablesMessage::Other {
            message_type: NFT_MSG_GETSETELEM,
            attributes: vec![
                netlink_packet_core::DefaultNla::new(1, nul_terminated(table)),
                netlink_packet_core::DefaultNla::new(2, nul_terminated(set)),
            ],
        };
        self.request(
            "GETSETELEM",
            NetfilterProtoFamily::Inet,
            request,
            true,
            |kind, attributes| {
                if kind == NFT_MSG_NEWSETELEM {
                    for a in attributes.flatten() {
                        if a.kind() == SET_ELEM_LIST_ELEMENTS {
                            elements.extend_from_slice(a.value());
                        }
                    }
                }
            },
        )?;
        Ok(elements)
    }

    /// Sends one request and hands every reply message's type and attributes to `each`,
    /// until the dump is done (or the one reply of a plain request has come).
    fn request(
        &mut self,
        name: &'static str,
        family: NetfilterProtoFamily,
        message: NfTablesMessage,
        dump: bool,
        mut each: impl FnMut(u16, NlasIterator<&[u8]>),
    ) -> Result<(), NetlinkError> {
        self.sequence = self.sequence.wrapping_add(1);
        let flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { NLM_F_ACK };
        self.socket
            .send(&encode(family, message, flags, self.sequence), 0)?;
        loop {
            let size = self.socket.recv(&mut &mut self.buffer[..], 0)?;
            for parsed in messages(&self.buffer[..size]) {
                let (kind, sequence, message) = parsed?;
                if sequence != self.sequence {
                    continue;
                }
                match kind {
                    NLMSG_DONE => return Ok(()),
                    // An error of 0 is the acknowledgement that ends a plain request.
                    NLMSG_ERROR => {
                        return match error_code(message) {
                            0 => Ok(()),
                            errno => Err(NetlinkError::Kernel {
                                request: name,
                                errno,
                            }),
                        };
                    }
                    _ => {
                        let attributes = payload(message).get(NFGENMSG_LEN..).unwrap_or_default();
                        each(kind, NlasIterator::new(attributes));
                    }
                }
            }
        }
    }
}

/// Netlink attribute and message numbers of element writes (linux/netfilter/nf_tables.h,
/// linux/netfilter/nfnetlink.h).
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWSETELEM_REQUEST: u16 = NFNL_SUBSYS_NFTABLES << 8 | 12;
const NFT_MSG_DELSETELEM: u16 = NFNL_SUBSYS_NFTABLES << 8 | 14;
const NLA_F_NESTED: u16 = 0x8000;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_SET_ELEM_USERDATA: u16 = 6;
const NFTA_DATA_VALUE: u16 = 1;
const NFT_SET_ELEM_INTERVAL_END: u32 = 1;
/// nft's element user data "this interval runs to the end of the address space" (libnftnl
/// `NFTNL_UDATA_SET_ELEM_FLAGS` = `NFTNL_SET_ELEM_F_INTERVAL_OPEN`), so `nft list` prints
/// such a range as nft itself would have written it.
const INTERVAL_OPEN_USERDATA: [u8; 6] = [1, 4, 1, 0, 0, 0];
const NLM_F_CREATE: u16 = 0x400;
const NFPROTO_INET: u8 = 1;

/// One kernel element of a set: its key bytes, flags, and user data.
struct KernelElement {
    key: Vec<u8>,
    flags: u32,
    open: bool,
}

/// Why a change of elements cannot go over netlink (the caller writes it with nft instead).
#[derive(Debug, thiserror::Error)]
pub enum ElementsError {
    /// Port intervals (concatenated interval sets keep a key and an end key), or an interval
    /// starting at address zero, where nft keeps an end element of its own.
    #[error("elements nft writes differently: {0}")]
    Unsupported(String),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}

/// The kernel elements of one element: an address interval is a start key and, unless it runs
/// to the end of the family's space, an end key one past it flagged as an interval end (what
/// nft writes for an rbtree interval set).
fn kernel_elements(e: &crate::delta::Element) -> Result<Vec<KernelElement>, ElementsError> {
    use crate::delta::Element;
    use bulkhead_model::Protocol;
    use std::net::IpAddr;
    fn padded(bytes: &[u8]) -> Vec<u8> {
        let mut v = bytes.to_vec();
        v.resize(bytes.len().next_multiple_of(4), 0);
        v
    }
    match e {
        Element::Addr(lo, hi) => {
            let (start, end): (Vec<u8>, Option<Vec<u8>>) = match (lo, hi) {
                (IpAddr::V4(lo), IpAddr::V4(hi)) => (
                    lo.octets().to_vec(),
                    u32::from(*hi)
                        .checked_add(1)
                        .map(|n| n.to_be_bytes().to_vec()),
                ),
                (IpAddr::V6(lo), IpAddr::V6(hi)) => (
                    lo.octets().to_vec(),
                    u128::from(*hi)
                        .checked_add(1)
                        .map(|n| n.to_be_bytes().to_vec()),
                ),
                _ => return Err(ElementsError::Unsupported(format!("{lo}-{hi}"))),
            };
            if start.iter().all(|b| *b == 0) {
                return Err(ElementsError::Unsupported(format!("{lo}-{hi}")));
            }
            let mut out = vec![KernelElement {
                key: start,
                flags: 0,
                open: end.is_none(),
            }];
            if let Some(end) = end {
                out.push(KernelElement {
                    key: end,
                    flags: NFT_SET_ELEM_INTERVAL_END,
                    open: false,
                });
            }
            Ok(out)
        }
        Element::AddrProtoPort(ip, protocol, port) => {
            let mut key = match ip {
                IpAddr::V4(a) => a.octets().to_vec(),
                IpAddr::V6(a) => a.octets().to_vec(),
            };
            let number = match protocol.canonical() {
                Protocol::Tcp => 6,
                Protocol::Udp => 17,
                Protocol::Sctp => 132,
                Protocol::Icmp => 1,
                Protocol::Icmpv6 => 58,
                Protocol::Number(n) => n,
            };
            key.extend(padded(&[number]));
            key.extend(padded(&port.to_be_bytes()));
            Ok(vec![KernelElement {
                key,
                flags: 0,
                open: false,
            }])
        }
        Element::ProtoPort(..) => Err(ElementsError::Unsupported("port intervals".into())),
    }
}

/// One netlink attribute: length, type, value, padding to four bytes.
fn attribute(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let length = u16::try_from(4 + value.len()).unwrap_or(u16::MAX);
    out.extend(length.to_ne_bytes());
    out.extend(kind.to_ne_bytes());
    out.extend(value);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// One netfilter message: netlink header, `nfgenmsg`, attributes.
fn netfilter_message(
    kind: u16,
    flags: u16,
    sequence: u32,
    family: u8,
    resource: u16,
    body: &[u8],
) -> Vec<u8> {
    let length = u32::try_from(16 + 4 + body.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(length as usize);
    out.extend(length.to_ne_bytes());
    out.extend(kind.to_ne_bytes());
    out.extend(flags.to_ne_bytes());
    out.extend(sequence.to_ne_bytes());
    out.extend(0u32.to_ne_bytes());
    out.push(family);
    out.push(0);
    out.extend(resource.to_be_bytes());
    out.extend(body);
    out
}

/// The largest batch sent as one datagram (below the default socket send buffer).
const MAX_BATCH_BYTES: usize = 192 * 1024;

/// The most elements one message carries (a message stays far below the socket's limits).
const ELEMENTS_PER_MESSAGE: usize = 512;

impl NfTables {
    /// Deletes and adds set elements of `table` (family inet) in one nf_tables transaction:
    /// every change's removed elements first, then the added ones; the kernel commits all of
    /// it or nothing. Without a process start and without nft reading the whole set first
    /// (what `nft add element` does for an interval set: 0.75 s for one address in a set of
    /// 100k intervals here).
    pub fn write_elements(
        &mut self,
        table: &str,
        changes: &[crate::delta::SetChange],
    ) -> Result<(), ElementsError> {
        let mut bodies: Vec<(u16, Vec<u8>)> = Vec::new();
        for (kind, removed) in [
            (NFT_MSG_DELSETELEM, true),
            (NFT_MSG_NEWSETELEM_REQUEST, false),
        ] {
            for change in changes {
                let items = if removed {
                    &change.removed
                } else {
                    &change.added
                };
                let mut elements = Vec::new();
                for item in items {
                    elements.extend(kernel_elements(item)?);
                }
                for chunk in elements.chunks(ELEMENTS_PER_MESSAGE) {
                    let mut list = Vec::new();
                    for element in chunk {
                        let mut key = Vec::new();
                        attribute(&mut key, NFTA_DATA_VALUE, &element.key);
                        let mut body = Vec::new();
                        attribute(&mut body, NFTA_SET_ELEM_KEY | NLA_F_NESTED, &key);
                        if element.flags != 0 {
                            attribute(&mut body, NFTA_SET_ELEM_FLAGS, &element.flags.to_be_bytes());
                        }
                        if element.open {
                            attribute(&mut body, NFTA_SET_ELEM_USERDATA, &INTERVAL_OPEN_USERDATA);
                        }
                        attribute(&mut list, LIST_ELEM | NLA_F_NESTED, &body);
                    }
                    let mut message = Vec::new();
                    attribute(
                        &mut message,
                        NFTA_SET_ELEM_LIST_TABLE,
                        &nul_terminated(table),
                    );
                    attribute(
                        &mut message,
                        NFTA_SET_ELEM_LIST_SET,
                        &nul_terminated(&change.name),
                    );
                    attribute(&mut message, SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED, &list);
                    bodies.push((kind, message));
                }
            }
        }
        if bodies.is_empty() {
            return Ok(());
        }
        let first = self.sequence.wrapping_add(1);
        let mut batch = netfilter_message(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            first,
            0,
            NFNL_SUBSYS_NFTABLES,
            &[],
        );
        let mut sequence = first;
        for (kind, body) in &bodies {
            sequence = sequence.wrapping_add(1);
            let flags = NLM_F_REQUEST
                | NLM_F_ACK
                | if *kind == NFT_MSG_NEWSETELEM_REQUEST {
                    NLM_F_CREATE
                } else {
                    0
                };
            batch.extend(netfilter_message(
                *kind,
                flags,
                sequence,
                NFPROTO_INET,
                0,
                body,
            ));
        }
        sequence = sequence.wrapping_add(1);
        batch.extend(netfilter_message(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            sequence,
            0,
            NFNL_SUBSYS_NFTABLES,
            &[],
        ));
        let last = sequence;
        // One batch is one datagram, bounded by the socket's send buffer (212,992 bytes by
        // default): a larger change goes to nft, which is not bounded so.
        if batch.len() > MAX_BATCH_BYTES {
            return Err(ElementsError::Unsupported(format!(
                "a batch of {} bytes (more than {MAX_BATCH_BYTES})",
                batch.len()
            )));
        }
        self.sequence = last;
        self.socket.send(&batch, 0).map_err(NetlinkError::from)?;
        // The kernel answers a batch's messages in order; a generation request sent after it
        // is answered after all of them, so its reply ends the wait whatever was acknowledged.
        let mut failure = None;
        let barrier = self.sequence.wrapping_add(1);
        self.sequence = barrier;
        self.socket
            .send(
                &encode(
                    NetfilterProtoFamily::Unspec,
                    NfTablesMessage::GetGen(GenMessage { attributes: vec![] }),
                    NLM_F_REQUEST | NLM_F_ACK,
                    barrier,
                ),
                0,
            )
            .map_err(NetlinkError::from)?;
        loop {
            let size = self
                .socket
                .recv(&mut &mut self.buffer[..], 0)
                .map_err(NetlinkError::from)?;
            for parsed in messages(&self.buffer[..size]) {
                let (kind, seq, message) = parsed?;
                if seq == barrier {
                    if kind == NLMSG_ERROR || kind == NLMSG_DONE {
                        return match failure {
                            None => Ok(()),
                            Some(errno) => Err(NetlinkError::Kernel {
                                request: "NEWSETELEM/DELSETELEM batch",
                                errno,
                            }
                            .into()),
                        };
                    }
                    continue;
                }
                let ours = seq.wrapping_sub(first) <= last.wrapping_sub(first);
                if ours && kind == NLMSG_ERROR {
                    let errno = error_code(message);
                    if errno != 0 && failure.is_none() {
                        failure = Some(errno);
                    }
                }
            }
        }
    }
}

/// The fingerprint being computed: what of Bulkhead's objects is hashed.
struct Print<'a> {
    table: &'a [u8],
    hasher: std::collections::hash_map::DefaultHasher,
    objects: usize,
}

impl Print<'_> {
    fn absorb(
        &mut self,
        kind: u16,
        table_kind: u16,
        hashed: &[u16],
        attributes: NlasIterator<&[u8]>,
    ) {
        let attributes: Vec<_> = attributes.flatten().collect();
        let ours = attributes
            .iter()
            .any(|a| a.kind() == table_kind && a.value() == self.table);
        if !ours {
            return;
        }
        self.objects += 1;
        kind.hash(&mut self.hasher);
        for a in attributes.iter().filter(|a| hashed.contains(&a.kind())) {
            a.kind().hash(&mut self.hasher);
            a.value().hash(&mut self.hasher);
        }
        if kind == NFT_MSG_NEWRULE {
            for a in attributes.iter().filter(|a| a.kind() == RULE_EXPRESSIONS) {
                for element in NlasIterator::new(a.value()).flatten() {
                    if element.kind() != LIST_ELEM {
                        continue;
                    }
                    let parts: Vec<_> = NlasIterator::new(element.value()).flatten().collect();
                    let counter = parts
                        .iter()
                        .any(|p| p.kind() == EXPR_NAME && p.value() == b"counter\0");
                    for p in &parts {
                        if !(counter && p.kind() == EXPR_DATA) {
                            p.kind().hash(&mut self.hasher);
                            p.value().hash(&mut self.hasher);
                        }
                    }
                }
            }
        }
    }
}

/// One netfilter request (`NfTablesMessage`, `ConntrackMessage`, ...) as bytes to send.
pub fn encode(
    family: NetfilterProtoFamily,
    body: impl Into<NetfilterMessageInner>,
    flags: u16,
    sequence: u32,
) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = sequence;
    let mut packet = NetlinkMessage::new(
        header,
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(family, 0, 0),
            body,
        )),
    );
    packet.finalize();
    let mut out = vec![0; packet.buffer_len()];
    packet.serialize(&mut out);
    out
}

/// One netlink message of a datagram: type, sequence number, the whole message.
pub type Message<'a> = (u16, u32, &'a [u8]);

/// The netlink messages of one received datagram; a malformed one is an error (and the last
/// item), so a reader never waits for replies that were in it.
pub fn messages(datagram: &[u8]) -> impl Iterator<Item = Result<Message<'_>, NetlinkError>> + '_ {
    let mut offset = 0;
    std::iter::from_fn(move || {
        if offset >= datagram.len() {
            return None;
        }
        let parsed = NetlinkBuffer::new_checked(&datagram[offset..])
            .map_err(|e| NetlinkError::Malformed(e.to_string()))
            .and_then(|raw| {
                let length = raw.length() as usize;
                if length == 0 || offset + length > datagram.len() {
                    return Err(NetlinkError::Malformed(format!(
                        "a message of {length} bytes"
                    )));
                }
                Ok((raw.message_type(), raw.sequence_number(), length))
            });
        Some(match parsed {
            Ok((kind, sequence, length)) => {
                let message = &datagram[offset..offset + length];
                offset += length.next_multiple_of(4);
                Ok((kind, sequence, message))
            }
            Err(e) => {
                offset = datagram.len();
                Err(e)
            }
        })
    })
}

/// The error code of an `NLMSG_ERROR` message (0: an acknowledgement), as a positive errno.
pub fn error_code(message: &[u8]) -> i32 {
    // The payload starts after the 16-byte netlink header with a native-endian i32.
    message
        .get(16..20)
        .map(|b| -i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        // EIO, for an error message too short to carry its code.
        .unwrap_or(5)
}

/// The payload of a message (after its 16-byte netlink header).
fn payload(message: &[u8]) -> &[u8] {
    message.get(16..).unwrap_or_default()
}

fn nul_terminated(text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    bytes
}
