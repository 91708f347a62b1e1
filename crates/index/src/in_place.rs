//! The node's ruleset updated in place for pods that came, went or changed on *other* nodes:
//! such a pod can only change which addresses the rules' sets hold (its own addresses), so
//! the sets are updated from a small cluster of what those rules need (this node's pods, the
//! policies that have sets here, the changed pods and their namespaces), evaluated by the same
//! engine and compiler as a full compile. Anything that would change a rule itself (a
//! named-port rule appearing, an address two endpoints share) is refused, and the caller
//! compiles the node in full.

use crate::{Index, Object, ObjectKey, ObjectKind};
use bulkhead_engine::{Engine, EngineOptions, PortMatch, ProgramRule, RuleKey};
use bulkhead_model::{AddrRanges, Cluster, Direction, Protocol};
use bulkhead_nft::compile::{CompileReport, RulePart};
use bulkhead_nft::ruleset::SetData;
use bulkhead_nft::{CompileOptions, Ruleset};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

/// What the last full compile of the node knew, for the updates in place that follow it.
#[derive(Debug)]
pub(crate) struct LastCompile {
    pub options: CompileOptions,
    pub engine: EngineOptions,
    pub report: CompileReport,
    /// This node's pods.
    pub local: Vec<ObjectKey>,
    /// The policies whose rules have address sets here.
    pub policies: BTreeSet<ObjectKey>,
}

impl LastCompile {
    pub fn new(
        cluster: &Cluster,
        options: &CompileOptions,
        engine: EngineOptions,
        report: CompileReport,
    ) -> Self {
        let local = cluster
            .pods
            .iter()
            .filter(|p| p.node.as_deref() == Some(options.node.as_str()))
            .map(|p| Object::Pod(p.clone()).key())
            .collect();
        let policies = report.recipes.keys().map(|r| policy_key(&r.rule)).collect();
        Self {
            options: options.clone(),
            engine,
            report,
            local,
            policies,
        }
    }
}

/// The index key of the (enforced) policy a rule belongs to.
fn policy_key(rule: &RuleKey) -> ObjectKey {
    ObjectKey {
        kind: ObjectKind::Policy,
        namespace: rule.namespace.clone(),
        name: format!("{}/{}", rule.kind.as_str(), rule.name),
    }
}

fn pod_of(object: Option<&Object>) -> Option<&bulkhead_model::Pod> {
    match object {
        Some(Object::Pod(p)) => Some(p),
        _ => None,
    }
}

/// `committed` after `changes`, or `None` when only a full compile can say.
pub(crate) fn update(
    committed: &Ruleset,
    last: &LastCompile,
    index: &Index,
    changes: &BTreeMap<ObjectKey, Option<Object>>,
) -> Option<Ruleset> {
    // A local pod without its interface yet is looked for again by every full compile.
    if last.report.conflicts > 0 || !last.report.pods_without_interface.is_empty() {
        return None;
    }
    let node = last.options.node.as_str();
    let mut affected: BTreeSet<IpAddr> = BTreeSet::new();
    let mut arrived = Vec::new();
    for (key, before) in changes {
        if key.kind != ObjectKind::Pod {
            return None;
        }
        let after = pod_of(index.get(key));
        for pod in [pod_of(before.as_ref()), after].into_iter().flatten() {
            if pod.node.as_deref() == Some(node) {
                return None;
            }
            if pod.is_endpoint() && !pod.host_network {
                affected.extend(pod.ips.iter().copied());
            }
        }
        if let Some(pod) = after
            && pod.is_endpoint()
            && !pod.host_network
            && !pod.ips.is_empty()
        {
            arrived.push(pod.clone());
        }
    }
    if affected.is_empty() {
        return Some(committed.clone());
    }
    // Each changed address is held by at most one endpoint now, one of the changed pods.
    for ip in &affected {
        let held = arrived.iter().filter(|p| p.ips.contains(ip)).count();
        let owners = index.owners(*ip) as usize;
        if owners > 1 || owners != held {
            return None;
        }
    }
    let rules = rules_of(last, index, arrived)?;
    let by_name = update_sets(committed, last, &rules, &affected)?;
    let mut next = committed.clone();
    for set in &mut next.sets {
        if let Some(data) = by_name.get(&set.name) {
            set.data = data.clone();
        }
    }
    Some(next)
}

/// The program rules of this node's pods, by key, in a cluster of what they need.
fn rules_of(
    last: &LastCompile,
    index: &Index,
    arrived: Vec<bulkhead_model::Pod>,
) -> Option<HashMap<RuleKey, ProgramRule>> {
    let mut mini = Cluster::default();
    for key in &last.local {
        mini.pods.push(pod_of(index.get(key))?.clone());
    }
    mini.pods.extend(arrived);
    for key in &last.policies {
        match index.get(key) {
            Some(Object::Policy(p)) => mini.policies.push(p.clone()),
            _ => return None,
        }
    }
    for object in index.objects_of_kind(ObjectKind::Tier, None) {
        if let Object::Tier(t) = object {
            mini.tiers.push(t.clone());
        }
    }
    for object in index.objects_of_kind(ObjectKind::NetworkSet, None) {
        if let Object::NetworkSet(s) = object {
            mini.network_sets.push(s.clone());
        }
    }
    let namespaces: BTreeSet<String> = mini
        .pods
        .iter()
        .map(|p| p.namespace.clone())
        .chain(mini.policies.iter().filter_map(|p| p.namespace.clone()))
        .chain(mini.network_sets.iter().filter_map(|s| s.namespace.clone()))
        .collect();
    for ns in &namespaces {
        let key = ObjectKey {
            kind: ObjectKind::Namespace,
            namespace: None,
            name: ns.clone(),
        };
        if let Some(Object::Namespace(n)) = index.get(&key) {
            mini.namespaces.push(n.clone());
        }
        for object in index.objects_of_kind(ObjectKind::ServiceAccount, Some(ns)) {
            if let Object::ServiceAccount(s) = object {
                mini.service_accounts.push(s.clone());
            }
        }
    }
    mini.finish();
    let engine = Engine::new(&mini, last.engine);
    let mut rules = HashMap::new();
    for (i, pod) in mini.pods.iter().enumerate() {
        // The pods a full compile gives chains to, and nothing else.
        if pod.node.as_deref() != Some(last.options.node.as_str())
            || !pod.is_endpoint()
            || pod.host_network
            || pod.ips.is_empty()
            || !last.options.interfaces.contains_key(&pod.key())
        {
            continue;
        }
        for direction in [Direction::Egress, Direction::Ingress] {
            for tier in engine.program(i, direction).tiers {
                for rule in tier.rules {
                    rules.entry(rule.key.clone()).or_insert(rule);
                }
            }
        }
    }
    Some(rules)
}

/// The new contents of every set that changes, by name.
fn update_sets(
    committed: &Ruleset,
    last: &LastCompile,
    rules: &HashMap<RuleKey, ProgramRule>,
    affected: &BTreeSet<IpAddr>,
) -> Option<BTreeMap<String, SetData>> {
    let named_for = |rule: &ProgramRule, ip: IpAddr| -> Vec<(IpAddr, Protocol, u16)> {
        match &rule.ports {
            PortMatch::Some { named, .. } => named.iter().filter(|t| t.0 == ip).copied().collect(),
            PortMatch::Any => Vec::new(),
        }
    };
    // A rule that gains a named-port set it did not have changes its rules.
    for rule in rules.values() {
        for ip in affected {
            let recipe = bulkhead_nft::compile::SetRecipe {
                rule: rule.key.clone(),
                part: RulePart::NamedPorts,
                ipv4: ip.is_ipv4(),
            };
            if !named_for(rule, *ip).is_empty() && !last.report.recipes.contains_key(&recipe) {
                return None;
            }
        }
    }
    let current: HashMap<&str, &SetData> = committed
        .sets
        .iter()
        .map(|s| (s.name.as_str(), &s.data))
        .collect();
    let mut out = BTreeMap::new();
    for (recipe, name) in &last.report.recipes {
        let rule = rules.get(&recipe.rule)?;
        let ips: Vec<IpAddr> = affected
            .iter()
            .filter(|ip| ip.is_ipv4() == recipe.ipv4)
            .copied()
            .collect();
        if ips.is_empty() {
            continue;
        }
        let old = current.get(name.as_str())?;
        let new = match (recipe.part, old) {
            (RulePart::Remote | RulePart::RemoteNot, SetData::Addr4(old) | SetData::Addr6(old)) => {
                let ranges = if recipe.part == RulePart::Remote {
                    rule.remote.as_ref()
                } else {
                    rule.remote_not.as_ref()
                }?;
                let members = ips.iter().copied().filter(|ip| ranges.contains(*ip));
                let new = old
                    .difference(&AddrRanges::from_addrs(ips.iter().copied()))
                    .union(&AddrRanges::from_addrs(members));
                if recipe.ipv4 {
                    SetData::Addr4(new)
                } else {
                    SetData::Addr6(new)
                }
            }
            (RulePart::NamedPorts, SetData::AddrProtoPort4(old) | SetData::AddrProtoPort6(old)) => {
                let mut new: Vec<_> = old
                    .iter()
                    .filter(|t| !ips.contains(&t.0))
                    .copied()
                    .chain(ips.iter().flat_map(|ip| named_for(rule, *ip)))
                    .collect();
                new.sort();
                new.dedup();
                if recipe.ipv4 {
                    SetData::AddrProtoPort4(new)
                } else {
                    SetData::AddrProtoPort6(new)
                }
            }
            _ => return None,
        };
        if new != **old {
            out.insert(name.clone(), new);
        }
    }
    Some(out)
}
