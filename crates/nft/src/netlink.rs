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
