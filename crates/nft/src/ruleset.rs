//! The typed ruleset: everything the kernel holds for Bulkhead, in one `inet` table.

use bulkhead_model::{AddrRanges, PortRange, Protocol};
use std::collections::BTreeMap;
use std::net::IpAddr;

pub const TABLE: &str = "bulkhead";

/// Names are stable identities, never positions: a chain is named by the pod it enforces
/// (a hash of `ns/name`), a set by its content, so a change elsewhere in the cluster renames
/// nothing here and a delta ([`crate::delta`]) touches only the objects that changed.
#[derive(Clone, Debug, PartialEq)]
pub struct Ruleset {
    /// Sorted by name.
    pub sets: Vec<NamedSet>,
    /// Per-endpoint and per-tier chains, sorted by name (the base `forward` chain is fixed,
    /// see `render`).
    pub chains: Vec<Chain>,
    /// Host-side interface of a local pod -> its egress chain (traffic *from* the pod).
    pub egress_dispatch: BTreeMap<String, String>,
    /// Host-side interface of a local pod -> its ingress chain (traffic *to* the pod).
    pub ingress_dispatch: BTreeMap<String, String>,
    /// Pods that share their host interface (bridged CNIs, where the bridge is the interface)
    /// are dispatched by address instead: pod address -> chain.
    pub egress_by_address: BTreeMap<IpAddr, String>,
    pub ingress_by_address: BTreeMap<IpAddr, String>,
    pub enforcement: Enforcement,
    /// Host interfaces with these name prefixes are pods' (like Felix's `InterfacePrefix`):
    /// one that has no chain yet (a pod whose rules are not in place) is dropped, both ways,
    /// and counted, instead of passing unfiltered. Empty: off.
    pub pod_interface_prefixes: Vec<String>,
    /// This node's pod CIDRs (`node.spec.podCIDRs`): a packet from one of its addresses, or
    /// forwarded to one, that belongs to no pod with rules here is dropped and counted like
    /// an unknown pod interface (pods behind a bridge, where the interface cannot tell). Empty:
    /// off.
    pub pod_cidrs: Vec<ipnet::IpNet>,
}

/// Deny counts (packets, bytes) per rule id that rendered deny rules start from, so a rule a
/// change renders again keeps counting where it was (read from the kernel just before).
pub type Counts = BTreeMap<String, (u64, u64)>;

/// How denies act, and whether they are logged. Kept out of the compiled rules: both modes and
/// break-glass are one-element verdict maps in the table (dataplane.md §4.6, §5.1), so the
/// rules a policy compiles to are the same whatever the mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Enforcement {
    pub mode: Mode,
    /// Each deny also sends a rate-limited NFLOG record (group [`DENY_LOG_GROUP`]) whose prefix
    /// names the pod, direction and deciding rule.
    pub log_denies: bool,
    /// Fail open: the forward hook accepts everything before any policy runs.
    pub break_glass: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Denied connections are dropped.
    #[default]
    Enforce,
    /// Denied connections are logged and let through (a preview before enforcing).
    Audit,
}

/// The NFLOG group that carries deny (and audit would-deny) records.
pub const DENY_LOG_GROUP: u16 = 7;
/// Log records per second per deny rule; a flood is counted but not logged in full.
pub const DENY_LOG_RATE: u32 = 20;
/// The NFLOG group that carries every denied packet's headers, unlimited, for the agent's count
/// of denied connections (a connection is counted once, however often its SYN is sent again).
pub const DENY_COUNT_GROUP: u16 = 8;
/// What the count group copies of a packet: the IP and transport headers.
pub const DENY_COUNT_SNAPLEN: u32 = 128;

#[derive(Clone, Debug, PartialEq)]
pub struct NamedSet {
    pub name: String,
    pub data: SetData,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SetData {
    /// Addresses of one family as intervals.
    Addr4(AddrRanges),
    Addr6(AddrRanges),
    /// `inet_proto . inet_service` intervals.
    ProtoPort(Vec<(Protocol, PortRange)>),
    /// `ipv4_addr . inet_proto . inet_service` (named ports of destination pods).
    AddrProtoPort4(Vec<(IpAddr, Protocol, u16)>),
    AddrProtoPort6(Vec<(IpAddr, Protocol, u16)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Chain {
    pub name: String,
    /// Why the chain exists: the pod and direction, or the tier.
    pub comment: String,
    /// The pod and direction the chain enforces (`ingress of x/a`), also for its tier chains:
    /// deny logs and counters name it.
    pub endpoint: String,
    pub rules: Vec<Rule>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Source,
    Destination,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Match {
    /// `meta nfproto ipv4|ipv6`.
    Family {
        ipv4: bool,
    },
    /// `ip saddr @set` / `ip6 daddr != @set`, by set name.
    Addr {
        side: Side,
        set: String,
        negate: bool,
    },
    /// `ip saddr != 10.0.0.1` (anti-spoofing).
    AddrNot {
        side: Side,
        addr: IpAddr,
    },
    L4Proto {
        protocol: Protocol,
        negate: bool,
    },
    /// `meta l4proto . th dport @set`.
    ProtoPort {
        set: String,
        negate: bool,
    },
    /// `ip daddr . meta l4proto . th dport @set`.
    AddrProtoPort {
        set: String,
    },
    /// `fib daddr type local`: the packet is for this node itself (input hook).
    DestinationIsLocal,
    /// `icmp type 8 icmp code 0` (or icmpv6).
    Icmp {
        v6: bool,
        icmp_type: u8,
        code: Option<u8>,
        negate: bool,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// This direction allows: back to the base chain.
    Return,
    /// A policy denies: dropped when enforcing, logged and let through in audit mode.
    Drop,
    /// Dropped in every mode (anti-spoofing is not a policy decision to preview).
    DropAlways,
    /// A policy denies, in a namespace under audit (`--audit-namespace`): logged as would-deny
    /// and let through whatever the table's mode.
    AuditDeny,
    /// Pass / next tier.
    Goto(String),
    /// Calico `Log`: record and continue.
    Log(String),
    /// Runs a chain and continues with the next rule when it returns (nft `jump`).
    Jump(String),
    /// An audited (or staged) policy's rule would decide otherwise than the enforced
    /// policies: logged as would-deny (`deny`) or would-allow, and evaluation continues.
    WouldLog { deny: bool },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub verdict: Verdict,
    /// The policy rule this implements (`NetworkPolicy x/allow-dns egress[0]`).
    pub comment: String,
}

/// The comment on the rules that drop an unknown pod interface's packets (their counter is
/// read back by it).
pub const UNKNOWN_INTERFACE: &str = "bh:unknown-pod-interface";

impl Ruleset {
    /// Every host interface a chain is dispatched from: the `pod_interfaces` set.
    pub fn pod_interfaces(&self) -> std::collections::BTreeSet<&str> {
        self.egress_dispatch
            .keys()
            .chain(self.ingress_dispatch.keys())
            .map(String::as_str)
            .collect()
    }

    /// Whether `interface` looks like a pod's (a configured prefix) but has no chain.
    pub fn is_unknown_pod_interface(&self, interface: &str) -> bool {
        self.pod_interface_prefixes
            .iter()
            .any(|p| interface.starts_with(p.as_str()))
            && !self.egress_dispatch.contains_key(interface)
            && !self.ingress_dispatch.contains_key(interface)
    }

    /// Whether a packet from `address` (through `interface`) comes from this node's pod
    /// CIDRs but from no pod with rules: neither its interface nor its address is dispatched.
    /// Every local pod with rules has an egress dispatch entry, so egress is the list of them.
    pub fn is_unknown_pod_address(&self, interface: Option<&str>, address: IpAddr) -> bool {
        self.pod_cidrs.iter().any(|c| c.contains(&address))
            && !interface.is_some_and(|i| {
                self.egress_dispatch.contains_key(i) || self.ingress_dispatch.contains_key(i)
            })
            && !self.egress_by_address.contains_key(&address)
    }

    /// The set of this name.
    pub fn set(&self, name: &str) -> Option<&NamedSet> {
        self.sets
            .binary_search_by(|s| s.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.sets[i])
    }

    /// The chain of this name.
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains
            .binary_search_by(|c| c.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.chains[i])
    }
}

/// FNV-1a, 64 bits: a stable hash for names that must be the same in every process and
/// every release (std's hasher promises neither).
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Who a deny rule belongs to: what flow logs and metrics name.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuleIdentity {
    /// `ingress` or `egress`.
    pub direction: String,
    /// `ns/name`.
    pub pod: String,
    /// `NetworkPolicy x/web ingress[0]`, `end of tier default`, ...
    pub rule: String,
}

/// The identity a deny rule carries into the kernel (its comment and log prefix): 16 hex
/// digits of a hash of its pod, direction and rule, the same in every process and release.
/// Names never have to fit into the kernel's 127 bytes; the id -> name table does the naming.
pub fn rule_id(endpoint: &str, rule: &str) -> String {
    format!(
        "{:016x}",
        stable_hash(format!("{endpoint}\n{rule}").as_bytes())
    )
}

impl Ruleset {
    /// Every deny rule's and would-be log's id with its identity.
    pub fn rule_table(&self) -> BTreeMap<String, RuleIdentity> {
        let mut out = BTreeMap::new();
        for chain in &self.chains {
            let Some((direction, pod)) = chain.endpoint.split_once(" of ") else {
                continue;
            };
            for rule in &chain.rules {
                if matches!(
                    rule.verdict,
                    Verdict::Drop | Verdict::AuditDeny | Verdict::WouldLog { .. }
                ) {
                    out.insert(
                        rule_id(&chain.endpoint, &rule.comment),
                        RuleIdentity {
                            direction: direction.to_string(),
                            pod: pod.to_string(),
                            rule: rule.comment.clone(),
                        },
                    );
                }
            }
        }
        out
    }
}
