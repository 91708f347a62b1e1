//! BH102 selector-matches-nothing.
//!
//! ## What it flags
//! A `namespaceSelector` in a rule that matches no namespace of the snapshot, or a
//! `podSelector` that matches no pod in the namespaces it looks in; for Calico rules, a
//! `selector` (pods and network sets) or `namespaceSelector` that matches nothing; for
//! AdminNetworkPolicy, BaselineAdminNetworkPolicy and ClusterNetworkPolicy rules, peers that
//! all match nothing (a `networks` or `domainNames` peer always can). The finding quotes the
//! selector and, when an existing label is a likely typo of it, the label.
//!
//! ## Why it matters
//! The rule allows nothing, silently. The classic case is the playbook's
//! `namespaceSelector: {matchLabels: {name: kube-system}}`: real clusters label namespaces with
//! `kubernetes.io/metadata.name`, not `name`, so DNS stays blocked.
//!
//! ## Example
//! `to: [{namespaceSelector: {matchLabels: {name: kube-system}}}]`
//!
//! ## Fix
//! Select namespaces by `kubernetes.io/metadata.name`, or add the label the selector expects.
//! Only judged when the snapshot defines namespaces (or pods) to match against.

use crate::lint::{LintContext, RuleInfo, resource};
use bulkhead_model::{
    ClusterPeer, Diagnostic, Direction, NetworkPolicyPeer, RuleMatcher, Severity,
};
use rayon::prelude::*;

pub const RULE: RuleInfo = RuleInfo {
    code: "BH102",
    name: "selector-matches-nothing",
    severity: Severity::Warning,
    summary: "a rule's namespaceSelector or podSelector matches nothing in the snapshot",
    doc: include_str!("selector_matches_nothing.rs"),
};

pub fn check(ctx: &LintContext<'_>) -> Vec<Diagnostic> {
    let cluster = ctx.cluster;
    let namespaces_known = cluster.namespaces.iter().any(|n| n.defined);
    // Kubernetes NetworkPolicies a part at a time, in parallel and in order: at 300,000
    // policies this rule ran alone on one core for a third of a second after the others had
    // finished. Each part keeps its own memo of podSelectors (parts seldom share them:
    // policies come by namespace); the namespaceSelectors' scopes are shared, since every
    // part asks the same few and each is a walk over every namespace.
    let scopes = namespace_scopes(ctx);
    let part = crate::lint::policy_part_len(cluster);
    let mut out: Vec<Diagnostic> = cluster
        .policies
        .par_chunks(part)
        .flat_map_iter(|policies| kubernetes_findings(ctx, &scopes, policies, namespaces_known))
        .collect();
    // Calico, AdminNetworkPolicy, BaselineAdminNetworkPolicy and ClusterNetworkPolicy rules.
    if ctx.has_pods() && namespaces_known {
        // Kubernetes rules are judged above (tiered_peer_matching_nothing has nothing to say
        // about them): asking each of 300,000 policies' rules was one core's tail.
        for r in crate::lint::policy_rules(cluster).filter(|r| {
            !r.policy.host_endpoints_only && !matches!(r.rule.matcher, RuleMatcher::Kubernetes(_))
        }) {
            let Some(dead) =
                tiered_peer_matching_nothing(&ctx.engine, r.policy, r.direction, r.index)
            else {
                continue;
            };
            let message = format!(
                "{} {}[{}]: {} {} matches nothing in the snapshot{}",
                r.resource(),
                r.direction,
                r.index,
                dead.what,
                dead.selector,
                dead.suggestion
                    .as_ref()
                    .map(|s| format!("; did you mean {s}?"))
                    .unwrap_or_default()
            );
            let help = match &dead.suggestion {
                Some(s) => format!("fix the selector: {s}"),
                None => "check the labels of the endpoints you mean (kubectl get pods,namespaces --show-labels)".to_string(),
            };
            out.push(ctx.finding(&RULE, Some(r.resource()), r.source(), message, &help));
        }
    }
    out
}

/// The namespaces each namespaceSelector of a Kubernetes peer selects, once per distinct
/// selector: thousands of policies repeat the same few (a namespace per team, all asking for
/// `purpose: monitoring`). With it, whether any of them has pods: a selector may pick
/// thousands of namespaces.
type NamespaceScopes<'c> = std::collections::HashMap<
    &'c bulkhead_model::LabelSelector,
    (Vec<&'c str>, bool),
    foldhash::fast::RandomState,
>;

fn namespace_scopes<'c>(ctx: &LintContext<'c>) -> NamespaceScopes<'c> {
    let selectors = ctx
        .cluster
        .policies
        .par_iter()
        .filter(|p| p.is_kubernetes() && p.staged.is_none())
        .fold(
            std::collections::HashSet::<_, foldhash::fast::RandomState>::default,
            |mut selectors, policy| {
                selectors.extend(policy.kubernetes_namespace_selectors());
                selectors
            },
        )
        .reduce(Default::default, |mut a, b| {
            a.extend(b);
            a
        });
    selectors
        .into_par_iter()
        .map(|s| (s, namespace_scope(ctx, s)))
        .collect()
}

fn namespace_scope<'c>(
    ctx: &LintContext<'c>,
    selector: &bulkhead_model::LabelSelector,
) -> (Vec<&'c str>, bool) {
    let scope: Vec<&str> = ctx
        .cluster
        .namespaces
        .iter()
        .filter(|n| selector.matches(&n.labels))
        .map(|n| n.name.as_str())
        .collect();
    let has_pods = scope.iter().any(|ns| ctx.namespace_has_pods(ns));
    (scope, has_pods)
}

/// BH102's findings on the Kubernetes NetworkPolicies among `policies`.
fn kubernetes_findings<'c>(
    ctx: &LintContext<'c>,
    scopes: &NamespaceScopes<'c>,
    policies: &'c [bulkhead_model::Policy],
    namespaces_known: bool,
) -> Vec<Diagnostic> {
    let cluster = ctx.cluster;
    // Per podSelector and scope: None when it matches a pod, else the nearest label. Policies
    // repeat the same peers (every workload's `tier: web`), and the nearest label is a search
    // of the scope's labels: 40,000 findings at Antrea size asked it 40,000 times.
    let mut verdicts: std::collections::HashMap<
        (&bulkhead_model::LabelSelector, Scope<'_>),
        Option<Suggestion>,
        foldhash::fast::RandomState,
    > = std::collections::HashMap::default();
    let mut out = Vec::new();
    for policy in policies
        .iter()
        .filter(|p| p.is_kubernetes() && p.staged.is_none())
    {
        let namespace = policy.namespace.as_deref().unwrap_or_default();
        let own_has_pods = ctx.namespace_has_pods(namespace);
        // Named only for a finding: formatting it per policy was a tenth of a 300,000-policy
        // lint that finds nothing.
        let res = || resource("NetworkPolicy", Some(namespace), &policy.name);
        for direction in [Direction::Ingress, Direction::Egress] {
            let field = if direction == Direction::Ingress {
                "from"
            } else {
                "to"
            };
            for (i, rule) in policy.indexed_rules(direction) {
                let RuleMatcher::Kubernetes(rule) = &rule.matcher else {
                    continue;
                };
                for (j, peer) in rule.peers.iter().flatten().enumerate() {
                    let NetworkPolicyPeer::Pods {
                        namespace_selector,
                        pod_selector,
                    } = peer
                    else {
                        continue;
                    };
                    let scope_key = match namespace_selector {
                        None => Scope::Own(namespace),
                        Some(s) => Scope::Selected(s),
                    };
                    // Every selector asked here was gathered by `namespace_scopes`; one that
                    // was not would be a bug there, and is still judged, at its own cost.
                    let computed;
                    let (scope, has_pods): (&[&str], bool) = match namespace_selector {
                        None => (std::slice::from_ref(&namespace), own_has_pods),
                        Some(s) => match scopes.get(s) {
                            Some((scope, has_pods)) => (scope, *has_pods),
                            None => {
                                computed = namespace_scope(ctx, s);
                                (&computed.0, computed.1)
                            }
                        },
                    };
                    let place = || format!("{direction}[{i}].{field}[{j}]");
                    if let Some(s) = namespace_selector
                        && scope.is_empty()
                        && namespaces_known
                    {
                        {
                            let labels: Vec<String> = cluster
                                .namespaces
                                .iter()
                                .filter(|n| n.defined)
                                .take(3)
                                .map(|n| {
                                    // Printed as a map: `{"k": "v"}`.
                                    let labels: std::collections::BTreeMap<_, _> =
                                        n.labels.iter().collect();
                                    format!("{}: {labels:?}", n.name)
                                })
                                .collect();
                            let typo = crate::nearest::nearest(
                                &crate::nearest::label_wants(s),
                                cluster.namespaces.iter().map(|n| &n.labels),
                            )
                            .filter(|(k, _)| s.requirements().iter().any(|r| &r.key == k));
                            let (message, help) = match typo {
                                Some((k, v)) => (
                                    format!("{} {}: namespaceSelector {s} matches no namespace; did you mean {k}={v}?", res(), place()),
                                    format!("fix the selector: {k}={v}"),
                                ),
                                None => (
                                    format!("{} {}: namespaceSelector {s} matches no namespace (namespaces carry e.g. {})", res(), place(), labels.join("; ")),
                                    "select namespaces by kubernetes.io/metadata.name=<name>, which the API server sets on every namespace".to_string(),
                                ),
                            };
                            out.push(ctx.finding(
                                &RULE,
                                Some(res()),
                                rule.location.as_ref().or(policy.source.as_ref()),
                                message,
                                &help,
                            ));
                            continue;
                        }
                    }
                    // Without pods in its scope a podSelector is not judged; asked first, the
                    // memo is not hashed for the peers of namespaces that have none.
                    if let Some(s) = pod_selector
                        && has_pods
                    {
                        let verdict = verdicts.entry((s, scope_key)).or_insert_with(|| {
                            let matches_nothing = !scope
                                .iter()
                                .flat_map(|ns| ctx.endpoints_in(ns))
                                .any(|p| s.matches(&p.labels));
                            matches_nothing.then(|| {
                                crate::nearest::nearest(
                                    &crate::nearest::label_wants(s),
                                    ctx.pods_in(scope).map(|p| &p.labels),
                                )
                            })
                        });
                        if let Some(typo) = verdict {
                            let suggestion = typo
                                .as_ref()
                                .map(|(k, v)| format!("; did you mean {k}={v}?"))
                                .unwrap_or_default();
                            let help = match &typo {
                                Some((k, v)) => format!("fix the selector: {k}={v}"),
                                None => "check the labels of the pods you mean (kubectl get pods --show-labels)".to_string(),
                            };
                            out.push(ctx.finding(
                                &RULE,
                                Some(res()),
                                rule.location.as_ref().or(policy.source.as_ref()),
                                format!(
                                    "{} {}: podSelector {s} matches no pod in {}{suggestion}",
                                    res(),
                                    place(),
                                    scope.join(", ")
                                ),
                                &help,
                            ));
                        }
                    }
                }
            }
        }
    }
    out
}

/// The nearest existing label `(key, value)` to a selector that matches nothing, if any is
/// close enough to be a typo.
type Suggestion = Option<(String, String)>;

/// Where a Kubernetes peer's podSelector looks: the policy's own namespace, or the namespaces
/// a namespaceSelector picks.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Scope<'c> {
    Own(&'c str),
    Selected(&'c bulkhead_model::LabelSelector),
}

/// A peer selector of a tiered rule that matches nothing in the snapshot.
pub(crate) struct DeadPeer {
    /// `destination selector`, `source namespaceSelector`, `peer`.
    pub what: &'static str,
    /// Quoted as written: `` `app == 'dbb'` ``.
    pub selector: String,
    /// The nearest existing label, quoted in the selector's syntax.
    pub suggestion: Option<String>,
}

/// The peer selector of a Calico/ANP/BANP/CNP rule that matches no endpoint (a Calico rule:
/// its selector or namespaceSelector; an ANP rule: every peer), with the nearest label.
pub(crate) fn tiered_peer_matching_nothing(
    engine: &bulkhead_engine::Engine<'_>,
    policy: &bulkhead_model::Policy,
    direction: Direction,
    rule_index: usize,
) -> Option<DeadPeer> {
    use crate::nearest::{calico_wants, label_wants, nearest};
    let cluster = engine.cluster();
    let rule = policy.rules(direction).get(rule_index)?;
    let endpoints = || {
        cluster
            .pods
            .iter()
            .filter(|p| p.is_endpoint() && !p.host_network)
            .map(|p| &p.labels)
            .chain(cluster.network_sets.iter().map(|n| &n.labels))
    };
    let namespaces = || cluster.namespaces.iter().map(|n| &n.labels);
    match &rule.matcher {
        RuleMatcher::Calico(r) => {
            let (entity, side) = match direction {
                Direction::Egress => (&r.destination, "destination"),
                Direction::Ingress => (&r.source, "source"),
            };
            // What Calico selectors see: the projectcalico.org/* labels too (CAL-SEL-7).
            let namespace_labels: Vec<&bulkhead_model::Labels> = engine.calico_namespace_labels();
            let endpoint_labels: Vec<&bulkhead_model::Labels> = engine
                .pod_endpoints()
                .into_iter()
                .map(|i| engine.calico_pod_labels(i))
                .chain(engine.calico_network_set_labels())
                .collect();
            let dead = |what: &'static str,
                        s: &bulkhead_model::CalicoSelector,
                        pool: &[&bulkhead_model::Labels]| {
                (!pool.iter().any(|l| s.matches(l))).then(|| DeadPeer {
                    what,
                    selector: format!("`{s}`"),
                    suggestion: nearest(&calico_wants(s), pool.iter().copied())
                        .map(|(k, v)| format!("`{k} == '{v}'`")),
                })
            };
            let (ns_what, sel_what) = if side == "source" {
                ("source namespaceSelector", "source selector")
            } else {
                ("destination namespaceSelector", "destination selector")
            };
            entity
                .namespace_selector
                .as_ref()
                .and_then(|s| dead(ns_what, s, &namespace_labels))
                .or_else(|| {
                    entity
                        .selector
                        .as_ref()
                        .and_then(|s| dead(sel_what, s, &endpoint_labels))
                })
        }
        // Kubernetes peers are judged above, with their own field names.
        RuleMatcher::Kubernetes(_) => None,
        RuleMatcher::Cluster(r) => {
            // Every peer must match nothing for the rule to match nothing; name the first.
            let mut first = None;
            for peer in &r.peers {
                let (matches, suggestion) = match peer {
                    ClusterPeer::Namespaces(s) => (
                        namespaces().any(|l| s.matches(l)),
                        nearest(&label_wants(s), namespaces()),
                    ),
                    ClusterPeer::Pods {
                        namespace_selector,
                        pod_selector,
                    } => {
                        let any_namespace = namespaces().any(|l| namespace_selector.matches(l));
                        let any_pod = cluster.pods.iter().any(|p| {
                            p.is_endpoint()
                                && !p.host_network
                                && pod_selector.matches(&p.labels)
                                && cluster
                                    .namespace(&p.namespace)
                                    .is_some_and(|n| namespace_selector.matches(&n.labels))
                        });
                        let suggestion = if any_namespace {
                            nearest(&label_wants(pod_selector), endpoints())
                        } else {
                            nearest(&label_wants(namespace_selector), namespaces())
                        };
                        (any_pod, suggestion)
                    }
                    ClusterPeer::Nodes(s) => (
                        cluster.nodes.is_empty()
                            || cluster.nodes.iter().any(|n| s.matches(&n.labels)),
                        None,
                    ),
                    ClusterPeer::Networks(_) | ClusterPeer::DomainNames(_) => (true, None),
                };
                if matches {
                    return None;
                }
                first.get_or_insert((peer.to_string(), suggestion));
            }
            first.map(|(selector, suggestion)| DeadPeer {
                what: "peer",
                selector: format!("`{selector}`"),
                suggestion: suggestion.map(|(k, v)| format!("`{k}={v}`")),
            })
        }
    }
}
