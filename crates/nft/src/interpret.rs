//! A reference interpreter of a [`Ruleset`]: "would this new connection pass?", following
//! nftables' jump/goto/return rules, so tests can compare the compiler with the engine without
//! root. Established traffic is not modelled (it is accepted first in the real table).

use crate::ruleset::{Match, Ruleset, SetData, Side, Verdict};
use bulkhead_model::Protocol;
use std::net::IpAddr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Host interface the packet arrives on (the source pod's), if the source is a local pod.
    pub iif: Option<String>,
    /// Host interface it leaves by (the destination pod's), if the destination is a local pod.
    pub oif: Option<String>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: Protocol,
    pub dport: Option<u16>,
    pub icmp: Option<(u8, Option<u8>)>,
}

enum Outcome {
    Return,
    Drop,
}

impl Ruleset {
    /// Whether the forward hook lets the first packet of this connection through.
    pub fn allows(&self, packet: &Packet) -> bool {
        // The base chain's order: egress by interface, egress by address (pods behind a shared
        // bridge interface), then ingress the same two ways.
        let stages = [
            packet
                .iif
                .as_ref()
                .and_then(|i| self.egress_dispatch.get(i)),
            self.egress_by_address.get(&packet.src),
            packet
                .oif
                .as_ref()
                .and_then(|o| self.ingress_dispatch.get(o)),
            self.ingress_by_address.get(&packet.dst),
        ];
        for chain in stages.into_iter().flatten() {
            if let Outcome::Drop = self.run(chain, packet, 0) {
                return false;
            }
        }
        true
    }

    fn run(&self, chain: &str, packet: &Packet, depth: usize) -> Outcome {
        let Some(chain) = self.chains.iter().find(|c| c.name == chain) else {
            return Outcome::Return;
        };
        if depth > 64 {
            return Outcome::Drop;
        }
        for rule in &chain.rules {
            if !rule.matches.iter().all(|m| self.matches(m, packet)) {
                continue;
            }
            match &rule.verdict {
                Verdict::Return => return Outcome::Return,
                Verdict::Drop => return Outcome::Drop,
                // goto: the target's end returns to the base chain, like ours.
                Verdict::Goto(next) => return self.run(next, packet, depth + 1),
                Verdict::Log(_) => {}
            }
        }
        Outcome::Return
    }

    fn matches(&self, m: &Match, p: &Packet) -> bool {
        let addr = |side: Side| if side == Side::Source { p.src } else { p.dst };
        match m {
            Match::Family { ipv4 } => p.src.is_ipv4() == *ipv4,
            Match::Addr { side, set, negate } => {
                let ip = addr(*side);
                let inside = match &self.sets[*set].data {
                    SetData::Addr4(r) | SetData::Addr6(r) => r.contains(ip),
                    _ => false,
                };
                inside != *negate
            }
            Match::AddrNot { side, addr: a } => addr(*side) != *a,
            Match::L4Proto { protocol, negate } => (p.protocol.canonical() == *protocol) != *negate,
            Match::ProtoPort { set, negate } => {
                // No transport header (ICMP): the concatenation cannot match, negated or not.
                let Some(port) = p.dport.filter(|_| p.protocol.has_ports()) else {
                    return false;
                };
                let inside = match &self.sets[*set].data {
                    SetData::ProtoPort(list) => list
                        .iter()
                        .any(|(proto, r)| *proto == p.protocol.canonical() && r.contains(port)),
                    _ => false,
                };
                inside != *negate
            }
            Match::AddrProtoPort { set } => {
                let Some(port) = p.dport.filter(|_| p.protocol.has_ports()) else {
                    return false;
                };
                match &self.sets[*set].data {
                    SetData::AddrProtoPort4(list) | SetData::AddrProtoPort6(list) => {
                        list.iter().any(|(ip, proto, pt)| {
                            *ip == p.dst && *proto == p.protocol.canonical() && *pt == port
                        })
                    }
                    _ => false,
                }
            }
            Match::Icmp {
                v6,
                icmp_type,
                code,
                negate,
            } => {
                let is_icmp = p.protocol.canonical()
                    == if *v6 {
                        Protocol::Icmpv6
                    } else {
                        Protocol::Icmp
                    };
                // Like nft: without the ICMP header neither `icmp type x` nor `!= x` matches.
                let Some((t, c)) = p.icmp.filter(|_| is_icmp) else {
                    return false;
                };
                let hit = t == *icmp_type && code.is_none_or(|want| c == Some(want));
                hit != *negate
            }
        }
    }
}
