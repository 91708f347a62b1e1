//! Protocols and destination-port sets (K8S-PORT-*).

use std::fmt;
use std::str::FromStr;

/// The protocol of a flow. NetworkPolicy itself only speaks TCP, UDP and SCTP (K8S-ISO-9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
    Icmp,
    Icmpv6,
    /// Any other IP protocol number.
    Number(u8),
}

impl Protocol {
    /// The three protocols NetworkPolicy rules can name, in output order.
    pub const L4: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

    /// True for protocols with destination ports.
    pub fn has_ports(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Udp | Protocol::Sctp)
            || matches!(self, Protocol::Number(6 | 17 | 132))
    }

    /// Folds protocol numbers that have a name (6 is TCP) so equal protocols compare equal.
    pub fn canonical(self) -> Self {
        match self {
            Protocol::Number(6) => Protocol::Tcp,
            Protocol::Number(17) => Protocol::Udp,
            Protocol::Number(132) => Protocol::Sctp,
            Protocol::Number(1) => Protocol::Icmp,
            Protocol::Number(58) => Protocol::Icmpv6,
            other => other,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Tcp => f.write_str("TCP"),
            Protocol::Udp => f.write_str("UDP"),
            Protocol::Sctp => f.write_str("SCTP"),
            Protocol::Icmp => f.write_str("ICMP"),
            Protocol::Icmpv6 => f.write_str("ICMPv6"),
            Protocol::Number(n) => write!(f, "{n}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol {0:?}: expected TCP, UDP, SCTP, ICMP, ICMPv6 or a number 1-255")]
pub struct UnknownProtocol(pub String);

impl FromStr for Protocol {
    type Err = UnknownProtocol;

    /// Case-insensitive, for the command line; the loader checks manifest spelling itself.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            "SCTP" => Ok(Protocol::Sctp),
            "ICMP" => Ok(Protocol::Icmp),
            "ICMPV6" => Ok(Protocol::Icmpv6),
            other => match other.parse::<u8>() {
                Ok(n) if n >= 1 => Ok(Protocol::Number(n).canonical()),
                _ => Err(UnknownProtocol(s.to_string())),
            },
        }
    }
}

/// An inclusive range of destination ports, `start <= end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    start: u16,
    end: u16,
}

impl PortRange {
    /// Returns `None` when `end < start`.
    pub fn new(start: u16, end: u16) -> Option<Self> {
        (start <= end).then_some(Self { start, end })
    }

    /// Every port, 1-65535.
    pub fn full() -> Self {
        Self {
            start: 1,
            end: u16::MAX,
        }
    }

    pub fn single(port: u16) -> Self {
        Self {
            start: port,
            end: port,
        }
    }

    pub fn start(self) -> u16 {
        self.start
    }

    pub fn end(self) -> u16 {
        self.end
    }

    pub fn contains(self, port: u16) -> bool {
        self.start <= port && port <= self.end
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// A set of ports in 1..=65535 as ordered, disjoint, non-adjacent ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PortSet {
    ranges: Vec<PortRange>,
}

impl PortSet {
    pub const MIN: u16 = 1;
    pub const MAX: u16 = 65535;

    pub fn empty() -> Self {
        Self::default()
    }

    pub fn all() -> Self {
        Self {
            ranges: vec![PortRange {
                start: Self::MIN,
                end: Self::MAX,
            }],
        }
    }

    pub fn from_ranges(ranges: impl IntoIterator<Item = PortRange>) -> Self {
        let mut set = Self::empty();
        for r in ranges {
            set.insert(r);
        }
        set
    }

    pub fn ranges(&self) -> &[PortRange] {
        &self.ranges
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn is_all(&self) -> bool {
        *self == Self::all()
    }

    pub fn contains(&self, port: u16) -> bool {
        self.ranges.iter().any(|r| r.contains(port))
    }

    pub fn insert(&mut self, range: PortRange) {
        let mut merged = range;
        let mut out = Vec::with_capacity(self.ranges.len() + 1);
        for r in &self.ranges {
            let touches = u32::from(r.end) + 1 >= u32::from(merged.start)
                && u32::from(merged.end) + 1 >= u32::from(r.start);
            if touches {
                merged.start = merged.start.min(r.start);
                merged.end = merged.end.max(r.end);
            } else {
                out.push(*r);
            }
        }
        out.push(merged);
        out.sort();
        self.ranges = out;
    }

    pub fn union(&self, other: &PortSet) -> PortSet {
        let mut set = self.clone();
        for r in &other.ranges {
            set.insert(*r);
        }
        set
    }

    pub fn intersection(&self, other: &PortSet) -> PortSet {
        let mut out = Vec::new();
        for a in &self.ranges {
            for b in &other.ranges {
                let start = a.start.max(b.start);
                let end = a.end.min(b.end);
                if start <= end {
                    out.push(PortRange { start, end });
                }
            }
        }
        PortSet::from_ranges(out)
    }

    /// Ports in `self` but not in `other`.
    pub fn difference(&self, other: &PortSet) -> PortSet {
        let mut out = Vec::new();
        for a in &self.ranges {
            let mut start = u32::from(a.start);
            let end = u32::from(a.end);
            for b in &other.ranges {
                let (bs, be) = (u32::from(b.start), u32::from(b.end));
                if be < start || bs > end {
                    continue;
                }
                if bs > start {
                    out.push((start, bs - 1));
                }
                start = start.max(be + 1);
            }
            if start <= end {
                out.push((start, end));
            }
        }
        PortSet::from_ranges(
            out.into_iter().filter_map(|(s, e)| {
                PortRange::new(u16::try_from(s).ok()?, u16::try_from(e).ok()?)
            }),
        )
    }
}

impl fmt::Display for PortSet {
    /// `all`, `none`, or a comma list such as `80,443,8000-8080` (the `map` JSON contract).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_all() {
            return f.write_str("all");
        }
        if self.is_empty() {
            return f.write_str("none");
        }
        let parts: Vec<String> = self.ranges.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(ranges: &[(u16, u16)]) -> PortSet {
        PortSet::from_ranges(ranges.iter().filter_map(|&(a, b)| PortRange::new(a, b)))
    }

    #[test]
    fn adjacent_ranges_merge_and_print_compactly() {
        let s = set(&[(80, 80), (81, 90), (443, 443)]);
        assert_eq!(s.to_string(), "80-90,443");
        assert_eq!(set(&[(1, 65535)]).to_string(), "all");
        assert_eq!(PortSet::empty().to_string(), "none");
    }

    #[test]
    fn protocol_names_parse_case_insensitively_and_numbers_fold() {
        assert_eq!("tcp".parse::<Protocol>(), Ok(Protocol::Tcp));
        assert_eq!("17".parse::<Protocol>(), Ok(Protocol::Udp));
        assert!("0".parse::<Protocol>().is_err());
        assert!("HTTP".parse::<Protocol>().is_err());
    }

    proptest! {
        #[test]
        fn set_algebra_agrees_with_membership(
            a in proptest::collection::vec((1u16..200, 0u16..20), 0..5),
            b in proptest::collection::vec((1u16..200, 0u16..20), 0..5),
            port in 1u16..230,
        ) {
            let sa = set(&a.iter().map(|&(s, l)| (s, s + l)).collect::<Vec<_>>());
            let sb = set(&b.iter().map(|&(s, l)| (s, s + l)).collect::<Vec<_>>());
            prop_assert_eq!(sa.union(&sb).contains(port), sa.contains(port) || sb.contains(port));
            prop_assert_eq!(sa.intersection(&sb).contains(port), sa.contains(port) && sb.contains(port));
            prop_assert_eq!(sa.difference(&sb).contains(port), sa.contains(port) && !sb.contains(port));
        }
    }
}
