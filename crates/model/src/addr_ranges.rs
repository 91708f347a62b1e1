//! Sets of IP addresses as ordered, disjoint inclusive ranges per family: the shape nftables
//! interval sets take, and the algebra (union, intersection, difference) policy compilation needs
//! (an ipBlock is its CIDR minus its excepts; a Calico rule is nets AND selector minus notNets).

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AddrRanges {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

fn normalise<T: Copy + Ord + num_like::Step>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if T::succ(last.1).is_none_or(|next| lo <= next) => {
                if hi > last.1 {
                    last.1 = hi;
                }
            }
            _ => out.push((lo, hi)),
        }
    }
    out
}

fn intersect<T: Copy + Ord>(a: &[(T, T)], b: &[(T, T)]) -> Vec<(T, T)> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let lo = a[i].0.max(b[j].0);
        let hi = a[i].1.min(b[j].1);
        if lo <= hi {
            out.push((lo, hi));
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

fn subtract<T: Copy + Ord + num_like::Step>(a: &[(T, T)], b: &[(T, T)]) -> Vec<(T, T)> {
    let mut out = Vec::new();
    for &(lo, hi) in a {
        let mut start = Some(lo);
        for &(blo, bhi) in b {
            let Some(s) = start else { break };
            if bhi < s || blo > hi {
                continue;
            }
            if blo > s {
                out.push((s, T::pred(blo).unwrap_or(blo)));
            }
            start = T::succ(bhi);
        }
        if let Some(s) = start
            && s <= hi
        {
            out.push((s, hi));
        }
    }
    out
}

mod num_like {
    pub trait Step: Sized {
        fn succ(self) -> Option<Self>;
        fn pred(self) -> Option<Self>;
    }
    impl Step for u32 {
        fn succ(self) -> Option<Self> {
            self.checked_add(1)
        }
        fn pred(self) -> Option<Self> {
            self.checked_sub(1)
        }
    }
    impl Step for u128 {
        fn succ(self) -> Option<Self> {
            self.checked_add(1)
        }
        fn pred(self) -> Option<Self> {
            self.checked_sub(1)
        }
    }
}

impl AddrRanges {
    pub fn empty() -> Self {
        Self::default()
    }

    pub fn everything() -> Self {
        Self {
            v4: vec![(0, u32::MAX)],
            v6: vec![(0, u128::MAX)],
        }
    }

    pub fn from_net(net: IpNet) -> Self {
        match net {
            IpNet::V4(n) => Self {
                v4: vec![(u32::from(n.network()), u32::from(n.broadcast()))],
                v6: vec![],
            },
            IpNet::V6(n) => Self {
                v4: vec![],
                v6: vec![(u128::from(n.network()), u128::from(n.broadcast()))],
            },
        }
    }

    pub fn from_addr(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => Self {
                v4: vec![(u32::from(a), u32::from(a))],
                v6: vec![],
            },
            IpAddr::V6(a) => Self {
                v4: vec![],
                v6: vec![(u128::from(a), u128::from(a))],
            },
        }
    }

    /// The set of these addresses, built in one sort (not one union per address, which is
    /// quadratic over a cluster's pods).
    pub fn from_addrs(ips: impl IntoIterator<Item = IpAddr>) -> Self {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for ip in ips {
            match ip {
                IpAddr::V4(a) => v4.push((u32::from(a), u32::from(a))),
                IpAddr::V6(a) => v6.push((u128::from(a), u128::from(a))),
            }
        }
        Self {
            v4: normalise(v4),
            v6: normalise(v6),
        }
    }

    /// The set of these inclusive ranges (a pair of two families is ignored).
    pub fn from_ranges(ranges: impl IntoIterator<Item = (IpAddr, IpAddr)>) -> Self {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for range in ranges {
            match range {
                (IpAddr::V4(lo), IpAddr::V4(hi)) if lo <= hi => {
                    v4.push((u32::from(lo), u32::from(hi)))
                }
                (IpAddr::V6(lo), IpAddr::V6(hi)) if lo <= hi => {
                    v6.push((u128::from(lo), u128::from(hi)))
                }
                _ => {}
            }
        }
        Self {
            v4: normalise(v4),
            v6: normalise(v6),
        }
    }

    /// Both families' ranges, in order, as addresses.
    pub fn ranges(&self) -> impl Iterator<Item = (IpAddr, IpAddr)> + '_ {
        self.v4()
            .map(|(lo, hi)| (IpAddr::V4(lo), IpAddr::V4(hi)))
            .chain(self.v6().map(|(lo, hi)| (IpAddr::V6(lo), IpAddr::V6(hi))))
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    pub fn union(&self, other: &Self) -> Self {
        Self {
            v4: normalise(self.v4.iter().chain(&other.v4).copied().collect()),
            v6: normalise(self.v6.iter().chain(&other.v6).copied().collect()),
        }
    }

    pub fn intersection(&self, other: &Self) -> Self {
        Self {
            v4: intersect(&self.v4, &other.v4),
            v6: intersect(&self.v6, &other.v6),
        }
    }

    pub fn difference(&self, other: &Self) -> Self {
        Self {
            v4: subtract(&self.v4, &other.v4),
            v6: subtract(&self.v6, &other.v6),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            // Ranges are ordered and disjoint: the one that may hold x is the last that
            // starts at or before it.
            IpAddr::V4(a) => {
                let x = u32::from(a);
                let i = self.v4.partition_point(|&(lo, _)| lo <= x);
                i > 0 && self.v4[i - 1].1 >= x
            }
            IpAddr::V6(a) => {
                let x = u128::from(a);
                let i = self.v6.partition_point(|&(lo, _)| lo <= x);
                i > 0 && self.v6[i - 1].1 >= x
            }
        }
    }

    pub fn v4(&self) -> impl Iterator<Item = (Ipv4Addr, Ipv4Addr)> + '_ {
        self.v4
            .iter()
            .map(|&(lo, hi)| (Ipv4Addr::from(lo), Ipv4Addr::from(hi)))
    }

    pub fn v6(&self) -> impl Iterator<Item = (Ipv6Addr, Ipv6Addr)> + '_ {
        self.v6
            .iter()
            .map(|&(lo, hi)| (Ipv6Addr::from(lo), Ipv6Addr::from(hi)))
    }

    /// Only the addresses of one family.
    pub fn family(&self, ipv4: bool) -> Self {
        if ipv4 {
            Self {
                v4: self.v4.clone(),
                v6: vec![],
            }
        } else {
            Self {
                v4: vec![],
                v6: self.v6.clone(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cidr_minus_except() {
        let block = AddrRanges::from_net("10.0.0.0/24".parse().expect("net"));
        let hole = AddrRanges::from_addr("10.0.0.10".parse().expect("ip"));
        let r = block.difference(&hole);
        assert_eq!(r.v4().count(), 2);
        assert!(!r.contains("10.0.0.10".parse().expect("ip")));
        assert!(r.contains("10.0.0.11".parse().expect("ip")));
        assert!(
            AddrRanges::everything()
                .difference(&AddrRanges::everything())
                .is_empty()
        );
    }

    proptest! {
        #[test]
        fn algebra_agrees_with_membership(a in proptest::collection::vec((0u32..64, 0u32..8), 0..4), b in proptest::collection::vec((0u32..64, 0u32..8), 0..4), x in 0u32..80) {
            let mk = |v: &[(u32, u32)]| v.iter().fold(AddrRanges::empty(), |acc, &(s, l)| acc.union(&AddrRanges { v4: vec![(s, s + l)], v6: vec![] }));
            let (sa, sb) = (mk(&a), mk(&b));
            let ip = IpAddr::V4(Ipv4Addr::from(x));
            prop_assert_eq!(sa.union(&sb).contains(ip), sa.contains(ip) || sb.contains(ip));
            prop_assert_eq!(sa.intersection(&sb).contains(ip), sa.contains(ip) && sb.contains(ip));
            prop_assert_eq!(sa.difference(&sb).contains(ip), sa.contains(ip) && !sb.contains(ip));
        }
    }
}
