//! Deterministic `nft -f` text. The script replaces Bulkhead's table in one transaction
//! (`add table`, `delete table`, `add table ...`): nftables applies a file atomically, so the
//! old rules stay in force until the new ones are complete, and start-up never opens a window.

use crate::ruleset::{
    Chain, Counts, DENY_COUNT_GROUP, DENY_COUNT_SNAPLEN, DENY_LOG_GROUP, DENY_LOG_RATE, Match,
    Mode, NamedSet, Ruleset, SetData, Side, TABLE, UNKNOWN_INTERFACE, Verdict, rule_id,
};
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

/// Quoted for nft, at most `max` *bytes* (nft's limits count bytes: a comment of 60 non-ASCII
/// letters cut by characters made it refuse the whole transaction), cut at a character
/// boundary.
fn quote(text: &str, max: usize) -> String {
    let mut clean = String::with_capacity(max.min(text.len()));
    for c in text
        .chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
    {
        if clean.len() + c.len_utf8() > max {
            break;
        }
        clean.push(c);
    }
    format!("\"{clean}\"")
}

/// Address intervals as set elements: `a` for a single address, `a-b` otherwise.
fn intervals<A: PartialEq + std::fmt::Display>(
    ranges: impl Iterator<Item = (A, A)>,
) -> Vec<String> {
    ranges
        .map(|(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        })
        .collect()
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
    render_counting(ruleset, &Counts::new())
}

/// [`render`], with deny rules starting from `counts` (the kernel's, for their ids).
pub fn render_counting(ruleset: &Ruleset, counts: &Counts) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Bulkhead dataplane: generated, do not edit. Applied as one transaction."
    );
    let _ = writeln!(out, "table inet {TABLE} {{}}");
    let _ = writeln!(out, "delete table inet {TABLE}");
    let _ = writeln!(out, "table inet {TABLE} {{");
    for set in &ruleset.sets {
        let _ = writeln!(out, "  set {} {}", set.name, set_body(set));
    }
    for (name, dispatch) in [
        ("egress_dispatch", &ruleset.egress_dispatch),
        ("ingress_dispatch", &ruleset.ingress_dispatch),
    ] {
        let items: Vec<String> = dispatch
            .iter()
            .map(|(i, c)| format!("{} : jump {c}", quoted_interface(i)))
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
    // Break-glass and the deny verdict are one-element maps: flipping them is an O(1) change
    // (`render_break_glass`), and the policy rules stay the same in every mode.
    let open = if ruleset.enforcement.break_glass {
        " elements = { ipv4 : accept, ipv6 : accept };"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "  map break_glass {{ type nf_proto : verdict;{open} }}"
    );
    let deny = match ruleset.enforcement.mode {
        Mode::Enforce => "drop",
        Mode::Audit => "return",
    };
    let _ = writeln!(
        out,
        "  map deny_verdict {{ type nf_proto : verdict; elements = {{ ipv4 : {deny}, ipv6 : {deny} }}; }}"
    );
    let known: Vec<String> = ruleset
        .pod_interfaces()
        .into_iter()
        .map(quoted_interface)
        .collect();
    let _ = writeln!(
        out,
        "  set pod_interfaces {{ type ifname;{} }}",
        elements(&known)
    );
    // Fail closed: a pod interface (by prefix) without a chain yet passes nothing, either
    // way, until its rules are in place; break-glass still opens everything first.
    let mut unknown = String::new();
    for prefix in &ruleset.pod_interface_prefixes {
        let pattern = quote(&format!("{prefix}*"), 15);
        for side in ["iifname", "oifname"] {
            let _ = writeln!(
                unknown,
                "    {side} {pattern} {side} != @pod_interfaces counter drop comment \"{UNKNOWN_INTERFACE}\""
            );
        }
    }
    // The same for pods behind a bridge, by address: from this node's pod CIDRs (both hooks)
    // or forwarded to them, neither a known interface nor a known pod address. Every local
    // pod with rules has an egress dispatch entry, so the egress maps list them all.
    let mut unknown_input = unknown.clone();
    for cidr in &ruleset.pod_cidrs {
        let (family, map) = match cidr {
            ipnet::IpNet::V4(_) => ("ip", "egress_address4"),
            ipnet::IpNet::V6(_) => ("ip6", "egress_address6"),
        };
        let from = format!(
            "    {family} saddr {cidr} iifname != @pod_interfaces {family} saddr != @{map} counter drop comment \"{UNKNOWN_INTERFACE}\"\n"
        );
        unknown.push_str(&from);
        unknown_input.push_str(&from);
        let _ = writeln!(
            unknown,
            "    {family} daddr {cidr} oifname != @pod_interfaces {family} daddr != @{map} counter drop comment \"{UNKNOWN_INTERFACE}\""
        );
    }
    // Egress of the sending pod first (by interface, or by address behind a bridge), then
    // ingress of the receiving pod.
    const EGRESS_STAGE: &str = "    iifname vmap @egress_dispatch\n    ip saddr vmap @egress_address4\n    ip6 saddr vmap @egress_address6\n";
    let _ = write!(
        out,
        "  chain forward {{\n    type filter hook forward priority filter; policy accept;\n    ct state vmap {{ established : accept, related : accept, invalid : drop }}\n    meta nfproto vmap @break_glass\n{unknown}{EGRESS_STAGE}    oifname vmap @ingress_dispatch\n    ip daddr vmap @ingress_address4\n    ip6 daddr vmap @ingress_address6\n  }}\n"
    );
    // A pod's traffic to its own node (kubelet, node-local services) never crosses the forward
    // hook: it meets the same egress stage on the input hook. The node's traffic to its pods is
    // always allowed (semantics.md K8S-ISO-6), so the output hook has no chain. Only pod
    // traffic is touched: nothing here drops the node's other input.
    let _ = write!(
        out,
        "  chain input {{\n    type filter hook input priority filter; policy accept;\n    ct state established,related accept\n    meta nfproto vmap @break_glass\n{unknown_input}{EGRESS_STAGE}  }}\n"
    );
    for chain in &ruleset.chains {
        let _ = writeln!(out, "  chain {} {{", chain.name);
        let _ = writeln!(out, "    comment {}", quoted_comment(&chain.comment));
        for rule in chain_rules(ruleset, chain, counts) {
            let _ = writeln!(out, "    {rule}");
        }
        let _ = writeln!(out, "  }}");
    }
    let _ = writeln!(out, "}}");
    out
}

/// A set's type and elements, `{ type ...; flags interval; elements = { ... }; }`.
fn set_type_and_items(set: &NamedSet) -> (&'static str, Vec<String>) {
    let (kind, mut items): (&str, Vec<String>) = match &set.data {
        SetData::Addr4(r) => ("type ipv4_addr; flags interval;", intervals(r.v4())),
        SetData::Addr6(r) => ("type ipv6_addr; flags interval;", intervals(r.v6())),
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
    items.dedup();
    (kind, items)
}

fn set_body(set: &NamedSet) -> String {
    let (kind, items) = set_type_and_items(set);
    format!("{{ {kind}{} }}", elements(&items))
}

/// `set inet TABLE NAME { ... }`, the declaration of a set added by a delta.
pub fn set_declaration(set: &NamedSet, table: &str) -> String {
    format!("set inet {table} {} {}", set.name, set_body(set))
}

/// ` { a, b }` for `add element`, or `None` for an empty set.
pub fn set_elements(set: &NamedSet) -> Option<String> {
    let (_, items) = set_type_and_items(set);
    (!items.is_empty()).then(|| format!(" {{ {} }}", items.join(", ")))
}

/// One set element as nft writes it (`add element`/`delete element`).
pub fn element(e: &crate::delta::Element) -> String {
    use crate::delta::Element;
    match e {
        Element::Addr(lo, hi) if lo == hi => lo.to_string(),
        Element::Addr(lo, hi) => format!("{lo}-{hi}"),
        Element::ProtoPort(p, r) => format!("{} . {}", protocol_name(*p), range(*r)),
        Element::AddrProtoPort(ip, p, port) => format!("{ip} . {} . {port}", protocol_name(*p)),
    }
}

/// A comment as nft reads it: quoted, cut (by characters) to what nft accepts.
pub fn quoted_comment(text: &str) -> String {
    quote(text, 120)
}

/// An interface name as a map key.
pub fn quoted_interface(name: &str) -> String {
    quote(name, 15)
}

/// The rules of one chain, one nft rule per line, without the chain around them.
pub fn chain_rules(ruleset: &Ruleset, chain: &Chain, counts: &Counts) -> Vec<String> {
    let mut out = Vec::new();
    // A rule split per address family shares its id: the carried count goes to the first.
    let mut carried_once = std::collections::BTreeSet::new();
    let endpoint = chain.endpoint.as_str();
    for rule in &chain.rules {
        let mut parts: Vec<String> = rule
            .matches
            .iter()
            .map(|m| render_match(ruleset, m))
            .collect();
        let denies = matches!(rule.verdict, Verdict::Drop | Verdict::AuditDeny);
        let comment = if denies {
            // Deny rules carry their typed id first (the agent's id table names it, whatever
            // the length of the names), then the names for a person reading the table, cut
            // to what fits. `bulkhead agent metrics` reads the counters back by it.
            format!(
                " comment {}",
                quote(
                    &format!(
                        "bh:{} {endpoint}: {}",
                        rule_id(endpoint, &rule.comment),
                        rule.comment
                    ),
                    127
                )
            )
        } else if rule.comment.is_empty() {
            String::new()
        } else {
            format!(" comment {}", quote(&rule.comment, 120))
        };
        if denies && ruleset.enforcement.log_denies {
            // Logging is its own rule: a `limit` that fails ends the rule, so the verdict
            // must not share it (dataplane.md §4.5). Every denied packet goes to the count
            // group first (before the limit: the agent counts connections, a flood too), then
            // at most DENY_LOG_RATE a second to the flow-log group.
            let prefix = quote(
                &deny_log_prefix(
                    ruleset,
                    rule.verdict == Verdict::AuditDeny,
                    endpoint,
                    &rule.comment,
                ),
                127,
            );
            let mut log = parts.clone();
            log.push(format!(
                "log group {DENY_COUNT_GROUP} snaplen {DENY_COUNT_SNAPLEN} prefix {prefix} \
                 limit rate {DENY_LOG_RATE}/second log group {DENY_LOG_GROUP} prefix {prefix}"
            ));
            out.push(format!("{}{comment}", log.join(" ")));
        }
        let counter = if denies {
            let id = rule_id(endpoint, &rule.comment);
            match counts.get(&id) {
                Some((packets, bytes)) if carried_once.insert(id.clone()) => {
                    format!("counter packets {packets} bytes {bytes}")
                }
                _ => "counter".to_string(),
            }
        } else {
            "counter".to_string()
        };
        parts.push(match &rule.verdict {
            Verdict::Return => "return".into(),
            Verdict::Drop => format!("{counter} meta nfproto vmap @deny_verdict"),
            Verdict::DropAlways => "counter drop".into(),
            Verdict::AuditDeny => format!("{counter} return"),
            Verdict::Goto(c) => format!("goto {c}"),
            Verdict::Log(prefix) => format!(
                "log prefix {}",
                quote(&format!("bulkhead log {prefix}: "), 100)
            ),
            Verdict::Jump(c) => format!("jump {c}"),
            // To the flow log only (not the denied-connections count: nothing is denied),
            // rate-limited like a deny; the limit ends this rule, never the evaluation.
            Verdict::WouldLog { deny } if ruleset.enforcement.log_denies => {
                let prefix = quote(&would_log_prefix(*deny, endpoint, &rule.comment), 127);
                format!(
                    "counter limit rate {DENY_LOG_RATE}/second log group {DENY_LOG_GROUP} prefix {prefix}"
                )
            }
            Verdict::WouldLog { .. } => "counter".into(),
        });
        out.push(format!("{}{comment}", parts.join(" ")));
    }
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
        Match::DestinationIsLocal => "fib daddr type local".to_string(),
        Match::Addr { side, set, negate } => {
            let v6 = matches!(ruleset.set(set).map(|s| &s.data), Some(SetData::Addr6(_)));
            format!("{} {}@{set}", field(*side, v6), not(*negate))
        }
        Match::AddrNot { side, addr } => format!("{} != {addr}", field(*side, addr.is_ipv6())),
        Match::L4Proto { protocol, negate } => {
            format!("meta l4proto {}{}", not(*negate), protocol_name(*protocol))
        }
        Match::ProtoPort { set, negate } => {
            format!("meta l4proto . th dport {}@{set}", not(*negate))
        }
        Match::AddrProtoPort { set } => {
            let v6 = matches!(
                ruleset.set(set).map(|s| &s.data),
                Some(SetData::AddrProtoPort6(_))
            );
            format!(
                "{} . meta l4proto . th dport @{set}",
                field(Side::Destination, v6)
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

/// The NFLOG prefix of a deny: `bh:<D|A>:<rule id>:<endpoint chain comment>:<rule>`, where
/// `A` marks an audit-mode "would deny"; the names after the id may be cut to fit.
/// [`parse_deny_log_prefix`] reads it back.
fn deny_log_prefix(ruleset: &Ruleset, audited: bool, endpoint: &str, rule: &str) -> String {
    let mode = match ruleset.enforcement.mode {
        Mode::Enforce if !audited => 'D',
        _ => 'A',
    };
    format!("bh:{mode}:{}:{endpoint}:{rule}", rule_id(endpoint, rule))
}

/// The NFLOG prefix of a would-be verdict of an audited policy: `bh:W:...` (would deny) or
/// `bh:O:...` (would allow: open), otherwise as [`deny_log_prefix`].
fn would_log_prefix(deny: bool, endpoint: &str, rule: &str) -> String {
    let mode = if deny { 'W' } else { 'O' };
    format!("bh:{mode}:{}:{endpoint}:{rule}", rule_id(endpoint, rule))
}

/// A deny log prefix, read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DenyPrefix<'a> {
    /// Would-deny only (audit).
    pub audit: bool,
    /// Logged by an audited (or staged) policy's rule: `Some(true)` would deny what the
    /// enforced policies allow, `Some(false)` would allow what they deny.
    pub would: Option<bool>,
    /// The typed rule id (absent in records of an agent before ids).
    pub id: Option<&'a str>,
    /// `egress of ns/pod`, possibly cut.
    pub endpoint: &'a str,
    /// The rule's name, possibly cut.
    pub rule: &'a str,
}

fn is_rule_id(text: &str) -> bool {
    text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

pub fn parse_deny_log_prefix(prefix: &str) -> Option<DenyPrefix<'_>> {
    let rest = prefix.strip_prefix("bh:")?;
    let (mode, rest) = rest.split_once(':')?;
    let (audit, would) = match mode {
        "D" => (false, None),
        "A" => (true, None),
        "W" => (true, Some(true)),
        "O" => (false, Some(false)),
        _ => return None,
    };
    let (id, rest) = match rest.split_once(':') {
        Some((id, rest)) if is_rule_id(id) => (Some(id), rest),
        _ => (None, rest),
    };
    let (endpoint, rule) = rest.split_once(':').unwrap_or((rest, ""));
    Some(DenyPrefix {
        audit,
        would,
        id,
        endpoint,
        rule,
    })
}

/// A deny rule's comment, read back: (rule id, `ingress of ns/pod`, rule), the names possibly
/// cut; the id is absent in a table written before ids.
pub fn parse_deny_comment(comment: &str) -> Option<(Option<&str>, &str, &str)> {
    let (id, rest) = match comment.strip_prefix("bh:").and_then(|r| r.split_once(' ')) {
        Some((id, rest)) if is_rule_id(id) => (Some(id), rest),
        _ => (None, comment),
    };
    let (endpoint, rule) = rest.split_once(": ").unwrap_or((rest, ""));
    Some((id, endpoint, rule))
}

/// The transaction that turns break-glass on (every packet accepted before any policy runs) or
/// off, without touching the rules: one element flip.
pub fn render_break_glass(on: bool) -> String {
    let mut out = format!("flush map inet {TABLE} break_glass\n");
    if on {
        let _ = writeln!(
            out,
            "add element inet {TABLE} break_glass {{ ipv4 : accept, ipv6 : accept }}"
        );
    }
    out
}

/// The transaction that removes Bulkhead's table (and nothing else).
pub fn render_removal() -> String {
    format!("table inet {TABLE} {{}}\ndelete table inet {TABLE}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_log_prefixes_read_back() {
        let id = rule_id("ingress of x/web", "NetworkPolicy x/web ingress[0]");
        assert_eq!(
            parse_deny_log_prefix(&format!(
                "bh:A:{id}:ingress of x/web:NetworkPolicy x/web ingress[0]"
            )),
            Some(DenyPrefix {
                audit: true,
                would: None,
                id: Some(id.as_str()),
                endpoint: "ingress of x/web",
                rule: "NetworkPolicy x/web ingress[0]"
            })
        );
        // Written before ids, and cut in the middle of the names: still read.
        assert_eq!(
            parse_deny_log_prefix("bh:D:egress of x/a:end of tier default"),
            Some(DenyPrefix {
                audit: false,
                would: None,
                id: None,
                endpoint: "egress of x/a",
                rule: "end of tier default"
            })
        );
        assert_eq!(
            parse_deny_log_prefix(&format!("bh:D:{id}:egress of x/aaaa")).map(|p| p.id),
            Some(Some(id.as_str()))
        );
        // An audited policy's would-be verdicts.
        for (deny, mode) in [(true, 'W'), (false, 'O')] {
            let prefix = would_log_prefix(deny, "ingress of x/web", "end of tier default");
            assert!(prefix.starts_with(&format!("bh:{mode}:")), "{prefix}");
            let read = parse_deny_log_prefix(&prefix).expect("read back");
            assert_eq!((read.would, read.audit), (Some(deny), deny));
            assert_eq!(read.rule, "end of tier default");
        }
        assert_eq!(parse_deny_log_prefix("bh:X:a:b"), None);
        assert_eq!(parse_deny_log_prefix("other"), None);
        assert_eq!(
            parse_deny_comment(&format!("bh:{id} ingress of x/web: end of tier default")),
            Some((Some(id.as_str()), "ingress of x/web", "end of tier default"))
        );
        assert_eq!(
            parse_deny_comment("ingress of x/web: end of tier default"),
            Some((None, "ingress of x/web", "end of tier default"))
        );
    }

    #[test]
    fn quoted_text_is_cut_by_bytes_at_a_character_boundary() {
        let name = "ж".repeat(60);
        let quoted = quote(&name, 120);
        assert_eq!(quoted.len(), 120 + 2, "{quoted}");
        assert_eq!(
            quote(&format!("a{name}"), 120).len(),
            119 + 2,
            "never half a letter"
        );
        assert_eq!(quote("a\"b\\c\u{7}d", 10), "\"abcd\"");
    }

    #[test]
    fn carried_counts_start_the_deny_rule_once_per_id() {
        use crate::ruleset::{Chain, Enforcement, Match, Rule};
        let deny = |ipv4: bool| Rule {
            matches: vec![Match::Family { ipv4 }],
            verdict: Verdict::Drop,
            comment: "end of tier default".into(),
        };
        let ruleset = Ruleset {
            sets: Vec::new(),
            chains: vec![Chain {
                name: "in_x".into(),
                comment: "ingress of x/a".into(),
                endpoint: "ingress of x/a".into(),
                rules: vec![deny(true), deny(false)],
            }],
            egress_dispatch: Default::default(),
            ingress_dispatch: Default::default(),
            egress_by_address: Default::default(),
            ingress_by_address: Default::default(),
            enforcement: Enforcement::default(),
            pod_interface_prefixes: Vec::new(),
            pod_cidrs: Vec::new(),
        };
        let id = rule_id("ingress of x/a", "end of tier default");
        let counts = Counts::from([(id, (40, 2400))]);
        let rules = chain_rules(&ruleset, &ruleset.chains[0], &counts);
        let started: Vec<&String> = rules
            .iter()
            .filter(|r| r.contains("counter packets 40 bytes 2400 meta nfproto vmap @deny_verdict"))
            .collect();
        assert_eq!(started.len(), 1, "{rules:#?}");
        assert!(
            rules
                .iter()
                .any(|r| r.contains("ipv6 counter meta nfproto vmap")),
            "{rules:#?}"
        );
    }

    #[test]
    fn break_glass_is_one_element_flip() {
        assert_eq!(
            render_break_glass(false),
            "flush map inet bulkhead break_glass\n"
        );
        assert!(
            render_break_glass(true).ends_with(
                "add element inet bulkhead break_glass { ipv4 : accept, ipv6 : accept }\n"
            )
        );
    }
}
