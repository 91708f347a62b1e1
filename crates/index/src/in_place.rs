//! The node's ruleset without a compile of the whole index. First ([`update`]), for pods that
//! came, went or changed on *other* nodes:
//! such a pod can only change which addresses the rules' sets hold (its own addresses), so
//! the sets are updated from a small cluster of what those rules need (this node's pods, the
//! policies that have sets here, the changed pods and their namespaces), evaluated by the same
//! engine and compiler as a full compile. Anything that would change a rule itself (a
//! named-port rule appearing, an address two endpoints share) is refused, and the caller
//! compiles the node in full. Second ([`update_policies`]), for Kubernetes NetworkPolicies
//! whose peers are selectors: see there.

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
    changes: &crate::Changes,
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
        for pod in [pod_of(before.as_deref()), after].into_iter().flatten() {
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

/// Adds to a small cluster of pods and policies what the engine reads beside them: every tier
/// and network set, and the namespaces and service accounts of the namespaces involved; then
/// finishes it.
fn complete(mini: &mut Cluster, index: &Index) {
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
    complete(&mut mini, index);
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
            // The would-be program's rules (audited policies) have sets of their own too.
            let staged = engine.staged_program(i, direction);
            for tier in std::iter::once(engine.program(i, direction))
                .chain(staged)
                .flat_map(|p| p.tiers)
            {
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
        let old = &committed.set(name)?.data;
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
        if new != *old {
            out.insert(name.clone(), new);
        }
    }
    Some(out)
}

/// Whether a Kubernetes NetworkPolicy's sets can be computed from the pods its peers can
/// select: no ipBlock (its addresses are the cluster's complement of every endpoint) and no
/// named port on an egress rule (resolved on every destination pod of the cluster).
fn peers_are_selectors(policy: &bulkhead_model::Policy) -> bool {
    use bulkhead_model::{NetworkPolicyPeer, PortSpec, RuleMatcher};
    if !policy.is_kubernetes() || policy.staged.is_some() {
        return false;
    }
    for direction in [Direction::Ingress, Direction::Egress] {
        for rule in policy.rules(direction) {
            let RuleMatcher::Kubernetes(r) = &rule.matcher else {
                return false;
            };
            if r.peers
                .iter()
                .flatten()
                .any(|p| matches!(p, NetworkPolicyPeer::IpBlock(_)))
            {
                return false;
            }
            if direction == Direction::Egress
                && r.ports
                    .iter()
                    .flatten()
                    .any(|p| matches!(p.port, PortSpec::Named(_)))
            {
                return false;
            }
        }
    }
    true
}

/// The namespaces whose pods a policy's peers can select.
fn peer_namespaces(policy: &bulkhead_model::Policy, index: &Index) -> BTreeSet<String> {
    use bulkhead_model::{NetworkPolicyPeer, RuleMatcher};
    let own = policy.namespace.clone().unwrap_or_default();
    let mut out = BTreeSet::new();
    let mut selectors = Vec::new();
    for direction in [Direction::Ingress, Direction::Egress] {
        for rule in policy.rules(direction) {
            if let RuleMatcher::Kubernetes(r) = &rule.matcher {
                for peer in r.peers.iter().flatten() {
                    if let NetworkPolicyPeer::Pods {
                        namespace_selector, ..
                    } = peer
                    {
                        match namespace_selector {
                            None => {
                                out.insert(own.clone());
                            }
                            Some(s) => selectors.push(s),
                        }
                    }
                }
            }
        }
    }
    if !selectors.is_empty() {
        let default_labels = |name: &str| {
            bulkhead_model::Labels::from_iter([(
                bulkhead_model::cluster::METADATA_NAME_LABEL.to_string(),
                name.to_string(),
            )])
        };
        for name in index.namespace_names() {
            let key = ObjectKey {
                kind: ObjectKind::Namespace,
                namespace: None,
                name: name.to_string(),
            };
            let labels = match index.get(&key) {
                Some(Object::Namespace(n)) => std::borrow::Cow::Borrowed(&n.labels),
                _ => std::borrow::Cow::Owned(default_labels(name)),
            };
            if selectors.iter().any(|s| s.matches(&labels)) {
                out.insert(name.to_string());
            }
        }
    }
    out
}

/// `committed` after a change made only of Kubernetes NetworkPolicies whose peers are pod and
/// namespace selectors: this node's pods are compiled again on a small cluster (this node's
/// pods, every policy that can apply to them, and the pods the changed policies' peers can
/// select), the changed policies' sets are taken from it (no other pod can be in them), and
/// every other set keeps its elements (they depend on endpoints, which did not change). `None`
/// when the change is anything else, or when a rule's sets would come out differently shaped.
pub(crate) fn update_policies(
    committed: &Ruleset,
    last: &LastCompile,
    index: &Index,
    changes: &crate::Changes,
) -> Option<(Ruleset, LastCompile)> {
    if last.report.conflicts > 0
        || !last.report.pods_without_interface.is_empty()
        || changes.is_empty()
    {
        return None;
    }
    let mut changed_policies = BTreeSet::new();
    let mut peer_ns = BTreeSet::new();
    for (key, before) in changes {
        if key.kind != ObjectKind::Policy {
            return None;
        }
        for object in [before.as_deref(), index.get(key)].into_iter().flatten() {
            let Object::Policy(p) = object else {
                return None;
            };
            if !peers_are_selectors(p) {
                return None;
            }
        }
        if let Some(Object::Policy(p)) = index.get(key) {
            peer_ns.extend(peer_namespaces(p, index));
        }
        changed_policies.insert(key.clone());
    }
    let mut mini = Cluster::default();
    let mut local_namespaces = BTreeSet::new();
    for key in &last.local {
        let pod = pod_of(index.get(key))?.clone();
        local_namespaces.insert(pod.namespace.clone());
        mini.pods.push(pod);
    }
    // The pods the changed policies' peers can select (this node's are in already).
    for ns in &peer_ns {
        for object in index.objects_of_kind(ObjectKind::Pod, Some(ns)) {
            if let Object::Pod(p) = object
                && p.node.as_deref() != Some(last.options.node.as_str())
            {
                mini.pods.push(p.clone());
            }
        }
    }
    // Every policy that can apply to this node's pods: the cluster-scoped ones (keys without
    // a namespace sort first) and those of their namespaces.
    for object in index.objects_of_kind(ObjectKind::Policy, None) {
        match object {
            Object::Policy(p) if p.namespace.is_none() => mini.policies.push(p.clone()),
            _ => break,
        }
    }
    for ns in &local_namespaces {
        for object in index.objects_of_kind(ObjectKind::Policy, Some(ns)) {
            if let Object::Policy(p) = object {
                mini.policies.push(p.clone());
            }
        }
    }
    complete(&mut mini, index);
    // The semantics follow the policy kinds; a Kubernetes NetworkPolicy changes them only
    // when it is staged, which is refused above.
    let engine = Engine::new(&mini, last.engine);
    let (mut ruleset, report) = bulkhead_nft::compile(&engine, &last.options);
    if report.conflicts > 0
        || report.pods != last.report.pods
        || report.pods_without_interface != last.report.pods_without_interface
    {
        return None;
    }
    ruleset.enforcement = committed.enforcement;
    let is_changed = |rule: &RuleKey| changed_policies.contains(&policy_key(rule));
    // The unchanged policies' rules must come out with the same sets as before: their
    // elements are the committed ones (the small cluster does not hold their peers).
    let unchanged_before: BTreeMap<_, _> = last
        .report
        .recipes
        .iter()
        .filter(|(r, _)| !is_changed(&r.rule))
        .collect();
    let unchanged_now: BTreeMap<_, _> = report
        .recipes
        .iter()
        .filter(|(r, _)| !is_changed(&r.rule))
        .collect();
    if unchanged_before != unchanged_now {
        return None;
    }
    let unchanged_sets: BTreeSet<&str> = unchanged_now.values().map(|n| n.as_str()).collect();
    for set in &mut ruleset.sets {
        if unchanged_sets.contains(set.name.as_str()) {
            set.data = committed.set(&set.name)?.data.clone();
        }
    }
    let compiled = LastCompile {
        options: last.options.clone(),
        engine: last.engine,
        policies: report.recipes.keys().map(|r| policy_key(&r.rule)).collect(),
        report,
        local: last.local.clone(),
    };
    Some((ruleset, compiled))
}
