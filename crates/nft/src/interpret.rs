//! A reference interpreter of a [`Ruleset`]: "would this new connection pass?", following
//! nftables' jump/goto/return rules, so tests can compare the compiler with the engine without
//! root. Established traffic is not modelled (it is accepted first in the real table).

use crate::ruleset::{Match, Mode, Ruleset, SetData, Side, Verdict};
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
    /// The destination is an address of the node itself (the packet meets the input hook).
    pub dst_local: bool,
}

enum Outcome {
    Return,
    Drop,
}

/// What the forward hook does with the first packet of a connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evaluation {
    pub allowed: bool,
    /// The would-be verdicts logged on the way (audited and staged policies), in order.
    pub would: Vec<WouldRecord>,
}

/// One would-deny or would-allow log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WouldRecord {
    pub deny: bool,
    /// `ingress of ns/pod`.
    pub endpoint: String,
    /// The deciding rule of the would-be program.
    pub rule: String,
}

impl Ruleset {
    /// Whether the forward hook lets the first packet of this connection through.
    pub fn allows(&self, packet: &Packet) -> bool {
        self.evaluate(packet).allowed
    }

    /// [`Ruleset::allows`], with the would-be verdicts it logs.
    pub fn evaluate(&self, packet: &Packet) -> Evaluation {
        let mut would = Vec::new();
        let allowed = self.first_packet_passes(packet, &mut would);
        Evaluation { allowed, would }
    }

    fn first_packet_passes(&self, packet: &Packet, would: &mut Vec<WouldRecord>) -> bool {
        if self.enforcement.break_glass {
            return true;
        }
        // A pod interface whose rules are not in place sends and receives nothing.
        if [&packet.iif, &packet.oif]
            .into_iter()
            .flatten()
            .any(|i| self.is_unknown_pod_interface(i))
        {
            return false;
        }
        // So does an address of this node's pod CIDRs without rules (pods behind a bridge);
        // the destination side only for forwarded packets.
        if self.is_unknown_pod_address(packet.iif.as_deref(), packet.src)
            || (!packet.dst_local && self.is_unknown_pod_address(packet.oif.as_deref(), packet.dst))
        {
            return false;
        }
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
            if let Outcome::Drop = self.run(chain, packet, 0, would) {
                return false;
            }
        }
        true
    }

    fn run(
        &self,
        chain: &str,
        packet: &Packet,
        depth: usize,
        would: &mut Vec<WouldRecord>,
    ) -> Outcome {
        let Some(chain) = self.chain(chain) else {
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
                Verdict::Drop if self.enforcement.mode == Mode::Audit => return Outcome::Return,
                Verdict::AuditDeny => return Outcome::Return,
                Verdict::Drop | Verdict::DropAlways => return Outcome::Drop,
                // goto: the target's end returns to the base chain, like ours.
                Verdict::Goto(next) => return self.run(next, packet, depth + 1, would),
                Verdict::Jump(next) => {
                    if let Outcome::Drop = self.run(next, packet, depth + 1, would) {
                        return Outcome::Drop;
                    }
                }
                Verdict::Log(_) => {}
                Verdict::WouldLog { deny } => would.push(WouldRecord {
                    deny: *deny,
                    endpoint: chain.endpoint.clone(),
                    rule: rule.comment.clone(),
                }),
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
                let inside = match self.set(set).map(|s| &s.data) {
                    Some(SetData::Addr4(r) | SetData::Addr6(r)) => r.contains(ip),
                    _ => false,
                };
                inside != *negate
            }
            Match::AddrNot { side, addr: a } => addr(*side) != *a,
            Match::DestinationIsLocal => p.dst_local,
            Match::L4Proto { protocol, negate } => (p.protocol.canonical() == *protocol) != *negate,
            Match::ProtoPort { set, negate } => {
                // No transport header (ICMP): the concatenation cannot match, negated or not.
                let Some(port) = p.dport.filter(|_| p.protocol.has_ports()) else {
                    return false;
                };
                let inside = match self.set(set).map(|s| &s.data) {
                    Some(SetData::ProtoPort(list)) => list
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
                match self.set(set).map(|s| &s.data) {
                    Some(SetData::AddrProtoPort4(list) | SetData::AddrProtoPort6(list)) => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::{Chain, Enforcement, Rule};
    use std::collections::BTreeMap;

    /// One pod's ingress chain: anti-spoofing-like unconditional drop for TCP/22, a policy
    /// deny for everything else.
    fn ruleset(enforcement: Enforcement) -> Ruleset {
        let rule = |matches, verdict| Rule {
            matches,
            verdict,
            comment: String::new(),
        };
        Ruleset {
            sets: vec![],
            chains: vec![Chain {
                name: "in_0".into(),
                comment: "ingress of x/a".into(),
                endpoint: "ingress of x/a".into(),
                rules: vec![
                    rule(
                        vec![Match::L4Proto {
                            protocol: Protocol::Udp,
                            negate: false,
                        }],
                        Verdict::DropAlways,
                    ),
                    rule(vec![], Verdict::Drop),
                ],
            }],
            egress_dispatch: BTreeMap::new(),
            ingress_dispatch: BTreeMap::from([("veth-a".to_string(), "in_0".to_string())]),
            egress_by_address: BTreeMap::new(),
            ingress_by_address: BTreeMap::new(),
            enforcement,
            pod_interface_prefixes: Vec::new(),
            pod_cidrs: Vec::new(),
        }
    }

    fn packet(protocol: Protocol) -> Packet {
        Packet {
            iif: None,
            oif: Some("veth-a".into()),
            src: "10.0.0.1".parse().expect("ip"),
            dst: "10.0.0.2".parse().expect("ip"),
            protocol,
            dport: Some(80),
            icmp: None,
            dst_local: false,
        }
    }

    #[test]
    fn audit_lets_policy_denies_through_but_not_unconditional_drops() {
        let enforce = ruleset(Enforcement::default());
        assert!(!enforce.allows(&packet(Protocol::Tcp)));
        let audit = ruleset(Enforcement {
            mode: Mode::Audit,
            ..Enforcement::default()
        });
        assert!(audit.allows(&packet(Protocol::Tcp)));
        assert!(!audit.allows(&packet(Protocol::Udp)));
    }

    #[test]
    fn a_namespace_under_audit_lets_its_denies_through_while_enforcing() {
        let mut audited = ruleset(Enforcement::default());
        audited.chains[0].rules[1].verdict = Verdict::AuditDeny;
        assert!(audited.allows(&packet(Protocol::Tcp)));
        assert!(
            !audited.allows(&packet(Protocol::Udp)),
            "anti-spoofing-like drops stay"
        );
    }

    #[test]
    fn break_glass_accepts_everything() {
        let open = ruleset(Enforcement {
            break_glass: true,
            ..Enforcement::default()
        });
        assert!(open.allows(&packet(Protocol::Tcp)));
        assert!(open.allows(&packet(Protocol::Udp)));
    }

    #[test]
    fn a_pod_interface_without_rules_passes_nothing() {
        let mut r = ruleset(Enforcement::default());
        let packet = |iif: &str, oif: &str| Packet {
            iif: Some(iif.into()),
            oif: Some(oif.into()),
            src: "10.0.0.9".parse().expect("ip"),
            dst: "10.0.0.1".parse().expect("ip"),
            protocol: Protocol::Tcp,
            dport: Some(80),
            icmp: None,
            dst_local: false,
        };
        // Off: an unknown interface is not judged.
        assert!(r.allows(&packet("veth-new", "eth0")));
        r.pod_interface_prefixes = vec!["veth".into()];
        assert!(!r.allows(&packet("veth-new", "eth0")), "from a new pod");
        assert!(!r.allows(&packet("eth0", "veth-new")), "to a new pod");
        assert!(r.allows(&packet("eth0", "eth1")), "not a pod interface");
        // Break-glass opens everything, new pods too.
        r.enforcement.break_glass = true;
        assert!(r.allows(&packet("veth-new", "eth0")));
    }

    #[test]
    fn an_address_of_the_pod_cidr_without_rules_passes_nothing() {
        let mut r = ruleset(Enforcement::default());
        let packet = |src: &str, dst: &str, dst_local: bool| Packet {
            iif: Some("cni0".into()),
            oif: Some("cni0".into()),
            src: src.parse().expect("ip"),
            dst: dst.parse().expect("ip"),
            protocol: Protocol::Tcp,
            dport: Some(80),
            icmp: None,
            dst_local,
        };
        r.egress_by_address
            .insert("10.244.1.5".parse().expect("ip"), "eg_known".into());
        // Off: not judged.
        assert!(r.allows(&packet("10.244.1.9", "10.1.0.1", false)));
        r.pod_cidrs = vec!["10.244.1.0/24".parse().expect("cidr")];
        assert!(
            !r.allows(&packet("10.244.1.9", "10.1.0.1", false)),
            "from a new pod"
        );
        assert!(
            !r.allows(&packet("10.1.0.1", "10.244.1.9", false)),
            "to a new pod"
        );
        assert!(
            r.allows(&packet("10.244.1.5", "10.1.0.1", false)),
            "a known pod"
        );
        assert!(
            r.allows(&packet("10.1.0.1", "10.244.1.1", true)),
            "the node's own address in the CIDR (the bridge) is not a pod"
        );
        assert!(
            r.allows(&packet("10.2.0.1", "10.1.0.1", false)),
            "outside the CIDR"
        );
    }
}
