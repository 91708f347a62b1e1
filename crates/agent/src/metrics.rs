//! Prometheus metrics of the node's table: per-rule deny counters (the kernel's own `counter`
//! on each deny rule), and whether the node is in audit mode or break-glass. Text exposition,
//! for `bulkhead agent metrics` and node_exporter's textfile collector.

use bulkhead_nft::counters::TableState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DenyLabels {
    direction: String,
    namespace: String,
    pod: String,
    rule: String,
    /// `true`: logged and let through (audit mode, or the namespace is under audit).
    audit: String,
}

/// The exposition text for `state` (`None`: no Bulkhead table on the node).
/// `table` names the counters by their rule ids (the names in the kernel's comments may be
/// cut); where it has no entry, the comment's names are used.
pub fn render(state: Option<&TableState>, table: &crate::rules::RuleTable) -> String {
    let mut registry = Registry::with_prefix("bulkhead");
    let installed = Gauge::<i64>::default();
    let audit = Gauge::<i64>::default();
    let break_glass = Gauge::<i64>::default();
    let packets = Family::<DenyLabels, Counter>::default();
    let bytes = Family::<DenyLabels, Counter>::default();
    registry.register(
        "table_installed",
        "1 when Bulkhead's nftables table is on this node",
        installed.clone(),
    );
    registry.register(
        "audit_mode",
        "1 when denies are logged and let through instead of dropped",
        audit.clone(),
    );
    registry.register(
        "break_glass",
        "1 when break-glass is on: nothing is enforced",
        break_glass.clone(),
    );
    registry.register(
        "denied_packets",
        "Packets denied by a policy rule (in audit mode: that would have been denied)",
        packets.clone(),
    );
    registry.register(
        "denied_bytes",
        "Bytes denied by a policy rule (in audit mode: that would have been denied)",
        bytes.clone(),
    );
    if let Some(state) = state {
        installed.set(1);
        audit.set(i64::from(state.audit));
        break_glass.set(i64::from(state.break_glass));
        for d in &state.denies {
            let named = d.id.as_deref().and_then(|id| table.get(id));
            let (direction, full_pod, rule) = match named {
                Some(identity) => (&identity.direction, &identity.pod, &identity.rule),
                None => (&d.direction, &d.pod, &d.rule),
            };
            let (namespace, pod) = full_pod.split_once('/').unwrap_or(("", full_pod));
            let labels = DenyLabels {
                direction: direction.clone(),
                namespace: namespace.to_string(),
                pod: pod.to_string(),
                rule: rule.clone(),
                audit: (state.audit || d.audit).to_string(),
            };
            // The same rule can appear in several tier chains of one pod: sum them.
            packets.get_or_create(&labels).inc_by(d.packets);
            bytes.get_or_create(&labels).inc_by(d.bytes);
        }
    }
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_nft::counters::DenyCounter;

    #[test]
    fn deny_counters_become_labelled_counters() {
        let state = TableState {
            audit: true,
            break_glass: false,
            denies: vec![DenyCounter {
                id: None,
                direction: "ingress".into(),
                pod: "x/server".into(),
                rule: "end of tier default".into(),
                audit: false,
                packets: 7,
                bytes: 420,
            }],
        };
        let text = render(Some(&state), &crate::rules::RuleTable::default());
        assert!(text.contains("bulkhead_audit_mode 1"), "{text}");
        assert!(text.contains("bulkhead_break_glass 0"), "{text}");
        assert!(
            text.contains(
                "bulkhead_denied_packets_total{direction=\"ingress\",namespace=\"x\",pod=\"server\",rule=\"end of tier default\",audit=\"true\"} 7"
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE bulkhead_denied_bytes counter"),
            "{text}"
        );
    }

    #[test]
    fn no_table_says_so() {
        let text = render(None, &crate::rules::RuleTable::default());
        assert!(text.contains("bulkhead_table_installed 0"), "{text}");
        assert!(!text.contains("bulkhead_denied_packets_total{"), "{text}");
    }
}
