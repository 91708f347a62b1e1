//! BH107 rule-without-effect and BH108 policy-without-effect.
//!
//! ## What it flags
//! A rule (BH107) or a whole policy (BH108) whose removal changes no verdict in the snapshot:
//! everything it allows is allowed by other rules anyway (redundant), or earlier rules of an
//! ordered tier always decide first (shadowed). Decided by re-running the engine without it
//! over the selected pods, every pod peer, sample external addresses and every port any policy
//! mentions. The selected pods include the pod each namespace will get next (no labels, no
//! address yet): a namespace default-deny protects tomorrow's pods even when every pod of
//! today is also selected by a narrower policy, so it is never "without effect".
//!
//! For ordered policies (Calico, AdminNetworkPolicy, BaselineAdminNetworkPolicy,
//! ClusterNetworkPolicy) the finding names the cause: the rule, Pass or tier end that decides
//! first every flow the rule matches, or that the rule matches no flow of its pods at all. A
//! rule whose peer selector matches nothing is left to BH102, which quotes the selector.
//!
//! ## Why it matters
//! Dead rules mislead reviewers ("this is what allows X") and rot: when the other rule is
//! changed, nobody remembers this one was meant to matter. Shadowed Calico/ANP rules usually
//! mean the order is not what the author intended.
//!
//! ## Example
//! `from: [{podSelector: {matchLabels: {app: web}}}]` next to an `ingress: [{}]` policy on
//! the same pods.
//!
//! ## Fix
//! Delete the rule or policy, or fix the order/selector that makes it dead.

use crate::lint::{LintContext, RuleInfo, resource};
use bulkhead_engine::{Endpoint, Engine, EngineOptions, Flow};
use bulkhead_model::{
    Atom, Cluster, Diagnostic, Direction, NetworkPolicyPeer, PolicyRule, Protocol, RuleMatcher,
    Severity,
};
use std::net::IpAddr;

pub const RULE: RuleInfo = RuleInfo {
    code: "BH107",
    name: "rule-without-effect",
    severity: Severity::Warning,
    summary: "removing this rule changes no verdict (redundant or shadowed)",
    doc: include_str!("rule_without_effect.rs"),
};

pub const POLICY_RULE: RuleInfo = RuleInfo {
    code: "BH108",
    name: "policy-without-effect",
    severity: Severity::Warning,
    summary: "removing this policy changes no verdict (redundant)",
    doc: include_str!("rule_without_effect.rs"),
};

/// Which Kubernetes policy (its index in `Cluster::policies`), and optionally which rule, to
/// take out.
#[derive(Clone, Copy)]
enum Target {
    Kubernetes(usize, Option<(Direction, usize)>),
}

fn without(cluster: &Cluster, target: Target) -> Cluster {
    let mut c = cluster.clone();
    match target {
        Target::Kubernetes(p, None) => {
            c.policies.remove(p);
        }
        Target::Kubernetes(p, Some((d, i))) => {
            c.policies[p].rules_mut(d).remove(i);
        }
    }
    c
}

/// Ports and addresses worth probing: every port policies or pods mention, the edges of every
/// range, and addresses inside, at the edges of, and outside every CIDR.
struct Samples {
    ports: Vec<(Protocol, u16)>,
    externals: Vec<IpAddr>,
}

fn samples(engine: &Engine<'_>) -> Samples {
    let cluster = engine.cluster();
    let mut ports = vec![1u16, 65535];
    // The engine's own list of address boundaries: the same atoms it decides on.
    let nets = engine.mentioned_cidrs();
    let mut protocols = vec![Protocol::Tcp, Protocol::Udp];
    for p in &cluster.policies {
        p.visit_atoms(&mut |atom| match atom {
            Atom::Ports(_, range) => ports.extend([
                range.start().max(1),
                range.end(),
                range.start().saturating_sub(1).max(1),
                range.end().saturating_add(1),
            ]),
            Atom::Protocol(Protocol::Sctp) => protocols.push(Protocol::Sctp),
            _ => {}
        });
    }
    for pod in &cluster.pods {
        ports.extend(pod.ports.iter().map(|p| p.port));
    }
    ports.sort_unstable();
    ports.dedup();
    let mut externals: Vec<IpAddr> = vec![
        "203.0.113.1".parse().ok(),
        "169.254.169.254".parse().ok(),
        "2001:db8::1".parse().ok(),
    ]
    .into_iter()
    .flatten()
    .collect();
    for n in nets {
        externals.push(n.network());
        externals.push(n.broadcast());
        externals.extend(n.hosts().nth(1));
    }
    externals.sort_unstable();
    externals.dedup();
    if cluster
        .pods
        .iter()
        .any(|p| p.ports.iter().any(|x| x.protocol == Protocol::Sctp))
    {
        protocols.push(Protocol::Sctp);
    }
    protocols.sort_unstable();
    protocols.dedup();

    Samples {
        ports: protocols
            .into_iter()
            .flat_map(|p| ports.iter().map(move |&port| (p, port)))
            .collect(),
        externals,
    }
}

/// True when no sampled flow of the policy's pods changes verdict between the two engines.
fn remotes(engine: &Engine<'_>, samples: &Samples) -> Vec<Endpoint> {
    engine
        .pod_endpoints()
        .into_iter()
        .map(Endpoint::Pod)
        .chain((0..engine.cluster().nodes.len()).map(Endpoint::Node))
        .chain(samples.externals.iter().map(|ip| Endpoint::External(*ip)))
        .collect()
}

/// Every sampled flow of the subjects, in both directions: (subject, flow, the direction
/// the subject's policies act on). Flows of a pod to itself are left out.
fn sampled_flows<'a>(
    subjects: &'a [usize],
    remotes: &'a [Endpoint],
    samples: &'a Samples,
) -> impl Iterator<Item = (Flow, Direction)> + 'a {
    subjects.iter().flat_map(move |&s| {
        remotes
            .iter()
            .filter(move |&&r| r != Endpoint::Pod(s))
            .flat_map(move |&r| {
                samples.ports.iter().flat_map(move |&(protocol, port)| {
                    [
                        (Endpoint::Pod(s), r, Direction::Egress),
                        (r, Endpoint::Pod(s), Direction::Ingress),
                    ]
                    .map(|(src, dst, direction)| {
                        (
                            Flow {
                                src,
                                dst,
                                protocol,
                                port: Some(port),
                                icmp: None,
                            },
                            direction,
                        )
                    })
                })
            })
    })
}

/// The half of a verdict the given direction's policies decide.
fn half(v: &bulkhead_engine::Verdict, direction: Direction) -> &bulkhead_engine::DirectionVerdict {
    match direction {
        Direction::Egress => &v.egress,
        Direction::Ingress => &v.ingress,
    }
}

/// Judges the half the policy acts on: a rule is not redundant just because the other side
/// blocks the flow today. Only a flow whose explanation names the policy can change when it
/// or one of its rules goes (a flow decided elsewhere keeps its verdict), so the reduced
/// engine is asked about those alone.
fn same_verdicts(
    before: &Engine<'_>,
    after: &Engine<'_>,
    subjects: &[usize],
    samples: &Samples,
) -> bool {
    // Whole port sets per (pod, remote, protocol, direction), through the same pipeline as
    // `evaluate`: exact on every port, not only the sampled ones, and one question per pair
    // instead of one per sampled port. Judge the half the policy acts on: a rule is not
    // redundant just because the other side blocks the flow today.
    let remotes = remotes(before, samples);
    let protocols: Vec<Protocol> = {
        let mut p: Vec<Protocol> = samples.ports.iter().map(|(p, _)| *p).collect();
        p.sort_unstable_by_key(|p| p.to_string());
        p.dedup();
        p
    };
    subjects.iter().all(|&s| {
        remotes
            .iter()
            .filter(|&&r| r != Endpoint::Pod(s))
            .all(|&r| {
                let ipv4 = before.flow_is_ipv4(Endpoint::Pod(s), r);
                protocols.iter().all(|&protocol| {
                    [Direction::Egress, Direction::Ingress]
                        .into_iter()
                        .all(|d| {
                            before.direction_ports(d, s, r, ipv4, protocol)
                                == after.direction_ports(d, s, r, ipv4, protocol)
                        })
                })
            })
    })
}

fn subjects_of(engine: &Engine<'_>, name: &str, namespace: Option<&str>) -> Vec<usize> {
    engine
        .pod_endpoints()
        .into_iter()
        .filter(|&i| {
            [Direction::Ingress, Direction::Egress]
                .into_iter()
                .any(|d| {
                    engine
                        .applying_policies(i, d)
                        .iter()
                        .any(|p| p.name == name && p.namespace.as_deref() == namespace)
                })
        })
        .collect()
}

/// The snapshot plus one new pod per namespace ([`crate::default_deny::new_pod`]).
fn with_new_pods(cluster: &Cluster) -> Cluster {
    let mut c = cluster.clone();
    c.pods.extend(
        cluster
            .namespaces
            .iter()
            .map(|ns| crate::default_deny::new_pod(&ns.name)),
    );
    c
}

fn run(ctx: &LintContext<'_>, whole_policies: bool) -> Vec<Diagnostic> {
    let rule_count: usize = ctx
        .cluster
        .policies
        .iter()
        .map(|p| p.ingress.len() + p.egress.len())
        .sum();
    if rule_count > ctx.config.thresholds.effect_analysis_max_rules || !ctx.has_pods() {
        return Vec::new();
    }
    let options = ctx.engine.options();
    let cluster = &with_new_pods(ctx.cluster);
    let engine = Engine::new(cluster, options);
    let samples = samples(&engine);
    let mut out = Vec::new();
    let mut check = |target: Target,
                     res: String,
                     place: String,
                     source: Option<&bulkhead_model::SourceLocation>,
                     subjects: &[usize]| {
        if subjects.is_empty() {
            return;
        }
        let reduced = without(cluster, target);
        let after = Engine::new(&reduced, EngineOptions { ..options });
        if same_verdicts(&engine, &after, subjects, &samples) {
            let (info, what) = if whole_policies {
                (&POLICY_RULE, res.clone())
            } else {
                (&RULE, format!("{res} {place}"))
            };
            let Target::Kubernetes(k, rule) = target;
            let (message, help) = match deciding_instead(
                cluster, k, rule, options, &after, subjects, &samples,
            ) {
                Some(others) => (
                    format!(
                        "{what} has no effect: every flow it decides is decided the same way by {others}"
                    ),
                    format!(
                        "delete it (redundant with {others}), or narrow the other rule if this one is the one meant"
                    ),
                ),
                None => (
                    format!(
                        "{what} has no effect: it decides no flow of the pods its policy selects"
                    ),
                    "delete it, or fix the peers and ports that keep it from matching".to_string(),
                ),
            };
            out.push(ctx.finding(info, Some(res), source, message, &help));
        }
    };
    for (k, p) in cluster
        .policies
        .iter()
        .enumerate()
        .filter(|(_, p)| p.is_kubernetes() && p.staged.is_none())
    {
        let namespace = p.namespace.as_deref().unwrap_or_default();
        // A rule whose peers select no pod is dead for that reason (BH102 says so); calling it
        // redundant would point the reader the wrong way. The same holds for its policy.
        let dead: Vec<bool> = [Direction::Ingress, Direction::Egress]
            .into_iter()
            .flat_map(|d| p.rules(d).iter().map(move |r| (d, r)))
            .map(|(_, r)| reaches_no_pod(cluster, namespace, r))
            .collect();
        if dead.iter().any(|d| *d) && whole_policies {
            continue;
        }
        let subjects = subjects_of(&engine, &p.name, Some(namespace));
        let res = resource("NetworkPolicy", Some(namespace), &p.name);
        if whole_policies {
            check(
                Target::Kubernetes(k, None),
                res,
                String::new(),
                p.source.as_ref(),
                &subjects,
            );
            continue;
        }
        for d in [Direction::Ingress, Direction::Egress] {
            if !p.types.contains(d) {
                continue;
            }
            for i in 0..p.rules(d).len() {
                if reaches_no_pod(cluster, namespace, &p.rules(d)[i]) {
                    continue;
                }
                check(
                    Target::Kubernetes(k, Some((d, i))),
                    res.clone(),
                    format!("{d}[{i}]"),
                    p.rules(d)[i].location.as_ref().or(p.source.as_ref()),
                    &subjects,
                );
            }
        }
    }
    // Ordered policies: a rule matters when it decides (or passes) some flow. One that never
    // appears in any explanation is shadowed by earlier rules, or matches nothing.
    let remotes = remotes(&engine, &samples);
    for p in cluster
        .policies
        .iter()
        .filter(|p| !p.is_kubernetes() && p.staged.is_none() && !p.host_endpoints_only)
    {
        let subjects = subjects_of(&engine, &p.name, p.namespace.as_deref());
        if subjects.is_empty() {
            continue;
        }
        let mut used: std::collections::BTreeSet<Option<String>> =
            std::collections::BTreeSet::new();
        for (flow, direction) in sampled_flows(&subjects, &remotes, &samples) {
            if !p.types.contains(direction) {
                continue;
            }
            for step in &half(&engine.evaluate(&flow), direction).decided_by {
                if step.name == p.name && step.namespace == p.namespace {
                    used.insert(step.rule.clone());
                }
            }
        }
        let res = resource(p.kind.as_str(), p.namespace.as_deref(), &p.name);
        if whole_policies {
            if used.is_empty() {
                // Name what decides first, from the first of its rules that matches a flow.
                let by = [Direction::Ingress, Direction::Egress]
                    .into_iter()
                    .filter(|d| p.types.contains(*d))
                    .flat_map(|d| (0..p.rules(d).len()).map(move |i| (d, i)))
                    .find_map(|(d, i)| {
                        match why_unused(&engine, p, d, i, &subjects, &remotes, &samples) {
                            Unused::DecidedFirstBy(by) => Some(by),
                            Unused::MatchesNoFlow => None,
                        }
                    });
                let (message, help) = match by {
                    Some(by) => (
                        format!(
                            "{res} never decides a flow of the pods it selects: every flow its rules match is decided first by {by}"
                        ),
                        format!(
                            "delete it, or move it before {by} (an earlier tier or a lower order)"
                        ),
                    ),
                    None => (
                        format!(
                            "{res} never decides a flow of the pods it selects: its rules match none of their flows"
                        ),
                        "delete it, or fix the peers and ports that keep its rules from matching"
                            .to_string(),
                    ),
                };
                out.push(ctx.finding(
                    &POLICY_RULE,
                    Some(res.clone()),
                    p.source.as_ref(),
                    message,
                    &help,
                ));
            }
            continue;
        }
        for d in [Direction::Ingress, Direction::Egress] {
            if !p.types.contains(d) {
                continue;
            }
            for i in 0..p.rules(d).len() {
                if p.rules(d)[i].action == bulkhead_model::Action::Log {
                    continue;
                }
                let id = format!("{d}[{i}]");
                if used.contains(&Some(id.clone())) {
                    continue;
                }
                // A rule whose peer selector matches nothing is dead for that reason, and
                // BH102 says so with the selector; calling it shadowed would mislead.
                if crate::rules::selector_matches_nothing::tiered_peer_matching_nothing(
                    &engine, p, d, i,
                )
                .is_some()
                {
                    continue;
                }
                let at = p.rules(d)[i].location.as_ref().or(p.source.as_ref());
                let (message, help) = match why_unused(&engine, p, d, i, &subjects, &remotes, &samples) {
                    Unused::DecidedFirstBy(by) => (
                        format!("{res} {id} never decides a flow: every flow it matches is decided first by {by}"),
                        format!("move it before {by} (an earlier tier or a lower order), or narrow that rule"),
                    ),
                    Unused::MatchesNoFlow => (
                        format!("{res} {id} never decides a flow: it matches no flow of the pods its policy selects (its protocol, ports or peers exclude them all)"),
                        "check the rule's protocol, ports and peers against the pods it is meant for".to_string(),
                    ),
                };
                out.push(ctx.finding(&RULE, Some(res.clone()), at, message, &help));
            }
        }
    }
    out
}

pub fn check(ctx: &LintContext<'_>) -> Vec<Diagnostic> {
    run(ctx, false)
}

pub fn check_policies(ctx: &LintContext<'_>) -> Vec<Diagnostic> {
    run(ctx, true)
}

/// Whether every peer of a Kubernetes rule is a pod/namespace selector that selects no pod
/// endpoint.
fn reaches_no_pod(cluster: &Cluster, policy_namespace: &str, rule: &PolicyRule) -> bool {
    let RuleMatcher::Kubernetes(rule) = &rule.matcher else {
        return false;
    };
    let Some(peers) = &rule.peers else {
        return false;
    };
    peers.iter().all(|peer| match peer {
        NetworkPolicyPeer::IpBlock(_) => false,
        NetworkPolicyPeer::Pods {
            namespace_selector,
            pod_selector,
        } => !cluster.pods.iter().any(|q| {
            q.is_endpoint()
                && !q.host_network
                && match namespace_selector {
                    None => q.namespace == policy_namespace,
                    Some(s) => cluster
                        .namespace(&q.namespace)
                        .is_some_and(|n| s.matches(&n.labels)),
                }
                && pod_selector.as_ref().is_none_or(|s| s.matches(&q.labels))
        }),
    })
}

/// Why an ordered rule never appears in an explanation.
enum Unused {
    /// Every sampled flow it matches is decided earlier: by this rule, Pass or tier end.
    DecidedFirstBy(String),
    /// Its selectors match, but not with the protocol and ports of any sampled flow.
    MatchesNoFlow,
}

/// Asks which sampled flows the rule would decide if it ran first, and who decides them now.
fn why_unused(
    engine: &Engine<'_>,
    policy: &bulkhead_model::Policy,
    direction: Direction,
    rule_index: usize,
    subjects: &[usize],
    remotes: &[Endpoint],
    samples: &Samples,
) -> Unused {
    let mut deciders: std::collections::BTreeMap<String, usize> = Default::default();
    for (flow, d) in sampled_flows(subjects, remotes, samples).filter(|(_, d)| *d == direction) {
        let (subject, remote) = match d {
            Direction::Egress => (flow.src, flow.dst),
            Direction::Ingress => (flow.dst, flow.src),
        };
        let Endpoint::Pod(s) = subject else { continue };
        let (Some(port), protocol) = (flow.port, flow.protocol) else {
            continue;
        };
        if !engine
            .policy_rule_ports(policy, direction, rule_index, s, remote, protocol)
            .contains(port)
        {
            continue;
        }
        let verdict = engine.evaluate(&flow);
        let half = half(&verdict, direction);
        // In the rule's own tier, the step there (an earlier rule, a Pass) is what keeps it
        // from deciding; otherwise an earlier tier decided.
        let step = half
            .decided_by
            .iter()
            .find(|step| step.tier == policy.tier)
            .or(half.decided_by.last());
        if let Some(step) = step {
            *deciders.entry(describe_step(step)).or_default() += 1;
        }
    }
    match deciders.into_iter().max_by_key(|(_, n)| *n) {
        Some((by, _)) => Unused::DecidedFirstBy(by),
        None => Unused::MatchesNoFlow,
    }
}

fn describe_step(step: &bulkhead_engine::RuleRef) -> String {
    let name = match &step.namespace {
        Some(ns) => format!("{ns}/{}", step.name),
        None => step.name.clone(),
    };
    match &step.rule {
        Some(rule) => format!(
            "{} {name} {rule} ({}, tier {})",
            step.kind, step.action, step.tier
        ),
        None => format!(
            "the end of tier {} ({} {name} selects the pod and no rule matched: {})",
            step.tier, step.kind, step.action
        ),
    }
}

/// What decides, once the policy (or rule) is gone, the flows it decides alone: those a
/// cluster holding only it (reduced to the rule) explains with it. Most frequent first, at
/// most three; `None` when it decides no sampled flow at all.
fn deciding_instead(
    cluster: &Cluster,
    policy_index: usize,
    rule: Option<(Direction, usize)>,
    options: EngineOptions,
    after: &Engine<'_>,
    subjects: &[usize],
    samples: &Samples,
) -> Option<String> {
    let policy = &cluster.policies[policy_index];
    let mut alone = cluster.clone();
    let mut only = policy.clone();
    if let Some((d, i)) = rule {
        let kept = only.rules(d)[i].clone();
        only.ingress.clear();
        only.egress.clear();
        match d {
            Direction::Ingress => only.ingress.push(kept),
            Direction::Egress => only.egress.push(kept),
        }
    }
    alone.policies = vec![only];
    let alone = Engine::new(&alone, options);
    let remotes = remotes(after, samples);
    let mut others: std::collections::BTreeMap<String, usize> = Default::default();
    for (flow, direction) in sampled_flows(subjects, &remotes, samples) {
        if rule.is_some_and(|(d, _)| d != direction) {
            continue;
        }
        // A rule matters where it allows; a whole policy also where it isolates.
        let decides = half(&alone.evaluate(&flow), direction)
            .decided_by
            .iter()
            .any(|step| step.name == policy.name && (rule.is_none() || step.rule.is_some()));
        if !decides {
            continue;
        }
        for step in &half(&after.evaluate(&flow), direction).decided_by {
            *others
                .entry(describe_np_step(step, policy, rule))
                .or_default() += 1;
        }
    }
    let mut ranked: Vec<(String, usize)> = others.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let names: Vec<String> = ranked.into_iter().take(3).map(|(w, _)| w).collect();
    (!names.is_empty()).then(|| names.join(", "))
}

/// A step of an explanation after a rule was removed, named as the user wrote it: rules of
/// the same policy after the removed one moved up by one, and are moved back here.
fn describe_np_step(
    step: &bulkhead_engine::RuleRef,
    policy: &bulkhead_model::Policy,
    removed: Option<(Direction, usize)>,
) -> String {
    let same_policy = step.namespace == policy.namespace && step.name == policy.name;
    let rule = step.rule.as_ref().map(|r| match removed {
        Some((d, i)) if same_policy => {
            let prefix = format!("{d}[");
            match r
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|n| n.parse::<usize>().ok())
            {
                Some(n) if n >= i => format!("{d}[{}]", n + 1),
                _ => r.clone(),
            }
        }
        _ => r.clone(),
    });
    let name = match &step.namespace {
        Some(ns) => format!("{ns}/{}", step.name),
        None => step.name.clone(),
    };
    match rule {
        Some(r) => format!("{} {name} {r}", step.kind),
        None => format!("{} {name}", step.kind),
    }
}
