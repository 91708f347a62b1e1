//! The connectivity two snapshots differ by, at workload level: what a change adds and
//! removes, each with the policies responsible (from the explanation of one of its flows).

use bulkhead_engine::{Aggregation, Connection, ConnectivityOptions, Endpoint, Engine, Flow};
use bulkhead_model::{PortSet, Protocol};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub from: String,
    pub to: String,
    pub protocol: Protocol,
    pub ports: PortSet,
    /// Policies whose rules decide a representative flow of the change, before and after.
    pub policies: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct DiffReport {
    pub added: Vec<Change>,
    pub removed: Vec<Change>,
}

type Key = (String, String, Protocol);

fn table(engine: &Engine<'_>) -> BTreeMap<Key, PortSet> {
    engine
        .connectivity(&ConnectivityOptions {
            aggregation: Aggregation::Workload,
            ..ConnectivityOptions::default()
        })
        .into_iter()
        .map(|c: Connection| ((c.from, c.to, c.protocol), c.ports))
        .collect()
}

/// A pod of workload `ns/kind/name` in this snapshot.
fn pod_of(engine: &Engine<'_>, workload: &str) -> Option<usize> {
    engine
        .pods_for(workload)
        .ok()
        .and_then(|p| p.first().copied())
}

fn responsible(
    engine: &Engine<'_>,
    from: &str,
    to: &str,
    protocol: Protocol,
    port: u16,
) -> Vec<String> {
    let (Some(s), Some(d)) = (pod_of(engine, from), pod_of(engine, to)) else {
        return Vec::new();
    };
    let v = engine.evaluate(&Flow {
        src: Endpoint::Pod(s),
        dst: Endpoint::Pod(d),
        protocol,
        port: Some(port),
        icmp: None,
    });
    v.egress
        .decided_by
        .iter()
        .chain(&v.ingress.decided_by)
        .map(|r| {
            let name = match &r.namespace {
                Some(ns) => format!("{} {ns}/{}", r.kind, r.name),
                None => format!("{} {}", r.kind, r.name),
            };
            match &r.rule {
                Some(rule) => format!("{name} {rule}"),
                None => name,
            }
        })
        .collect()
}

pub fn diff(base: &Engine<'_>, head: &Engine<'_>) -> DiffReport {
    let (before, after) = (table(base), table(head));
    let mut report = DiffReport::default();
    let keys: std::collections::BTreeSet<&Key> = before.keys().chain(after.keys()).collect();
    for key in keys {
        let empty = PortSet::empty();
        let (b, a) = (
            before.get(key).unwrap_or(&empty),
            after.get(key).unwrap_or(&empty),
        );
        let (from, to, protocol) = key;
        for (ports, into) in [
            (a.difference(b), &mut report.added),
            (b.difference(a), &mut report.removed),
        ] {
            let Some(first) = ports.ranges().first().map(|r| r.start()) else {
                continue;
            };
            let mut policies = responsible(head, from, to, *protocol, first);
            policies.extend(responsible(base, from, to, *protocol, first));
            policies.sort();
            policies.dedup();
            into.push(Change {
                from: from.clone(),
                to: to.clone(),
                protocol: *protocol,
                ports,
                policies,
            });
        }
    }
    report
}

/// Markdown fit for a pull-request comment.
pub fn markdown(report: &DiffReport) -> String {
    let mut out = String::from("### Bulkhead: connectivity changes\n\n");
    if report.added.is_empty() && report.removed.is_empty() {
        out.push_str("No change in who can reach whom.\n");
        return out;
    }
    for (title, changes) in [
        ("Added access", &report.added),
        ("Removed access", &report.removed),
    ] {
        if changes.is_empty() {
            continue;
        }
        out.push_str(&format!("**{title}** ({})\n\n| from | to | protocol | ports | decided by |\n|---|---|---|---|---|\n", changes.len()));
        for c in changes {
            out.push_str(&format!(
                "| `{}` | `{}` | {} | {} | {} |\n",
                c.from,
                c.to,
                c.protocol,
                c.ports,
                c.policies.join("<br>")
            ));
        }
        out.push('\n');
    }
    out
}

/// One policy that differs between the snapshots, with the connectivity changes it decides.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PolicyDifference {
    /// `NetworkPolicy shop/web`, `GlobalNetworkPolicy deny-all`.
    pub policy: String,
    /// Connectivity changes whose deciding rules include this policy.
    pub connectivity: Vec<String>,
}

/// Policies by identity: those only in the base, only in the head, and those in both whose
/// meaning differs (where they were read from does not count). Comparing the cluster (base)
/// with Git (head) this is drift: policies the cluster has and Git does not, missing ones,
/// changed ones.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct PolicyChanges {
    pub only_in_base: Vec<PolicyDifference>,
    pub only_in_head: Vec<PolicyDifference>,
    pub changed: Vec<PolicyDifference>,
}

impl PolicyChanges {
    pub fn is_empty(&self) -> bool {
        self.only_in_base.is_empty() && self.only_in_head.is_empty() && self.changed.is_empty()
    }
}

fn policy_name(p: &bulkhead_model::Policy) -> String {
    let staged = if p.staged.is_some() { " (staged)" } else { "" };
    format!("{} {}{staged}", p.kind.as_str(), p.key())
}

/// The policy without where it and its rules were read from.
fn meaning(p: &bulkhead_model::Policy) -> bulkhead_model::Policy {
    let mut p = p.clone();
    p.source = None;
    for rule in p.ingress.iter_mut().chain(p.egress.iter_mut()) {
        rule.location = None;
        if let bulkhead_model::RuleMatcher::Kubernetes(k) = &mut rule.matcher {
            k.location = None;
        }
    }
    p
}

/// The policies two clusters differ by; `report` (their connectivity diff) gives each its
/// connectivity changes.
pub fn policy_changes(
    base: &bulkhead_model::Cluster,
    head: &bulkhead_model::Cluster,
    report: &DiffReport,
) -> PolicyChanges {
    let index = |c: &bulkhead_model::Cluster| -> BTreeMap<String, bulkhead_model::Policy> {
        c.policies
            .iter()
            .map(|p| (policy_name(p), meaning(p)))
            .collect()
    };
    let (before, after) = (index(base), index(head));
    let decided = |name: &str| -> Vec<String> {
        let mut lines = Vec::new();
        for (sign, changes) in [("+", &report.added), ("-", &report.removed)] {
            for c in changes.iter() {
                let mentions = c.policies.iter().any(|p| {
                    p == name
                        || p.strip_prefix(name)
                            .is_some_and(|rest| rest.starts_with(' '))
                });
                if mentions {
                    lines.push(format!(
                        "{sign} {} -> {} {} {}",
                        c.from, c.to, c.protocol, c.ports
                    ));
                }
            }
        }
        lines
    };
    let difference = |name: &String| PolicyDifference {
        policy: name.clone(),
        connectivity: decided(name),
    };
    let mut changes = PolicyChanges::default();
    for (name, policy) in &before {
        match after.get(name) {
            None => changes.only_in_base.push(difference(name)),
            Some(other) if other != policy => changes.changed.push(difference(name)),
            Some(_) => {}
        }
    }
    for name in after.keys().filter(|n| !before.contains_key(*n)) {
        changes.only_in_head.push(difference(name));
    }
    changes
}

/// Markdown for [`PolicyChanges`], titled for drift when the base is the live cluster.
pub fn policy_markdown(changes: &PolicyChanges, base: &str, head: &str) -> String {
    let mut out = String::from("### Bulkhead: policy changes\n\n");
    if changes.is_empty() {
        out.push_str(&format!("{base} and {head} hold the same policies.\n\n"));
        return out;
    }
    for (title, list) in [
        (format!("Only in {base}"), &changes.only_in_base),
        (format!("Only in {head}"), &changes.only_in_head),
        ("Changed".to_string(), &changes.changed),
    ] {
        if list.is_empty() {
            continue;
        }
        out.push_str(&format!("**{title}** ({})\n\n", list.len()));
        for d in list {
            out.push_str(&format!("- `{}`\n", d.policy));
            for line in &d.connectivity {
                out.push_str(&format!("  - `{line}`\n"));
            }
        }
        out.push('\n');
    }
    out
}
