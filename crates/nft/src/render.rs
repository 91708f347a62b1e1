//! Deterministic `nft -f` text. The script replaces Bulkhead's table in one transaction
//! (`add table`, `delete table`, `add table ...`): nftables applies a file atomically, so the
//! old rules stay in force until the new ones are complete, and start-up never opens a window.

use crate::ruleset::{Match, Ruleset, SetData, Side, TABLE, Verdict};
use bulkhead_model::{PortRange, Protocol};
use std::fmt::Write as _;

fn protocol_name(p: Protocol) -> String {
    match p.canonical() {
        Protocol::Tcp => "tcp".into(),
        Protocol::Udp => "udp".into(),
        Protocol::Sctp => "sctp".into(),
        Protocol::Icmp => "icmp".into(),
        Protocol::Icmpv6 => "ipv6-icmp".into(),
        Protocol::Number(n) => n.to_string(),
    }
}

fn range(r: PortRange) -> String {
    if r.start() == r.end() {
        r.start().to_string()
    } else {
        format!("{}-{}", r.start(), r.end())
    }
}

fn quote(text: &str, max: usize) -> String {
    let clean: String = text
        .chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .take(max)
        .collect();
    format!("\"{clean}\"")
}

fn elements(items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!(" elements = {{ {} }};", items.join(", "))
    }
}

/// The transaction that replaces the table with `ruleset`.
pub fn render(ruleset: &Ruleset) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Bulkhead dataplane: generated, do not edit. Applied as one transaction."
    );
    let _ = writeln!(out, "table inet {TABLE} {{}}");
    let _ = writeln!(out, "delete table inet {TABLE}");
    let _ = writeln!(out, "table inet {TABLE} {{");
    for set in &ruleset.sets {
        let (kind, items): (&str, Vec<String>) = match &set.data {
            SetData::Addr4(r) => (
                "type ipv4_addr; flags interval;",
                r.v4()
                    .map(|(lo, hi)| {
                        if lo == hi {
                            lo.to_string()
                        } else {
                            format!("{lo}-{hi}")
                        }
                    })
                    .collect(),
            ),
            SetData::Addr6(r) => (
                "type ipv6_addr; flags interval;",
                r.v6()
                    .map(|(lo, hi)| {
                        if lo == hi {
                            lo.to_string()
                        } else {
                            format!("{lo}-{hi}")
                        }
                    })
                    .collect(),
            ),
            SetData::ProtoPort(list) => (
                "type inet_proto . inet_service; flags interval;",
                list.iter()
                    .map(|(p, r)| format!("{} . {}", protocol_name(*p), range(*r)))
                    .collect(),
            ),
            SetData::AddrProtoPort4(list) => (
                "type ipv4_addr . inet_proto . inet_service;",
                list.iter()
                    .map(|(ip, p, port)| format!("{ip} . {} . {port}", protocol_name(*p)))
                    .collect(),
            ),
            SetData::AddrProtoPort6(list) => (
                "type ipv6_addr . inet_proto . inet_service;",
                list.iter()
                    .map(|(ip, p, port)| format!("{ip} . {} . {port}", protocol_name(*p)))
                    .collect(),
            ),
        };
        let mut items = items;
        items.dedup();
        let _ = writeln!(out, "  set {} {{ {kind}{} }}", set.name, elements(&items));
    }
    for (name, dispatch) in [
        ("egress_dispatch", &ruleset.egress_dispatch),
        ("ingress_dispatch", &ruleset.ingress_dispatch),
    ] {
        let items: Vec<String> = dispatch
            .iter()
            .map(|(i, c)| format!("{} : jump {c}", quote(i, 15)))
            .collect();
        let _ = writeln!(
            out,
            "  map {name} {{ type ifname : verdict;{} }}",
            elements(&items)
        );
    }
    for (name, map, v4) in [
        ("egress_address4", &ruleset.egress_by_address, true),
        ("egress_address6", &ruleset.egress_by_address, false),
        ("ingress_address4", &ruleset.ingress_by_address, true),
        ("ingress_address6", &ruleset.ingress_by_address, false),
    ] {
        let items: Vec<String> = map
            .iter()
            .filter(|(ip, _)| ip.is_ipv4() == v4)
            .map(|(ip, c)| format!("{ip} : jump {c}"))
            .collect();
        let kind = if v4 { "ipv4_addr" } else { "ipv6_addr" };
        let _ = writeln!(
            out,
            "  map {name} {{ type {kind} : verdict;{} }}",
            elements(&items)
        );
    }
    let _ = writeln!(out, "  chain forward {{");
    let _ = writeln!(
        out,
        "    type filter hook forward priority filter; policy accept;"
    );
    let _ = writeln!(
        out,
        "    ct state vmap {{ established : accept, related : accept, invalid : drop }}"
    );
    // Egress of the sending pod first (by interface, or by address behind a bridge), then
    // ingress of the receiving pod.
    let _ = writeln!(out, "    iifname vmap @egress_dispatch");
    let _ = writeln!(out, "    ip saddr vmap @egress_address4");
    let _ = writeln!(out, "    ip6 saddr vmap @egress_address6");
    let _ = writeln!(out, "    oifname vmap @ingress_dispatch");
    let _ = writeln!(out, "    ip daddr vmap @ingress_address4");
    let _ = writeln!(out, "    ip6 daddr vmap @ingress_address6");
    let _ = writeln!(out, "  }}");
    for chain in &ruleset.chains {
        let _ = writeln!(out, "  chain {} {{", chain.name);
        let _ = writeln!(out, "    comment {}", quote(&chain.comment, 120));
        for rule in &chain.rules {
            let mut parts: Vec<String> = rule
                .matches
                .iter()
                .map(|m| render_match(ruleset, m))
                .collect();
            parts.push(match &rule.verdict {
                Verdict::Return => "return".into(),
                Verdict::Drop => "drop".into(),
                Verdict::Goto(c) => format!("goto {c}"),
                Verdict::Log(prefix) => format!(
                    "log prefix {}",
                    quote(&format!("bulkhead log {prefix}: "), 100)
                ),
            });
            if !rule.comment.is_empty() {
                parts.push(format!("comment {}", quote(&rule.comment, 120)));
            }
            let _ = writeln!(out, "    {}", parts.join(" "));
        }
        let _ = writeln!(out, "  }}");
    }
    let _ = writeln!(out, "}}");
    out
}

fn render_match(ruleset: &Ruleset, m: &Match) -> String {
    let field = |side: Side, v6: bool| {
        let family = if v6 { "ip6" } else { "ip" };
        let dir = if side == Side::Source {
            "saddr"
        } else {
            "daddr"
        };
        format!("{family} {dir}")
    };
    let not = |negate: bool| if negate { "!= " } else { "" };
    match m {
        Match::Family { ipv4 } => format!("meta nfproto {}", if *ipv4 { "ipv4" } else { "ipv6" }),
        Match::Addr { side, set, negate } => {
            let v6 = matches!(ruleset.sets[*set].data, SetData::Addr6(_));
            format!(
                "{} {}@{}",
                field(*side, v6),
                not(*negate),
                ruleset.sets[*set].name
            )
        }
        Match::AddrNot { side, addr } => format!("{} != {addr}", field(*side, addr.is_ipv6())),
        Match::L4Proto { protocol, negate } => {
            format!("meta l4proto {}{}", not(*negate), protocol_name(*protocol))
        }
        Match::ProtoPort { set, negate } => format!(
            "meta l4proto . th dport {}@{}",
            not(*negate),
            ruleset.sets[*set].name
        ),
        Match::AddrProtoPort { set } => {
            let v6 = matches!(ruleset.sets[*set].data, SetData::AddrProtoPort6(_));
            format!(
                "{} . meta l4proto . th dport @{}",
                field(Side::Destination, v6),
                ruleset.sets[*set].name
            )
        }
        Match::Icmp {
            v6,
            icmp_type,
            code,
            negate,
        } => {
            let family = if *v6 { "icmpv6" } else { "icmp" };
            match (code, negate) {
                (Some(c), false) => format!("{family} type {icmp_type} {family} code {c}"),
                (None, false) => format!("{family} type {icmp_type}"),
                // `notICMP {type, code}`: not both; nft has no OR, so the code-less form is exact
                // and the coded form excludes the pair through a concatenation.
                (Some(c), true) => {
                    format!("{family} type . {family} code != {{ {icmp_type} . {c} }}")
                }
                (None, true) => format!("{family} type != {icmp_type}"),
            }
        }
    }
}

/// The transaction that removes Bulkhead's table (and nothing else).
pub fn render_removal() -> String {
    format!("table inet {TABLE} {{}}\ndelete table inet {TABLE}\n")
}
