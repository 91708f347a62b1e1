//! What changes between two rulesets of one node, as a typed transaction: sets added and
//! removed, chains added, replaced and removed, dispatch entries added and removed. Names are
//! stable identities ([`crate::ruleset`]), so a change in the cluster becomes a transaction
//! that touches only its own objects, and deny counters of untouched chains survive.
//!
//! [`Transaction::render`] prints it as one `nft -f` batch, which the kernel commits
//! atomically: no packet ever meets half of it. Within the batch the order only has to be
//! valid (a set or chain exists before a rule refers to it, nothing is deleted while referred
//! to). [`Transaction::apply`] is the same change on the typed ruleset, so tests check
//! "old + delta == fresh compile" without a kernel.

use crate::render;
use crate::ruleset::{Chain, Counts, NamedSet, Ruleset, SetData, TABLE};
use bulkhead_model::{AddrRanges, PortRange, Protocol};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

/// The four dispatch maps of the base chains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DispatchMap {
    /// Host interface -> egress chain.
    EgressInterface,
    /// Host interface -> ingress chain.
    IngressInterface,
    /// Pod address (behind a shared bridge) -> egress chain.
    EgressAddress,
    /// Pod address (behind a shared bridge) -> ingress chain.
    IngressAddress,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DispatchKey {
    Interface(String),
    Address(IpAddr),
}

/// One dispatch entry: `chain` `None` removes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DispatchChange {
    pub map: DispatchMap,
    pub key: DispatchKey,
    pub chain: Option<String>,
}

/// One element of a set, as the kernel holds it: an address interval is one element (nft
/// writes it as a start and an end key), so elements are compared as intervals, never split
/// into addresses.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Element {
    /// An inclusive address range of one family.
    Addr(IpAddr, IpAddr),
    ProtoPort(Protocol, PortRange),
    AddrProtoPort(IpAddr, Protocol, u16),
}

/// The elements of a set's contents.
pub fn elements(data: &SetData) -> BTreeSet<Element> {
    match data {
        SetData::Addr4(r) | SetData::Addr6(r) => {
            r.ranges().map(|(lo, hi)| Element::Addr(lo, hi)).collect()
        }
        SetData::ProtoPort(list) => list
            .iter()
            .map(|&(p, r)| Element::ProtoPort(p, r))
            .collect(),
        SetData::AddrProtoPort4(list) | SetData::AddrProtoPort6(list) => list
            .iter()
            .map(|&(ip, p, port)| Element::AddrProtoPort(ip, p, port))
            .collect(),
    }
}

/// A set that keeps its name (and its users) while elements leave and join: an endpoint
/// elsewhere came, went or changed labels. Removed elements go first, in the same batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetChange {
    pub name: String,
    pub removed: Vec<Element>,
    pub added: Vec<Element>,
}

impl SetChange {
    /// The change from `old` to `new` contents, `None` when they are of different types.
    pub fn between(name: &str, old: &SetData, new: &SetData) -> Option<SetChange> {
        if std::mem::discriminant(old) != std::mem::discriminant(new) {
            return None;
        }
        let (before, after) = (elements(old), elements(new));
        Some(SetChange {
            name: name.to_string(),
            removed: before.difference(&after).cloned().collect(),
            added: after.difference(&before).cloned().collect(),
        })
    }

    /// `data` with this change made.
    pub fn applied_to(&self, data: &SetData) -> SetData {
        let mut items = elements(data);
        for e in &self.removed {
            items.remove(e);
        }
        items.extend(self.added.iter().cloned());
        let ranges = || {
            AddrRanges::from_ranges(items.iter().filter_map(|e| match e {
                Element::Addr(lo, hi) => Some((*lo, *hi)),
                _ => None,
            }))
        };
        let triples = || {
            items
                .iter()
                .filter_map(|e| match e {
                    Element::AddrProtoPort(ip, p, port) => Some((*ip, *p, *port)),
                    _ => None,
                })
                .collect()
        };
        match data {
            SetData::Addr4(_) => SetData::Addr4(ranges()),
            SetData::Addr6(_) => SetData::Addr6(ranges()),
            SetData::ProtoPort(_) => SetData::ProtoPort(
                items
                    .iter()
                    .filter_map(|e| match e {
                        Element::ProtoPort(p, r) => Some((*p, *r)),
                        _ => None,
                    })
                    .collect(),
            ),
            SetData::AddrProtoPort4(_) => SetData::AddrProtoPort4(triples()),
            SetData::AddrProtoPort6(_) => SetData::AddrProtoPort6(triples()),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Transaction {
    pub sets_added: Vec<NamedSet>,
    pub sets_removed: Vec<String>,
    /// Same name, other elements: only the elements that differ are written.
    pub sets_changed: Vec<SetChange>,
    pub chains_added: Vec<Chain>,
    /// Same name, other rules: flushed and refilled (its counters restart; others keep theirs).
    pub chains_replaced: Vec<Chain>,
    pub chains_removed: Vec<String>,
    /// Removals first, then additions (a changed entry is both).
    pub dispatch: Vec<DispatchChange>,
}

/// A ruleset's dispatch entries, all four maps in one ordered view.
fn dispatch_entries(ruleset: &Ruleset) -> BTreeMap<(DispatchMap, DispatchKey), &str> {
    let mut out = BTreeMap::new();
    for (map, entries) in [
        (DispatchMap::EgressInterface, &ruleset.egress_dispatch),
        (DispatchMap::IngressInterface, &ruleset.ingress_dispatch),
    ] {
        for (k, v) in entries {
            out.insert((map, DispatchKey::Interface(k.clone())), v.as_str());
        }
    }
    for (map, entries) in [
        (DispatchMap::EgressAddress, &ruleset.egress_by_address),
        (DispatchMap::IngressAddress, &ruleset.ingress_by_address),
    ] {
        for (k, v) in entries {
            out.insert((map, DispatchKey::Address(*k)), v.as_str());
        }
    }
    out
}

impl Transaction {
    /// The change from `old` to `new`, or `None` when only a full replace can make it (the
    /// enforcement maps differ: mode, deny logging and break-glass are rendered into every
    /// deny rule and map).
    pub fn between(old: &Ruleset, new: &Ruleset) -> Option<Transaction> {
        if old.enforcement != new.enforcement
            || old.pod_interface_prefixes != new.pod_interface_prefixes
            || old.pod_cidrs != new.pod_cidrs
        {
            return None;
        }
        let mut t = Transaction::default();
        let old_sets: BTreeMap<&str, &NamedSet> =
            old.sets.iter().map(|s| (s.name.as_str(), s)).collect();
        let new_sets: BTreeMap<&str, &NamedSet> =
            new.sets.iter().map(|s| (s.name.as_str(), s)).collect();
        for (name, set) in &new_sets {
            match old_sets.get(name) {
                Some(o) if o.data == set.data => {}
                Some(o) => match SetChange::between(name, &o.data, &set.data) {
                    Some(change) => t.sets_changed.push(change),
                    // Another type under one name (never built: the type is part of the
                    // recipe); replacing stays correct.
                    None => {
                        t.sets_removed.push((*name).to_string());
                        t.sets_added.push((*set).clone());
                    }
                },
                None => t.sets_added.push((*set).clone()),
            }
        }
        for name in old_sets.keys() {
            if !new_sets.contains_key(name) {
                t.sets_removed.push((*name).to_string());
            }
        }
        let old_chains: BTreeMap<&str, &Chain> =
            old.chains.iter().map(|c| (c.name.as_str(), c)).collect();
        let new_chains: BTreeMap<&str, &Chain> =
            new.chains.iter().map(|c| (c.name.as_str(), c)).collect();
        for (name, chain) in &new_chains {
            match old_chains.get(name) {
                Some(o) if o == chain => {}
                // A chain's comment says what it is; `flush chain` cannot change it. Names
                // are derived from what the comment says, so this needs a full replace only
                // if that ever breaks.
                Some(o) if o.comment != chain.comment => return None,
                Some(_) => t.chains_replaced.push((*chain).clone()),
                None => t.chains_added.push((*chain).clone()),
            }
        }
        for name in old_chains.keys() {
            if !new_chains.contains_key(name) {
                t.chains_removed.push((*name).to_string());
            }
        }
        let before = dispatch_entries(old);
        let after = dispatch_entries(new);
        for ((map, key), chain) in &before {
            if after.get(&(*map, key.clone())) != Some(chain) {
                t.dispatch.push(DispatchChange {
                    map: *map,
                    key: key.clone(),
                    chain: None,
                });
            }
        }
        for ((map, key), chain) in &after {
            if before.get(&(*map, key.clone())) != Some(chain) {
                t.dispatch.push(DispatchChange {
                    map: *map,
                    key: key.clone(),
                    chain: Some((*chain).to_string()),
                });
            }
        }
        Some(t)
    }

    /// The set changes, when they are all there is: no rule, chain or dispatch entry
    /// changes, so the elements alone can be written ([`crate::Backend::write_elements`]).
    pub fn elements_only(&self) -> Option<&[SetChange]> {
        let only = self.sets_added.is_empty()
            && self.sets_removed.is_empty()
            && self.chains_added.is_empty()
            && self.chains_replaced.is_empty()
            && self.chains_removed.is_empty()
            && self.dispatch.is_empty()
            && !self.sets_changed.is_empty();
        only.then_some(self.sets_changed.as_slice())
    }

    pub fn is_empty(&self) -> bool {
        self.sets_added.is_empty()
            && self.sets_removed.is_empty()
            && self.sets_changed.is_empty()
            && self.chains_added.is_empty()
            && self.chains_replaced.is_empty()
            && self.chains_removed.is_empty()
            && self.dispatch.is_empty()
    }

    /// How many objects it touches (for logs and metrics).
    pub fn size(&self) -> usize {
        self.sets_added.len()
            + self.sets_removed.len()
            + self.sets_changed.len()
            + self.chains_added.len()
            + self.chains_replaced.len()
            + self.chains_removed.len()
            + self.dispatch.len()
    }

    /// The same change on the typed ruleset: `old` + this == the `new` it was computed from.
    pub fn apply(&self, old: &Ruleset) -> Ruleset {
        let mut sets: BTreeMap<String, NamedSet> = old
            .sets
            .iter()
            .map(|s| (s.name.clone(), s.clone()))
            .collect();
        for name in &self.sets_removed {
            sets.remove(name);
        }
        for set in &self.sets_added {
            sets.insert(set.name.clone(), set.clone());
        }
        for change in &self.sets_changed {
            if let Some(set) = sets.get_mut(&change.name) {
                set.data = change.applied_to(&set.data);
            }
        }
        let mut chains: BTreeMap<String, Chain> = old
            .chains
            .iter()
            .map(|c| (c.name.clone(), c.clone()))
            .collect();
        for name in &self.chains_removed {
            chains.remove(name);
        }
        for chain in self.chains_added.iter().chain(&self.chains_replaced) {
            chains.insert(chain.name.clone(), chain.clone());
        }
        let mut out = Ruleset {
            sets: sets.into_values().collect(),
            chains: chains.into_values().collect(),
            egress_dispatch: old.egress_dispatch.clone(),
            ingress_dispatch: old.ingress_dispatch.clone(),
            egress_by_address: old.egress_by_address.clone(),
            ingress_by_address: old.ingress_by_address.clone(),
            enforcement: old.enforcement,
            pod_interface_prefixes: old.pod_interface_prefixes.clone(),
            pod_cidrs: old.pod_cidrs.clone(),
        };
        for change in &self.dispatch {
            match (&change.key, change.map) {
                (DispatchKey::Interface(i), DispatchMap::EgressInterface) => {
                    update(&mut out.egress_dispatch, i.clone(), &change.chain)
                }
                (DispatchKey::Interface(i), DispatchMap::IngressInterface) => {
                    update(&mut out.ingress_dispatch, i.clone(), &change.chain)
                }
                (DispatchKey::Address(a), DispatchMap::EgressAddress) => {
                    update(&mut out.egress_by_address, *a, &change.chain)
                }
                (DispatchKey::Address(a), DispatchMap::IngressAddress) => {
                    update(&mut out.ingress_by_address, *a, &change.chain)
                }
                // A key of the wrong kind for its map is never built by `between`.
                _ => {}
            }
        }
        out
    }

    /// One `nft -f` batch (committed atomically). `old` is what the kernel holds, `new` the
    /// ruleset the transaction leads to: rules are rendered against its sets, deny rules
    /// starting from `counts`.
    pub fn render(&self, old: &Ruleset, new: &Ruleset, counts: &Counts) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Bulkhead dataplane delta: {} object(s), one transaction.",
            self.size()
        );
        for set in &self.sets_removed {
            // A replaced set (same name) is deleted first, then added again below; its users
            // are all rendered again in this batch.
            if self.sets_added.iter().any(|s| &s.name == set) {
                let _ = writeln!(out, "flush set inet {TABLE} {set}");
            }
        }
        for set in &self.sets_added {
            if self.sets_removed.contains(&set.name) {
                let _ = writeln!(
                    out,
                    "add element inet {TABLE} {}{}",
                    set.name,
                    render::set_elements(set).unwrap_or_default()
                );
            } else {
                let _ = writeln!(out, "add {}", render::set_declaration(set, TABLE));
            }
        }
        out.push_str(&render_elements(&self.sets_changed));
        for chain in &self.chains_added {
            let _ = writeln!(
                out,
                "add chain inet {TABLE} {} {{ comment {}; }}",
                chain.name,
                render::quoted_comment(&chain.comment)
            );
        }
        for chain in self.chains_added.iter().chain(&self.chains_replaced) {
            if self.chains_replaced.contains(chain) {
                let _ = writeln!(out, "flush chain inet {TABLE} {}", chain.name);
            }
            for rule in render::chain_rules(new, chain, counts) {
                let _ = writeln!(out, "add rule inet {TABLE} {} {rule}", chain.name);
            }
        }
        // The set of known pod interfaces follows the dispatch maps (fail closed).
        let (before, after) = (old.pod_interfaces(), new.pod_interfaces());
        for gone in before.difference(&after) {
            let _ = writeln!(
                out,
                "delete element inet {TABLE} pod_interfaces {{ {} }}",
                render::quoted_interface(gone)
            );
        }
        for added in after.difference(&before) {
            let _ = writeln!(
                out,
                "add element inet {TABLE} pod_interfaces {{ {} }}",
                render::quoted_interface(added)
            );
        }
        for change in &self.dispatch {
            let (map, key) = dispatch_element(change);
            match &change.chain {
                None => {
                    let _ = writeln!(out, "delete element inet {TABLE} {map} {{ {key} }}");
                }
                Some(chain) => {
                    let _ = writeln!(
                        out,
                        "add element inet {TABLE} {map} {{ {key} : jump {chain} }}"
                    );
                }
            }
        }
        // Nothing refers to a removed chain once every removed chain is empty: flush them
        // all, then delete them.
        for chain in &self.chains_removed {
            let _ = writeln!(out, "flush chain inet {TABLE} {chain}");
        }
        for chain in &self.chains_removed {
            let _ = writeln!(out, "delete chain inet {TABLE} {chain}");
        }
        for set in &self.sets_removed {
            if !self.sets_added.iter().any(|s| &s.name == set) {
                let _ = writeln!(out, "delete set inet {TABLE} {set}");
            }
        }
        out
    }
}

/// Set changes as `nft -f` lines: each set's removed elements, then its added ones.
pub fn render_elements(changes: &[SetChange]) -> String {
    let mut out = String::new();
    for change in changes {
        for (verb, items) in [("delete", &change.removed), ("add", &change.added)] {
            if !items.is_empty() {
                let _ = writeln!(
                    out,
                    "{verb} element inet {TABLE} {} {{ {} }}",
                    change.name,
                    items
                        .iter()
                        .map(render::element)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
    }
    out
}

fn update<K: Ord>(map: &mut BTreeMap<K, String>, key: K, chain: &Option<String>) {
    match chain {
        Some(c) => {
            map.insert(key, c.clone());
        }
        None => {
            map.remove(&key);
        }
    }
}

/// The map's name in the table and the element key as nft writes it.
fn dispatch_element(change: &DispatchChange) -> (String, String) {
    match (&change.key, change.map) {
        (DispatchKey::Interface(i), map) => (
            match map {
                DispatchMap::EgressInterface => "egress_dispatch",
                _ => "ingress_dispatch",
            }
            .to_string(),
            render::quoted_interface(i),
        ),
        (DispatchKey::Address(a), map) => {
            let direction = match map {
                DispatchMap::EgressAddress | DispatchMap::EgressInterface => "egress",
                _ => "ingress",
            };
            let family = if a.is_ipv4() { 4 } else { 6 };
            (format!("{direction}_address{family}"), a.to_string())
        }
    }
}
