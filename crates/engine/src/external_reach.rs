//! Where pods may send traffic outside the cluster: egress to external address ranges.
//!
//! Every CIDR any policy or network set mentions is a boundary. CIDRs nest or are disjoint, so
//! the mentioned CIDRs (plus `0.0.0.0/0` and `::/0`) form a tree, and each address belongs to
//! exactly one *region*: the smallest mentioned CIDR that holds it, minus the mentioned CIDRs
//! inside that one. Every address of a region lies in the same mentioned CIDRs, so one
//! representative address decides the whole region exactly (pod and node addresses are
//! endpoints of their own and are never chosen).

use crate::connectivity::{Connection, ConnectivityOptions};
use crate::endpoint::Endpoint;
use crate::evaluate::Engine;
use bulkhead_model::{Direction, PortSet, Protocol};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// One region: a mentioned CIDR minus the mentioned CIDRs directly inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalRegion {
    pub cidr: IpNet,
    pub except: Vec<IpNet>,
    /// An address of the region that is no pod's or node's.
    pub representative: IpAddr,
}

impl ExternalRegion {
    /// `ip:0.0.0.0/0 except 10.0.0.0/8,169.254.169.254/32`: the destination column of `map`.
    pub fn label(&self) -> String {
        if self.except.is_empty() {
            format!("ip:{}", self.cidr)
        } else {
            let except: Vec<String> = self.except.iter().map(ToString::to_string).collect();
            format!("ip:{} except {}", self.cidr, except.join(","))
        }
    }
}

impl Engine<'_> {
    /// The regions of external address space no policy can tell apart (see the module doc).
    pub fn external_regions(&self) -> Vec<ExternalRegion> {
        let cluster = self.cluster();
        let taken: BTreeSet<IpAddr> = cluster
            .pods
            .iter()
            .flat_map(|p| p.ips.iter())
            .chain(cluster.nodes.iter().flat_map(|n| n.ips.iter()))
            .copied()
            .collect();
        let mut nets: BTreeSet<IpNet> = self.mentioned_cidrs().iter().map(IpNet::trunc).collect();
        nets.extend(
            ["0.0.0.0/0", "::/0"]
                .iter()
                .filter_map(|n| n.parse::<IpNet>().ok()),
        );
        let mut regions = Vec::new();
        for &cidr in &nets {
            // Direct children: mentioned CIDRs strictly inside, not inside another such one.
            let inside: Vec<IpNet> = nets
                .iter()
                .filter(|n| **n != cidr && cidr.contains(*n))
                .copied()
                .collect();
            let except: Vec<IpNet> = inside
                .iter()
                .filter(|n| !inside.iter().any(|m| m != *n && m.contains(*n)))
                .copied()
                .collect();
            if let Some(representative) = free_address(cidr, &except, &taken) {
                regions.push(ExternalRegion {
                    cidr,
                    except,
                    representative,
                });
            }
        }
        regions
    }

    /// Rows from the chosen source pods to external regions: the egress half decides (no
    /// policy applies on the far side of an external address).
    pub fn external_connectivity(&self, options: &ConnectivityOptions) -> Vec<Connection> {
        let cluster = self.cluster();
        let regions = self.external_regions();
        let sources: Vec<usize> = self
            .pod_endpoints()
            .into_iter()
            .filter(|i| options.from.as_ref().is_none_or(|f| f.contains(i)))
            .collect();
        // (group, region) -> per protocol: (union, intersection, pairs with ports, pairs).
        type Slot = (PortSet, Option<PortSet>, usize, usize);
        let mut rows: BTreeMap<(String, usize), [Slot; 3]> = BTreeMap::new();
        for &src in &sources {
            let pod = &cluster.pods[src];
            let group = options.aggregation.group_of(pod);
            for (r, region) in regions.iter().enumerate() {
                let ipv4 = region.representative.is_ipv4();
                // A pod with addresses but none of this family never sends such packets.
                if !pod.ips.is_empty() && !pod.ips.iter().any(|ip| ip.is_ipv4() == ipv4) {
                    continue;
                }
                let slots = rows
                    .entry((group.clone(), r))
                    .or_insert_with(|| std::array::from_fn(|_| Default::default()));
                for (k, protocol) in Protocol::L4.iter().enumerate() {
                    let ports = self.direction_ports(
                        Direction::Egress,
                        src,
                        Endpoint::External(region.representative),
                        ipv4,
                        *protocol,
                    );
                    let slot = &mut slots[k];
                    slot.3 += 1;
                    if !ports.is_empty() {
                        slot.2 += 1;
                        slot.0 = slot.0.union(&ports);
                    }
                    slot.1 = Some(match slot.1.take() {
                        None => ports,
                        Some(c) => c.intersection(&ports),
                    });
                }
            }
        }
        let mut out = Vec::new();
        for ((group, r), slots) in rows {
            for (k, protocol) in Protocol::L4.iter().enumerate() {
                let (union, common, allowed, total) = &slots[k];
                let mut ports = union.clone();
                let mut all = common.clone().unwrap_or_default();
                if options.protocol.is_some_and(|p| p.canonical() != *protocol) {
                    continue;
                }
                if let Some(port) = options.port {
                    let only = PortSet::from_ranges([bulkhead_model::PortRange::single(port)]);
                    ports = ports.intersection(&only);
                    all = all.intersection(&only);
                }
                if ports.is_empty() {
                    continue;
                }
                out.push(Connection {
                    from: group.clone(),
                    to: regions[r].label(),
                    protocol: *protocol,
                    ports,
                    ports_all_pairs: all,
                    pairs_allowed: *allowed,
                    pairs_total: *total,
                });
            }
        }
        out
    }
}

/// The first address of `cidr` outside every `except` and not in `taken`; None when the
/// children cover it all.
fn free_address(cidr: IpNet, except: &[IpNet], taken: &BTreeSet<IpAddr>) -> Option<IpAddr> {
    let to_u128 = |ip: IpAddr| match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    let from_u128 = |v: u128| -> Option<IpAddr> {
        match cidr {
            IpNet::V4(_) => u32::try_from(v)
                .ok()
                .map(|x| IpAddr::from(std::net::Ipv4Addr::from(x))),
            IpNet::V6(_) => Some(IpAddr::from(std::net::Ipv6Addr::from(v))),
        }
    };
    let mut holes: Vec<(u128, u128)> = except
        .iter()
        .map(|n| (to_u128(n.network()), to_u128(n.broadcast())))
        .collect();
    holes.sort_unstable();
    let (start, end) = (to_u128(cidr.network()), to_u128(cidr.broadcast()));
    let mut candidate = start;
    // Prefer an address that is not the network address of a /0 (0.0.0.0 reads oddly), but
    // any free address is exact.
    if cidr.prefix_len() == 0 {
        candidate = start + 1;
    }
    let mut tries = 0;
    while candidate <= end && tries < 10_000 {
        tries += 1;
        if let Some(&(_, hole_end)) = holes.iter().find(|(s, e)| (*s..=*e).contains(&candidate)) {
            candidate = hole_end.checked_add(1)?;
            continue;
        }
        let ip = from_u128(candidate)?;
        if taken.contains(&ip) {
            candidate = candidate.checked_add(1)?;
            continue;
        }
        return Some(ip);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_address_skips_children_and_taken_addresses() {
        let cidr: IpNet = "10.0.0.0/30".parse().expect("cidr");
        let except: Vec<IpNet> = vec!["10.0.0.0/31".parse().expect("cidr")];
        let taken = BTreeSet::from(["10.0.0.2".parse().expect("ip")]);
        assert_eq!(
            free_address(cidr, &except, &taken),
            Some("10.0.0.3".parse().expect("ip"))
        );
        let all: Vec<IpNet> = vec!["10.0.0.0/30".parse().expect("cidr")];
        assert_eq!(
            free_address(
                "10.0.0.0/30".parse().expect("cidr"),
                &[all[0]],
                &BTreeSet::new()
            ),
            None
        );
    }
}
