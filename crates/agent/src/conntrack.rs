//! Policy tightening: when a new ruleset removes an allow, connections it no longer allows
//! are cut by deleting their conntrack entries (the `conntrack` tool, Debian package
//! `conntrack`). The next packet of such a flow is then new to the kernel and meets the
//! policy (with `nf_conntrack_tcp_loose=1`, the default, mid-stream packets are picked up as
//! new; with 0 they are dropped as invalid). Choice: cut, rather than let removed access live on
//! until the connection ends.

use std::net::IpAddr;
use std::process::Command;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackedFlow {
    pub protocol: String,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

/// Parses `conntrack -L` lines: the first `src= dst= sport= dport=` tuple is the original
/// direction.
pub fn parse(listing: &str) -> Vec<TrackedFlow> {
    listing
        .lines()
        .filter_map(|line| {
            let protocol = line.split_whitespace().next()?.to_string();
            let field = |key: &str| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(key))
                    .map(str::to_string)
            };
            Some(TrackedFlow {
                protocol,
                src: field("src=")?.parse().ok()?,
                dst: field("dst=")?.parse().ok()?,
                sport: field("sport=")?.parse().ok()?,
                dport: field("dport=")?.parse().ok()?,
            })
        })
        .filter(|f| matches!(f.protocol.as_str(), "tcp" | "udp" | "sctp"))
        .collect()
}

/// The tracked TCP/UDP/SCTP flows of the host.
pub fn list() -> Vec<TrackedFlow> {
    Command::new("conntrack")
        .args(["-L", "-o", "id"])
        .output()
        .ok()
        .map(|o| parse(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or_default()
}

/// Deletes the entries of one flow; returns whether the tool succeeded.
pub fn delete(flow: &TrackedFlow) -> bool {
    Command::new("conntrack")
        .args([
            "-D",
            "-p",
            &flow.protocol,
            "-s",
            &flow.src.to_string(),
            "-d",
            &flow.dst.to_string(),
            "--sport",
            &flow.sport.to_string(),
            "--dport",
            &flow.dport.to_string(),
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_lines_give_the_original_tuple() {
        let text = "tcp      6 431998 ESTABLISHED src=10.0.1.1 dst=10.0.2.1 sport=40000 dport=80 src=10.0.2.1 dst=10.0.1.1 sport=80 dport=40000 [ASSURED] mark=0 use=1 id=1\nicmp     1 29 src=10.0.1.1 dst=10.0.2.1 type=8 code=0 id=7 src=10.0.2.1 dst=10.0.1.1 type=0 code=0 id=7 mark=0 use=1\n";
        let flows = parse(text);
        assert_eq!(flows.len(), 1);
        assert_eq!(flows[0].dport, 80);
        assert_eq!(flows[0].src.to_string(), "10.0.1.1");
    }
}
