//! The ordered policy pipeline of one direction (semantics.md §2.2, §3.4, §4).
//!
//! Every policy language becomes a policy in a tier: AdminNetworkPolicy and ClusterNetworkPolicy
//! (Admin) in `kube-admin`, Kubernetes NetworkPolicy in `default` at order 1000, Baseline ones
//! in `kube-baseline`, Calico policies in their own tier. One walk over the tiers then decides
//! both semantics: in Kubernetes mode the pipeline only holds the Kubernetes kinds, and §3.4's
//! layering is exactly this walk.
//!
//! The walk works on port *sets*, not one port: each rule splits the still-undecided ports
//! into decided and undecided parts, and every part keeps the trail of rules that led to it.
//! `explain` picks the part holding its port; `map` unions the allowed parts. One code path,
//! so the two can never disagree.

use crate::labelling::Labelling;
use crate::verdict::{Note, Reason, RuleRef};
use bulkhead_model::{
    Action, Cluster, Direction, Policy, PolicyKind, PortSet, StagedAction, Subject, Tier,
    TierDefault,
};
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};

#[derive(Debug)]
pub(crate) struct PolicyEntry<'c> {
    pub policy: &'c Policy,
    pub tier: usize,
}

/// Where one rule is written; the policy's location when the rule's is not known.
pub(crate) fn rule_source(
    policy: &Policy,
    direction: Direction,
    index: usize,
) -> Option<bulkhead_model::SourceLocation> {
    policy
        .rules(direction)
        .get(index)
        .and_then(|r| r.location.clone())
        .or_else(|| policy.source.clone())
}

/// Felix's tie-break string (CAL-ORD-3): name, namespace, kind.
fn sort_key(policy: &Policy) -> String {
    format!(
        "{}/{}/{}",
        policy.name,
        policy.namespace.as_deref().unwrap_or_default(),
        policy.kind.display_name()
    )
}

/// A policy's place in Felix's tie-break order (CAL-ORD-3), comparable without its string.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TieBreak {
    /// The rank of `name/` among the policies' names, then of `namespace/`, then the kind.
    Ranked(u32, u32, &'static str),
    /// The string itself, when a name or namespace holds a `/` (invalid, but loaded).
    Spelled(String),
}

/// The tie-break key of every policy, in their order. Comparing `name/namespace/kind` strings
/// is comparing `name/`, then `namespace/`, then the kind, as long as neither name holds a
/// `/` (API names cannot): each part ends where its `/` is, and a part that is a prefix of the
/// other meets `/` against a character of the other. Ranks are found by sorting the distinct
/// names and namespaces (thousands) instead of comparing 300,000 strings n log n times, which
/// was most of an engine's set-up on a large repository.
fn tie_break_keys(policies: &[&Policy]) -> Vec<TieBreak> {
    fn namespace(p: &Policy) -> &str {
        p.namespace.as_deref().unwrap_or_default()
    }
    fn distinct<'p>(
        policies: &[&'p Policy],
        part: impl Fn(&'p Policy) -> &'p str + Sync,
    ) -> Vec<&'p str> {
        let set = policies
            .par_iter()
            .fold(HashSet::<&str, FastHash>::default, |mut set, p| {
                set.insert(part(p));
                set
            })
            .reduce(HashSet::default, |mut a, mut b| {
                if a.len() < b.len() {
                    std::mem::swap(&mut a, &mut b);
                }
                a.extend(b);
                a
            });
        set.into_iter().collect()
    }
    let mut names = distinct(policies, |p| p.name.as_str());
    let mut namespaces = distinct(policies, namespace);
    if names
        .iter()
        .chain(&namespaces)
        .any(|part| part.contains('/'))
    {
        return policies
            .iter()
            .map(|p| TieBreak::Spelled(sort_key(p)))
            .collect();
    }
    fn ranks<'p>(distinct: &mut [&'p str]) -> HashMap<&'p str, u32, FastHash> {
        distinct.sort_unstable_by(|a, b| slash_terminated_cmp(a, b));
        distinct
            .iter()
            .enumerate()
            .map(|(rank, part)| (*part, rank as u32))
            .collect()
    }
    let names = ranks(&mut names);
    let namespaces = ranks(&mut namespaces);
    policies
        .par_iter()
        .map(|p| {
            TieBreak::Ranked(
                names[p.name.as_str()],
                namespaces[namespace(p)],
                p.kind.display_name(),
            )
        })
        .collect()
}

/// Compares `a/` with `b/`, without writing either.
fn slash_terminated_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let common = a.len().min(b.len());
    a[..common].cmp(&b[..common]).then_with(|| {
        let after = |s: &[u8]| s.get(common).copied().unwrap_or(b'/');
        after(a).cmp(&after(b))
    })
}

/// The maps and sets of policy names: hashed with foldhash, seeded per process, because
/// SipHash over 300,000 names was a visible part of an engine's set-up.
type FastHash = foldhash::fast::RandomState;

/// The tiers and policies of one view of the cluster (enforced, or with staged policies).
#[derive(Debug)]
pub(crate) struct Pipeline<'c> {
    pub tiers: Vec<Tier>,
    pub policies: Vec<PolicyEntry<'c>>,
    /// Per pod index, per direction (0 ingress, 1 egress): the policies that select the pod, in
    /// evaluation order.
    pub applying: Vec<[Vec<usize>; 2]>,
}

pub(crate) fn direction_index(direction: Direction) -> usize {
    match direction {
        Direction::Ingress => 0,
        Direction::Egress => 1,
    }
}

impl<'c> Pipeline<'c> {
    pub fn build(cluster: &'c Cluster, labelling: &Labelling, calico: bool, staged: bool) -> Self {
        // Kubernetes NetworkPolicies are in every semantics; Calico's kinds only in Calico's.
        let in_semantics = |p: &Policy| !p.host_endpoints_only && (calico || !p.kind.is_calico());
        let mut enforced: Vec<&'c Policy> = cluster
            .policies
            .iter()
            .filter(|p| p.staged.is_none() && in_semantics(p))
            .collect();
        if staged {
            // A staged policy replaces the enforced one it names (or removes it), and a later
            // staged policy of the same name replaces an earlier one: what survives per name
            // is the last staged one, when it sets. One pass with a map of names, not a pass
            // over every enforced policy per staged one.
            let staged: Vec<&'c Policy> = cluster
                .policies
                .iter()
                .filter(|p| p.staged.is_some() && (calico || !p.kind.is_calico()))
                .collect();
            let identity = |p: &'c Policy| (p.kind, p.namespace.as_deref(), p.name.as_str());
            let last: HashMap<_, usize, FastHash> = staged
                .iter()
                .enumerate()
                .map(|(i, p)| (identity(p), i))
                .collect();
            enforced.retain(|p| !last.contains_key(&identity(p)));
            enforced.extend(staged.iter().enumerate().filter_map(|(i, policy)| {
                let survives = last[&identity(policy)] == i
                    && matches!(policy.staged, Some(StagedAction::Set | StagedAction::Audit))
                    && !policy.host_endpoints_only;
                survives.then_some(*policy)
            }));
        }
        let mut tiers = Tier::built_in();
        if calico {
            for t in &cluster.tiers {
                match tiers.iter_mut().find(|x| x.name == t.name) {
                    Some(existing) => existing.source = t.source.clone(),
                    None => tiers.push(t.clone()),
                }
            }
            for p in &enforced {
                if !tiers.iter().any(|t| t.name == p.tier) {
                    // Calico refuses policies in a missing tier; the loader could not check
                    // across files, so the tier is taken to exist with Calico's defaults.
                    tiers.push(Tier {
                        name: p.tier.clone(),
                        order: None,
                        default_action: TierDefault::Deny,
                        source: None,
                    });
                }
            }
        }
        tiers.sort_by(|a, b| {
            let oa = a.order.unwrap_or(f64::INFINITY);
            let ob = b.order.unwrap_or(f64::INFINITY);
            oa.total_cmp(&ob).then_with(|| a.name.cmp(&b.name))
        });
        let tier_of = |name: &str| tiers.iter().position(|t| t.name == name).unwrap_or(0);
        // Everything the order compares is taken out of the policies once, by value: a
        // comparison that follows a pointer into each of 300,000 policies waits on memory.
        // In parallel: at 300,000 policies the set-up of an engine was a quarter of a second
        // of one core while the other waited.
        let mut keyed: Vec<(usize, f64, TieBreak, PolicyEntry<'c>)> = enforced
            .par_iter()
            .zip(tie_break_keys(&enforced))
            .map(|(p, key)| {
                let tier = tier_of(&p.tier);
                let entry = PolicyEntry { policy: p, tier };
                (tier, p.order.unwrap_or(f64::INFINITY), key, entry)
            })
            .collect();
        keyed.par_sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| a.1.total_cmp(&b.1))
                .then_with(|| a.2.cmp(&b.2))
        });
        let policies: Vec<PolicyEntry<'c>> = keyed.into_iter().map(|(.., e)| e).collect();
        // Namespaced policies only ever select pods of their namespace: index them so selection
        // costs (policies of the namespace + cluster-scoped policies) per pod, not all policies.
        let mut by_namespace: HashMap<&str, Vec<usize>, FastHash> = HashMap::default();
        let mut cluster_scoped = Vec::new();
        for (j, e) in policies.iter().enumerate() {
            match &e.policy.namespace {
                Some(ns) => by_namespace.entry(ns.as_str()).or_default().push(j),
                None => cluster_scoped.push(j),
            }
        }
        let applying = cluster
            .pods
            .par_iter()
            .enumerate()
            .map(|(i, pod)| {
                if pod.host_network || !pod.is_endpoint() {
                    return [Vec::new(), Vec::new()];
                }
                let mut selecting: Vec<usize> = by_namespace
                    .get(pod.namespace.as_str())
                    .into_iter()
                    .flatten()
                    .chain(&cluster_scoped)
                    .copied()
                    .filter(|&j| selects(cluster, labelling, policies[j].policy, i))
                    .collect();
                selecting.sort_unstable();
                let of = |d| {
                    selecting
                        .iter()
                        .copied()
                        .filter(|&j| policies[j].policy.types.contains(d))
                        .collect()
                };
                [of(Direction::Ingress), of(Direction::Egress)]
            })
            .collect();
        Self {
            tiers,
            policies,
            applying,
        }
    }
}

/// Whether a policy selects pod `index` (K8S-ISO-1, CAL-SEL-*, ANP-SUBJ-1).
fn selects(cluster: &Cluster, labelling: &Labelling, policy: &Policy, index: usize) -> bool {
    let pod = &cluster.pods[index];
    let namespace_labels = labelling.pod_namespace_labels(cluster, index);
    match &policy.subject {
        Subject::PodsInNamespace(pod_selector) => {
            policy.namespace.as_deref() == Some(pod.namespace.as_str())
                && pod_selector.matches(&pod.labels)
        }
        Subject::Calico {
            selector,
            namespace_selector,
            service_account_selector,
        } => {
            let scope_ok = match &policy.namespace {
                Some(ns) => *ns == pod.namespace,
                None => namespace_selector.as_ref().is_none_or(|s| {
                    labelling
                        .namespace(&pod.namespace)
                        .is_some_and(|l| s.matches(l))
                }),
            };
            scope_ok
                && selector.matches(labelling.calico_pod(cluster, index))
                && service_account_selector.as_ref().is_none_or(|s| {
                    labelling
                        .pod_service_account_labels(cluster, index)
                        .is_some_and(|l| s.matches(l))
                })
        }
        Subject::Namespaces(s) => namespace_labels.is_some_and(|l| s.matches(l)),
        Subject::Pods {
            namespace_selector,
            pod_selector,
        } => {
            namespace_labels.is_some_and(|l| namespace_selector.matches(l))
                && pod_selector.matches(&pod.labels)
        }
    }
}

/// One part of the port space with its decision and the rules that led to it.
#[derive(Clone, Debug)]
pub(crate) struct Segment {
    pub ports: PortSet,
    pub allowed: bool,
    pub reason: Reason,
    pub trail: Vec<RuleRef>,
}

/// What a rule allows, in ports of the flow's protocol, for the remote side in question.
pub(crate) trait RuleOracle {
    /// `index` is the position of the policy in [`Pipeline::policies`].
    fn rule_ports(
        &mut self,
        index: usize,
        policy: &Policy,
        direction: Direction,
        rule_index: usize,
    ) -> PortSet;
    /// Called when the walk would deny egress at the end of tier `default`: true when the
    /// remote is the subject's own node (K8S-ISO-6 engine choice).
    fn egress_to_own_node(&self) -> bool;
}

pub(crate) struct Walk<'a> {
    pub calico: bool,
    /// Build the trail of deciding rules; the whole-cluster path only needs the port sets.
    pub explain: bool,
    pub direction: Direction,
    pub notes: &'a mut Vec<Note>,
}

impl Pipeline<'_> {
    /// Runs the pipeline for pod `subject` and returns the decided parts of the port space.
    pub fn run(&self, subject: usize, walk: Walk<'_>, oracle: &mut dyn RuleOracle) -> Vec<Segment> {
        let direction = walk.direction;
        let applying = &self.applying[subject][direction_index(direction)];
        let mut outcomes = Vec::new();
        let mut active: Vec<(PortSet, Vec<RuleRef>)> = vec![(PortSet::all(), Vec::new())];
        let mut any_tier_applied = false;
        let mut start = 0;
        while start < applying.len() {
            let tier_index = self.policies[applying[start]].tier;
            let end = applying[start..]
                .iter()
                .position(|&j| self.policies[j].tier != tier_index)
                .map_or(applying.len(), |n| start + n);
            let in_tier = &applying[start..end];
            start = end;
            let tier = &self.tiers[tier_index];
            any_tier_applied = true;
            if walk.explain {
                self.note_priority_ties(in_tier, walk.notes);
            }
            let mut passed: Vec<(PortSet, Vec<RuleRef>)> = Vec::new();
            for &j in in_tier {
                let source = self.policies[j].policy;
                for (i, rule) in source.indexed_rules(direction) {
                    if active.iter().all(|(p, _)| p.is_empty()) {
                        break;
                    }
                    let matched = oracle.rule_ports(j, source, direction, i);
                    if matched.is_empty() {
                        continue;
                    }
                    let action = rule.action;
                    for (ports, trail) in &mut active {
                        let hit = ports.intersection(&matched);
                        if hit.is_empty() {
                            continue;
                        }
                        let step = || rule_ref(source, &tier.name, direction, i, action);
                        match action {
                            Action::Log => {
                                if walk.explain {
                                    let step = step();
                                    walk.notes.push(Note {
                                        code: "CAL_LOG",
                                        message: format!(
                                            "logged by {} {} rule {}",
                                            step.kind,
                                            step_name(&step),
                                            step.rule.clone().unwrap_or_default()
                                        ),
                                    });
                                }
                                continue;
                            }
                            Action::Allow | Action::Deny => {
                                let mut t = trail.clone();
                                if walk.explain {
                                    t.push(step());
                                }
                                outcomes.push(Segment {
                                    ports: hit,
                                    allowed: action == Action::Allow,
                                    reason: decided_reason(source, action, walk.calico),
                                    trail: t,
                                });
                            }
                            Action::Pass => {
                                let mut t = trail.clone();
                                if walk.explain {
                                    t.push(step());
                                }
                                passed.push((hit, t));
                            }
                        }
                        *ports = ports.difference(&matched);
                    }
                }
            }
            for (ports, trail) in active.drain(..) {
                if ports.is_empty() {
                    continue;
                }
                match tier.default_action {
                    TierDefault::Pass => passed.push((ports, trail)),
                    TierDefault::Deny
                        if direction == Direction::Egress
                            && tier.name == Tier::DEFAULT
                            && oracle.egress_to_own_node() =>
                    {
                        outcomes.push(Segment {
                            ports,
                            allowed: true,
                            reason: Reason::NodeLocal,
                            trail,
                        });
                    }
                    TierDefault::Deny => {
                        let mut t = trail;
                        let only_kubernetes = in_tier
                            .iter()
                            .all(|&j| self.policies[j].policy.is_kubernetes());
                        for &j in in_tier.iter().filter(|_| walk.explain) {
                            let source = self.policies[j].policy;
                            t.push(RuleRef {
                                kind: source.kind.display_name(),
                                namespace: source.namespace.clone(),
                                name: source.name.clone(),
                                tier: tier.name.clone(),
                                rule: None,
                                action: "Deny",
                                detail: format!("selects the pod for {direction}; none of its {direction} rules matched (end of tier {})", tier.name),
                                source: source.source.clone(),
                            });
                        }
                        let reason = if only_kubernetes && !walk.calico {
                            Reason::NpDenyIsolated
                        } else {
                            Reason::TierEndDeny
                        };
                        outcomes.push(Segment {
                            ports,
                            allowed: false,
                            reason,
                            trail: t,
                        });
                    }
                }
            }
            active = passed;
        }
        for (ports, trail) in active {
            if ports.is_empty() {
                continue;
            }
            let reason = match (walk.calico, any_tier_applied) {
                (true, _) => Reason::ProfileAllow,
                (false, false) => Reason::NotIsolated,
                (false, true) => Reason::DefaultAllow,
            };
            outcomes.push(Segment {
                ports,
                allowed: true,
                reason,
                trail,
            });
        }
        outcomes
    }

    fn note_priority_ties(&self, in_tier: &[usize], notes: &mut Vec<Note>) {
        for pair in in_tier.windows(2) {
            let (a, b) = (self.policies[pair[0]].policy, self.policies[pair[1]].policy);
            if a.kind.is_cluster_kind() && b.kind.is_cluster_kind() && a.order == b.order {
                notes.push(Note {
                    code: "ANP_PRIORITY_TIE",
                    message: format!(
                        "{} and {} share priority {}; upstream leaves their order undefined, Bulkhead orders them by name",
                        a.name,
                        b.name,
                        a.order.unwrap_or_default()
                    ),
                });
            }
        }
    }
}

fn step_name(r: &RuleRef) -> String {
    match &r.namespace {
        Some(ns) => format!("{ns}/{}", r.name),
        None => r.name.clone(),
    }
}

fn decided_reason(policy: &Policy, action: Action, calico: bool) -> Reason {
    let allow = action == Action::Allow;
    match (policy.kind, policy.tier.as_str()) {
        (PolicyKind::NetworkPolicy, _) if calico => Reason::CalicoAllow,
        (PolicyKind::NetworkPolicy, _) => Reason::NpAllow,
        (PolicyKind::AdminNetworkPolicy, _)
        | (PolicyKind::ClusterNetworkPolicy, Tier::KUBE_ADMIN) => {
            if allow {
                Reason::AnpAllow
            } else {
                Reason::AnpDeny
            }
        }
        (PolicyKind::BaselineAdminNetworkPolicy | PolicyKind::ClusterNetworkPolicy, _) => {
            if allow {
                Reason::BanpAllow
            } else {
                Reason::BanpDeny
            }
        }
        _ => {
            if allow {
                Reason::CalicoAllow
            } else {
                Reason::CalicoDeny
            }
        }
    }
}

fn rule_ref(
    policy: &Policy,
    tier: &str,
    direction: Direction,
    index: usize,
    action: Action,
) -> RuleRef {
    let detail = crate::describe::rule(policy, direction, index);
    let rule_name = policy.rules(direction)[index].name.clone();
    let action = match (policy.kind, action) {
        (PolicyKind::ClusterNetworkPolicy, Action::Allow) => "Accept",
        (_, a) => a.as_str(),
    };
    RuleRef {
        kind: policy.kind.display_name(),
        namespace: policy.namespace.clone(),
        name: policy.name.clone(),
        tier: tier.to_string(),
        rule: Some(format!("{direction}[{index}]")),
        action,
        detail: match rule_name {
            Some(n) => format!("rule {n:?}: {detail}"),
            None => detail,
        },
        source: rule_source(policy, direction, index),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_model::{LabelSelector, PolicyKind, PolicyTypes};
    use proptest::prelude::*;

    fn policy(kind: PolicyKind, namespace: Option<String>, name: String) -> Policy {
        Policy {
            kind,
            namespace,
            name,
            tier: "default".to_string(),
            order: None,
            staged: None,
            subject: Subject::PodsInNamespace(LabelSelector::default()),
            types: PolicyTypes {
                ingress: true,
                egress: false,
                defaulted: false,
            },
            ingress: Vec::new(),
            egress: Vec::new(),
            host_endpoints_only: false,
            source: None,
        }
    }

    /// `kind ns/name staged` of each policy in the staged view, sorted: the loop
    /// `Pipeline::build` once ran, each staged policy in turn removing what it names and, when
    /// it sets, taking its place.
    fn staged_view_by_replacement(policies: &[Policy]) -> Vec<String> {
        let mut view: Vec<&Policy> = policies.iter().filter(|p| p.staged.is_none()).collect();
        for policy in policies.iter().filter(|p| p.staged.is_some()) {
            view.retain(|p| {
                !(p.kind == policy.kind && p.namespace == policy.namespace && p.name == policy.name)
            });
            if matches!(policy.staged, Some(StagedAction::Set | StagedAction::Audit)) {
                view.push(policy);
            }
        }
        let mut named: Vec<String> = view.iter().map(|p| describe(p)).collect();
        named.sort();
        named
    }

    fn describe(p: &Policy) -> String {
        format!(
            "{:?} {:?}/{} {:?} {:?}",
            p.kind, p.namespace, p.name, p.staged, p.order
        )
    }

    proptest! {
        #[test]
        fn the_staged_view_keeps_the_last_staged_policy_of_each_name(
            specs in prop::collection::vec((0..2usize, 0..3usize, 0..4usize), 0..24)
        ) {
            let policies: Vec<Policy> = specs
                .iter()
                .enumerate()
                .map(|(i, &(kind, name, staged))| {
                    let kind = [PolicyKind::NetworkPolicy, PolicyKind::CalicoNetworkPolicy][kind];
                    let mut p = policy(kind, Some("ns".to_string()), format!("p{name}"));
                    p.staged = [None, Some(StagedAction::Set), Some(StagedAction::Delete), Some(StagedAction::Audit)][staged];
                    // Which of several staged policies of one name survives shows in its order.
                    p.order = Some(i as f64);
                    p
                })
                .collect();
            let cluster = Cluster { policies, ..Cluster::default() };
            let labelling = Labelling::new(&cluster);
            let pipeline = Pipeline::build(&cluster, &labelling, true, true);
            let mut got: Vec<String> = pipeline.policies.iter().map(|e| describe(e.policy)).collect();
            got.sort();
            prop_assert_eq!(got, staged_view_by_replacement(&cluster.policies));
        }
    }

    fn kind() -> impl Strategy<Value = PolicyKind> {
        prop::sample::select(vec![
            PolicyKind::NetworkPolicy,
            PolicyKind::CalicoNetworkPolicy,
            PolicyKind::GlobalNetworkPolicy,
            PolicyKind::AdminNetworkPolicy,
        ])
    }

    /// Sorts policies by their keys, stably, and names them in the order found.
    fn order_by<K: Ord>(policies: &[Policy], keys: Vec<K>) -> Vec<String> {
        let mut keyed: Vec<(&Policy, K)> = policies.iter().zip(keys).collect();
        keyed.sort_by(|a, b| a.1.cmp(&b.1));
        keyed
            .iter()
            .map(|(p, _)| format!("{:?} {:?} {}", p.kind, p.namespace, p.name))
            .collect()
    }

    proptest! {
        /// Names that are prefixes of each other and characters on both sides of `/` are where
        /// comparing parts could differ from comparing the joined string.
        #[test]
        fn ranked_keys_order_policies_as_their_strings_do(
            specs in prop::collection::vec(
                (kind(), prop::option::of("[a.0-]{0,3}"), "[a.0-]{1,4}"),
                0..40,
            )
        ) {
            let policies: Vec<Policy> = specs
                .into_iter()
                .map(|(k, ns, name)| policy(k, ns, name))
                .collect();
            let refs: Vec<&Policy> = policies.iter().collect();
            let ranked = tie_break_keys(&refs);
            prop_assert!(ranked.iter().all(|k| matches!(k, TieBreak::Ranked(..))));
            let spelled: Vec<String> = refs.iter().map(|p| sort_key(p)).collect();
            prop_assert_eq!(order_by(&policies, ranked), order_by(&policies, spelled));
        }
    }

    #[test]
    fn a_name_with_a_slash_is_ordered_by_its_string() {
        let policies = [
            policy(PolicyKind::NetworkPolicy, Some("b".into()), "a/x".into()),
            policy(PolicyKind::NetworkPolicy, Some("a".into()), "a".into()),
        ];
        let refs: Vec<&Policy> = policies.iter().collect();
        let keys = tie_break_keys(&refs);
        assert_eq!(
            keys,
            vec![
                TieBreak::Spelled("a/x/b/NetworkPolicy".into()),
                TieBreak::Spelled("a/a/NetworkPolicy".into()),
            ]
        );
        assert!(keys[1] < keys[0]);
    }
}
