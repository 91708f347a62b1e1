//! The alerts and the dashboard shipped in `deploy/monitoring/` use only metrics the agent
//! exposes: a renamed metric would otherwise leave an alert that can never fire and a panel
//! that stays empty, with nothing to say so.

use bulkhead_agent::metrics::{LoopMetrics, render};
use bulkhead_nft::counters::{DenyCounter, TableState};
use std::collections::BTreeSet;

/// Every sample name the agent's `/metrics` can hold: the table's metrics with a deny counter
/// (so the labelled families appear) and the loop's.
fn exposed() -> BTreeSet<String> {
    let state = TableState {
        audit: false,
        break_glass: false,
        denies: vec![DenyCounter {
            id: None,
            direction: "ingress".into(),
            pod: "x/server".into(),
            rule: "end of tier default".into(),
            audit: false,
            packets: 1,
            bytes: 60,
        }],
        unknown_interface_drops: 0,
    };
    let agent = LoopMetrics::default();
    // A labelled family shows only once it has a series.
    agent
        .denied_connections
        .get_or_create(&bulkhead_agent::connections::ConnectionLabels {
            namespace: "x".into(),
            direction: "ingress".into(),
            audit: "false".into(),
        })
        .inc();
    agent.set_without_default_deny(1, 0);
    agent.mark_rolled_back("x", true);
    let text = render(
        Some(&state),
        &bulkhead_agent::rules::RuleTable::default(),
        Some(&agent),
    );
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(family), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            match kind {
                "counter" => {
                    names.insert(format!("{family}_total"));
                }
                "histogram" => {
                    for part in ["bucket", "sum", "count"] {
                        names.insert(format!("{family}_{part}"));
                    }
                }
                _ => {
                    names.insert(family.to_string());
                }
            }
        }
    }
    names
}

/// The `bulkhead_...` names a text mentions.
fn mentioned(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("bulkhead_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

fn monitoring(file: &str) -> String {
    let path = format!(
        "{}/../../deploy/monitoring/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn alerts_and_dashboard_use_only_exposed_metrics() {
    let exposed = exposed();
    assert!(
        exposed.contains("bulkhead_agent_commit_failures_total")
            && exposed.contains("bulkhead_denied_packets_total"),
        "{exposed:?}"
    );
    for file in ["prometheus-rule.yaml", "dashboard.yaml", "rules.test.yaml"] {
        let used = mentioned(&monitoring(file));
        assert!(used.len() >= 5, "{file} mentions {used:?}");
        let unknown: Vec<&String> = used.difference(&exposed).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics the agent does not expose: {unknown:?}"
        );
    }
}
