//! BH103 policy-selects-nothing.
//!
//! ## What it flags
//! A policy whose `podSelector` (or Calico `selector`) selects no pod, in a namespace that
//! has pods in the snapshot: an orphaned policy. For Calico policies, and for the `subject` of
//! AdminNetworkPolicy, BaselineAdminNetworkPolicy and ClusterNetworkPolicy, the finding quotes
//! the selector that matches nothing (the namespace part when no namespace matches) and the
//! nearest existing label when it looks like a typo.
//!
//! ## Why it matters
//! It protects nothing. Usually the workload was renamed or relabelled and the policy was left
//! behind; the pods it was meant for now run unprotected.
//!
//! ## Example
//! `podSelector: {matchLabels: {app: web-v1}}` after the Deployment became `app: web`.
//!
//! ## Fix
//! Point the selector at the current labels, or delete the policy.

use crate::lint::{LintContext, RuleInfo, resource};
use crate::nearest::{calico_wants, label_wants, nearest};
use bulkhead_model::{Cluster, Diagnostic, Direction, Policy, Severity, Subject};

pub const RULE: RuleInfo = RuleInfo {
    code: "BH103",
    name: "policy-selects-nothing",
    severity: Severity::Warning,
    summary: "a policy selects no pod (orphaned)",
    doc: include_str!("policy_selects_nothing.rs"),
};

pub fn check(ctx: &LintContext<'_>) -> Vec<Diagnostic> {
    let cluster = ctx.cluster;
    let selected = |name: &str, ns: Option<&str>| {
        ctx.engine.pod_endpoints().into_iter().any(|i| {
            [Direction::Ingress, Direction::Egress]
                .into_iter()
                .any(|d| {
                    ctx.engine
                        .applying_policy_refs(i, d)
                        .any(|p| p.name == name && p.namespace.as_deref() == ns)
                })
        })
    };
    let mut out = Vec::new();
    if ctx.has_pods() {
        for policy in cluster
            .policies
            .iter()
            .filter(|p| p.staged.is_none() && !p.host_endpoints_only)
        {
            if policy
                .namespace
                .as_deref()
                .is_some_and(|ns| !ctx.namespace_has_pods(ns))
            {
                continue;
            }
            if let Subject::PodsInNamespace(pod_selector) = &policy.subject {
                let namespace = policy.namespace.as_deref().unwrap_or_default();
                let matches_a_pod = ctx
                    .endpoints_in(namespace)
                    .any(|p| pod_selector.matches(&p.labels));
                if !matches_a_pod {
                    let res = resource("NetworkPolicy", Some(namespace), &policy.name);
                    out.push(ctx.finding(
                        &RULE,
                        Some(res.clone()),
                        policy.source.as_ref(),
                        format!(
                            "{res}: podSelector {pod_selector} selects no pod in namespace {namespace}"
                        ),
                        "update the selector to the pods' current labels, or delete the policy",
                    ));
                }
                continue;
            }
            if !selected(&policy.name, policy.namespace.as_deref()) {
                let res = resource(
                    policy.kind.as_str(),
                    policy.namespace.as_deref(),
                    &policy.name,
                );
                let (what, suggestion) = subject_cause(cluster, policy);
                let message = match &suggestion {
                    Some(s) => format!("{res}: {what} selects no pod; did you mean {s}?"),
                    None => format!("{res}: {what} selects no pod"),
                };
                let help = match &suggestion {
                    Some(s) => format!("fix the selector: {s}"),
                    None => "update the selector or subject to the pods' current labels, or delete the policy".to_string(),
                };
                out.push(ctx.finding(
                    &RULE,
                    Some(res.clone()),
                    policy.source.as_ref(),
                    message,
                    &help,
                ));
            }
        }
    }
    out
}

/// The part of a tiered policy's subject that selects nothing, quoted, with the nearest
/// existing label when it looks like a typo.
fn subject_cause(cluster: &Cluster, policy: &Policy) -> (String, Option<String>) {
    let pods = || {
        cluster
            .pods
            .iter()
            .filter(|p| p.is_endpoint() && !p.host_network)
            .map(|p| &p.labels)
    };
    let namespaces = || cluster.namespaces.iter().map(|n| &n.labels);
    match &policy.subject {
        Subject::Calico {
            selector,
            namespace_selector,
            ..
        } => match namespace_selector {
            Some(ns) if !namespaces().any(|l| ns.matches(l)) => (
                format!("namespaceSelector `{ns}`"),
                nearest(&calico_wants(ns), namespaces()).map(|(k, v)| format!("`{k} == '{v}'`")),
            ),
            _ => (
                format!("selector `{selector}`"),
                nearest(&calico_wants(selector), pods()).map(|(k, v)| format!("`{k} == '{v}'`")),
            ),
        },
        Subject::PodsInNamespace(pod_selector) => (
            format!("podSelector `{pod_selector}`"),
            nearest(&label_wants(pod_selector), pods()).map(|(k, v)| format!("`{k}={v}`")),
        ),
        Subject::Namespaces(ns) => (
            format!("subject namespaces `{ns}`"),
            nearest(&label_wants(ns), namespaces()).map(|(k, v)| format!("`{k}={v}`")),
        ),
        Subject::Pods {
            namespace_selector,
            pod_selector,
        } => {
            if namespaces().any(|l| namespace_selector.matches(l)) {
                (
                    format!("subject pods `{pod_selector}` in namespaces `{namespace_selector}`"),
                    nearest(&label_wants(pod_selector), pods()).map(|(k, v)| format!("`{k}={v}`")),
                )
            } else {
                (
                    format!("subject namespaces `{namespace_selector}`"),
                    nearest(&label_wants(namespace_selector), namespaces())
                        .map(|(k, v)| format!("`{k}={v}`")),
                )
            }
        }
    }
}
