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
    Action, Cluster, Direction, NetworkPolicy, PortSet, StagedAction, Subject, Tier, TierDefault,
    TieredKind, TieredPolicy,
};
use rayon::prelude::*;

#[derive(Clone, Copy, Debug)]
pub(crate) enum PolicySource<'c> {
    Kubernetes(&'c NetworkPolicy),
    Tiered(&'c TieredPolicy),
}

#[derive(Debug)]
pub(crate) struct PolicyEntry<'c> {
    pub source: PolicySource<'c>,
    pub tier: usize,
}

impl PolicySource<'_> {
    pub fn kind_name(self) -> &'static str {
        match self {
            PolicySource::Kubernetes(_) => "NetworkPolicy",
            PolicySource::Tiered(p) => match p.kind {
                TieredKind::CalicoNetworkPolicy => "NetworkPolicy",
                other => other.as_str(),
            },
        }
    }

    pub fn namespace(self) -> Option<String> {
        match self {
            PolicySource::Kubernetes(p) => Some(p.namespace.clone()),
            PolicySource::Tiered(p) => p.namespace.clone(),
        }
    }

    pub fn name(self) -> String {
        match self {
            PolicySource::Kubernetes(p) => p.name.clone(),
            PolicySource::Tiered(p) => p.name.clone(),
        }
    }

    fn order(self) -> Option<f64> {
        match self {
            PolicySource::Kubernetes(_) => Some(1000.0),
            PolicySource::Tiered(p) => p.order,
        }
    }

    fn applies_to(self, direction: Direction) -> bool {
        match self {
            PolicySource::Kubernetes(p) => p.policy_types.contains(direction),
            PolicySource::Tiered(p) => p.types.contains(direction),
        }
    }

    pub fn source(self) -> Option<bulkhead_model::SourceLocation> {
        match self {
            PolicySource::Kubernetes(p) => p.source.clone(),
            PolicySource::Tiered(p) => p.source.clone(),
        }
    }

    /// Where one rule is written; the policy's location when the rule's is not known.
    pub fn rule_source(
        self,
        direction: Direction,
        index: usize,
    ) -> Option<bulkhead_model::SourceLocation> {
        let rule = match self {
            PolicySource::Kubernetes(p) => p.rules(direction).get(index).map(|r| &r.location),
            PolicySource::Tiered(p) => p.rules(direction).get(index).map(|r| &r.location),
        };
        rule.cloned().flatten().or_else(|| self.source())
    }

    /// Felix's tie-break string (CAL-ORD-3): name, namespace, kind.
    fn sort_key(self) -> String {
        format!(
            "{}/{}/{}",
            self.name(),
            self.namespace().unwrap_or_default(),
            self.kind_name()
        )
    }

    fn is_cluster_kind(self) -> bool {
        matches!(
            self,
            PolicySource::Tiered(TieredPolicy {
                kind: TieredKind::AdminNetworkPolicy
                    | TieredKind::BaselineAdminNetworkPolicy
                    | TieredKind::ClusterNetworkPolicy,
                ..
            })
        )
    }
}

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
        let mut kubernetes: Vec<&'c NetworkPolicy> = cluster.network_policies.iter().collect();
        let mut tiered: Vec<&'c TieredPolicy> = cluster
            .tiered_policies
            .iter()
            .filter(|p| {
                p.staged.is_none() && !p.host_endpoints_only && (calico || !p.kind.is_calico())
            })
            .collect();
        if staged {
            for (policy, action) in &cluster.staged_network_policies {
                kubernetes.retain(|p| !(p.namespace == policy.namespace && p.name == policy.name));
                if *action == StagedAction::Set {
                    kubernetes.push(policy);
                }
            }
            for policy in cluster
                .tiered_policies
                .iter()
                .filter(|p| p.staged.is_some())
            {
                tiered.retain(|p| {
                    !(p.kind == policy.kind
                        && p.namespace == policy.namespace
                        && p.name == policy.name)
                });
                if policy.staged == Some(StagedAction::Set) && !policy.host_endpoints_only {
                    tiered.push(policy);
                }
            }
        }
        let mut tiers = Tier::built_in();
        if calico {
            for t in &cluster.tiers {
                match tiers.iter_mut().find(|x| x.name == t.name) {
                    Some(existing) => existing.source = t.source.clone(),
                    None => tiers.push(t.clone()),
                }
            }
            for p in &tiered {
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
        let mut policies: Vec<PolicyEntry<'c>> = kubernetes
            .into_iter()
            .map(|p| PolicyEntry {
                source: PolicySource::Kubernetes(p),
                tier: tier_of(Tier::DEFAULT),
            })
            .chain(tiered.into_iter().map(|p| PolicyEntry {
                source: PolicySource::Tiered(p),
                tier: tier_of(&p.tier),
            }))
            .collect();
        policies.sort_by(|a, b| {
            a.tier
                .cmp(&b.tier)
                .then_with(|| {
                    a.source
                        .order()
                        .unwrap_or(f64::INFINITY)
                        .total_cmp(&b.source.order().unwrap_or(f64::INFINITY))
                })
                .then_with(|| a.source.sort_key().cmp(&b.source.sort_key()))
        });
        // Namespaced policies only ever select pods of their namespace: index them so selection
        // costs (policies of the namespace + cluster-scoped policies) per pod, not all policies.
        let mut by_namespace: std::collections::HashMap<String, Vec<usize>> =
            std::collections::HashMap::new();
        let mut cluster_scoped = Vec::new();
        for (j, e) in policies.iter().enumerate() {
            match e.source.namespace() {
                Some(ns) => by_namespace.entry(ns).or_default().push(j),
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
                    .get(&pod.namespace)
                    .into_iter()
                    .flatten()
                    .chain(&cluster_scoped)
                    .copied()
                    .filter(|&j| selects(cluster, labelling, policies[j].source, i))
                    .collect();
                selecting.sort_unstable();
                let of = |d| {
                    selecting
                        .iter()
                        .copied()
                        .filter(|&j| policies[j].source.applies_to(d))
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
fn selects(
    cluster: &Cluster,
    labelling: &Labelling,
    source: PolicySource<'_>,
    index: usize,
) -> bool {
    let pod = &cluster.pods[index];
    match source {
        PolicySource::Kubernetes(p) => {
            p.namespace == pod.namespace && p.pod_selector.matches(&pod.labels)
        }
        PolicySource::Tiered(p) => {
            let namespace_labels = cluster.namespace(&pod.namespace).map(|n| &n.labels);
            match &p.subject {
                Subject::Calico {
                    selector,
                    namespace_selector,
                    service_account_selector,
                } => {
                    let scope_ok = match &p.namespace {
                        Some(ns) => *ns == pod.namespace,
                        None => namespace_selector.as_ref().is_none_or(|s| {
                            labelling
                                .namespace(&pod.namespace)
                                .is_some_and(|l| s.matches(l))
                        }),
                    };
                    scope_ok
                        && selector.matches(&labelling.calico_pod[index])
                        && service_account_selector.as_ref().is_none_or(|s| {
                            labelling
                                .service_account_of(pod)
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
        policy: PolicySource<'_>,
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
                let source = self.policies[j].source;
                let rule_count = match source {
                    PolicySource::Kubernetes(p) => p.rules(direction).len(),
                    PolicySource::Tiered(p) => p.rules(direction).len(),
                };
                for i in 0..rule_count {
                    if active.iter().all(|(p, _)| p.is_empty()) {
                        break;
                    }
                    let matched = oracle.rule_ports(j, source, direction, i);
                    if matched.is_empty() {
                        continue;
                    }
                    let action = match source {
                        PolicySource::Kubernetes(_) => Action::Allow,
                        PolicySource::Tiered(p) => p.rules(direction)[i].action,
                    };
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
                        let only_kubernetes = in_tier.iter().all(|&j| {
                            matches!(self.policies[j].source, PolicySource::Kubernetes(_))
                        });
                        for &j in in_tier.iter().filter(|_| walk.explain) {
                            let source = self.policies[j].source;
                            t.push(RuleRef {
                                kind: source.kind_name(),
                                namespace: source.namespace(),
                                name: source.name(),
                                tier: tier.name.clone(),
                                rule: None,
                                action: "Deny",
                                detail: format!("selects the pod for {direction}; none of its {direction} rules matched (end of tier {})", tier.name),
                                source: source.source(),
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
            let (a, b) = (self.policies[pair[0]].source, self.policies[pair[1]].source);
            if a.is_cluster_kind() && b.is_cluster_kind() && a.order() == b.order() {
                notes.push(Note {
                    code: "ANP_PRIORITY_TIE",
                    message: format!(
                        "{} and {} share priority {}; upstream leaves their order undefined, Bulkhead orders them by name",
                        a.name(),
                        b.name(),
                        a.order().unwrap_or_default()
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

fn decided_reason(source: PolicySource<'_>, action: Action, calico: bool) -> Reason {
    let allow = action == Action::Allow;
    match source {
        PolicySource::Kubernetes(_) if calico => Reason::CalicoAllow,
        PolicySource::Kubernetes(_) => Reason::NpAllow,
        PolicySource::Tiered(p) => match (p.kind, p.tier.as_str()) {
            (TieredKind::AdminNetworkPolicy, _)
            | (TieredKind::ClusterNetworkPolicy, Tier::KUBE_ADMIN) => {
                if allow {
                    Reason::AnpAllow
                } else {
                    Reason::AnpDeny
                }
            }
            (TieredKind::BaselineAdminNetworkPolicy | TieredKind::ClusterNetworkPolicy, _) => {
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
        },
    }
}

fn rule_ref(
    source: PolicySource<'_>,
    tier: &str,
    direction: Direction,
    index: usize,
    action: Action,
) -> RuleRef {
    let detail = crate::describe::rule(source, direction, index);
    let rule_name = match source {
        PolicySource::Kubernetes(_) => None,
        PolicySource::Tiered(p) => p.rules(direction)[index].name.clone(),
    };
    let action = match (source, action) {
        (
            PolicySource::Tiered(TieredPolicy {
                kind: TieredKind::ClusterNetworkPolicy,
                ..
            }),
            Action::Allow,
        ) => "Accept",
        (_, a) => a.as_str(),
    };
    RuleRef {
        kind: source.kind_name(),
        namespace: source.namespace(),
        name: source.name(),
        tier: tier.to_string(),
        rule: Some(format!("{direction}[{index}]")),
        action,
        detail: match rule_name {
            Some(n) => format!("rule {n:?}: {detail}"),
            None => detail,
        },
        source: source.rule_source(direction, index),
    }
}
