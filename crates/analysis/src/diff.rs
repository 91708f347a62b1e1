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
