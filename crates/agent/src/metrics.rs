//! Prometheus metrics of the node's table: per-rule deny counters (the kernel's own `counter`
//! on each deny rule), and whether the node is in audit mode or break-glass. Text exposition,
//! for `bulkhead agent metrics` and node_exporter's textfile collector.

use bulkhead_nft::counters::TableState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// What the agent's loop did, for the metrics a running agent writes (`--metrics-file`): the
/// agent updates these as it goes; [`render`] registers them beside the table's counters.
#[derive(Debug, Clone)]
pub struct LoopMetrics {
    pub last_applied_revision: Gauge,
    /// Event (a file seen complete) to committed in the kernel, in seconds.
    pub commit_seconds: Histogram,
    pub deltas: Counter,
    pub delta_objects: Counter,
    pub full_replaces: Counter,
    /// Commits made in place (pods of other nodes: set elements only, no compile).
    pub in_place: Counter,
    /// Files kept at their last good version (or loads refused across files).
    pub rejected: Counter,
    pub tightened_connections: Counter,
    /// The table restored after it was removed behind the agent's back.
    pub repairs: Counter,
    /// Commits that failed: the kernel refused the ruleset, or the state could not be kept.
    pub commit_failures: Counter,
    /// 1 while the cluster-wide break-glass (the Kubernetes ConfigMap) is on.
    pub cluster_break_glass: Gauge,
    /// Namespaces without a default deny, by direction (`bulkhead coverage`'s decision).
    pub without_default_deny: Family<DirectionLabel, Gauge>,
    /// Namespaces an automated rollback moved to audit (1 while it lasts).
    pub rolled_back: Family<NamespaceLabel, Gauge>,
    pub rollbacks: Counter,
    /// Denied connections (not packets), by namespace, direction and audit: see
    /// [`crate::connections`].
    pub denied_connections: crate::connections::ConnectionCounts,
    pub peak_memory_bytes: Gauge,
    /// 1 while the source (the Kubernetes API) can be reached.
    pub source_up: Gauge,
    pub source_failures: Counter,
    pub source_relists: Counter,
}

impl Default for LoopMetrics {
    fn default() -> Self {
        Self {
            last_applied_revision: Gauge::default(),
            commit_seconds: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            deltas: Counter::default(),
            delta_objects: Counter::default(),
            full_replaces: Counter::default(),
            in_place: Counter::default(),
            rejected: Counter::default(),
            tightened_connections: Counter::default(),
            repairs: Counter::default(),
            commit_failures: Counter::default(),
            cluster_break_glass: Gauge::default(),
            without_default_deny: Family::default(),
            rolled_back: Family::default(),
            rollbacks: Counter::default(),
            denied_connections: Default::default(),
            peak_memory_bytes: Gauge::default(),
            source_up: Gauge::default(),
            source_failures: Counter::default(),
            source_relists: Counter::default(),
        }
    }
}

/// `direction="ingress"` or `"egress"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    pub direction: String,
}

/// `namespace="..."`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabel {
    pub namespace: String,
}

impl LoopMetrics {
    /// 1 while `namespace` is rolled back; 0 once it is enforced again (a series that
    /// vanished would hide the end).
    pub fn mark_rolled_back(&self, namespace: &str, rolled_back: bool) {
        self.rolled_back
            .get_or_create(&NamespaceLabel {
                namespace: namespace.to_string(),
            })
            .set(i64::from(rolled_back));
    }

    pub fn set_without_default_deny(&self, ingress: usize, egress: usize) {
        for (direction, count) in [("ingress", ingress), ("egress", egress)] {
            self.without_default_deny
                .get_or_create(&DirectionLabel {
                    direction: direction.to_string(),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// The process's peak resident memory (`VmHWM`), read from /proc.
    pub fn sample_memory(&self) {
        let peak = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
            });
        if let Some(kb) = peak {
            self.peak_memory_bytes.set(kb * 1024);
        }
    }

    /// Follows the source's health: the counters move by what changed since the last look.
    pub fn record_source(&self, health: &crate::source::SourceHealth) {
        self.source_up.set(i64::from(health.connected));
        let failures = health.failures.saturating_sub(self.source_failures.get());
        self.source_failures.inc_by(failures);
        let relists = health.relists.saturating_sub(self.source_relists.get());
        self.source_relists.inc_by(relists);
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "agent_last_applied_revision",
            "The index revision the kernel holds",
            self.last_applied_revision.clone(),
        );
        registry.register(
            "agent_commit_seconds",
            "From a complete change seen by the source to its commit in the kernel",
            self.commit_seconds.clone(),
        );
        registry.register(
            "agent_deltas",
            "Changes applied as a delta (only the objects that changed)",
            self.deltas.clone(),
        );
        registry.register(
            "agent_delta_objects",
            "Sets, chains and dispatch entries changed by deltas",
            self.delta_objects.clone(),
        );
        registry.register(
            "agent_full_replaces",
            "Changes applied by replacing the whole table (start-up, a mode change)",
            self.full_replaces.clone(),
        );
        registry.register(
            "agent_in_place_updates",
            "Changes made in place: pods of other nodes changed only set elements, written over netlink without compiling the node",
            self.in_place.clone(),
        );
        registry.register(
            "agent_rejected_inputs",
            "Manifest files kept at their last good version because the new one did not load",
            self.rejected.clone(),
        );
        registry.register(
            "agent_tightened_connections",
            "Established connections cut because a change no longer allows them",
            self.tightened_connections.clone(),
        );
        registry.register(
            "agent_repairs",
            "Times the table was restored after it was removed behind the agent's back",
            self.repairs.clone(),
        );
        registry.register(
            "agent_commit_failures",
            "Changes the agent could not commit (the kernel refused the ruleset, the state directory failed); the last good ruleset stays",
            self.commit_failures.clone(),
        );
        registry.register(
            "agent_cluster_break_glass",
            "1 while the cluster-wide break-glass ConfigMap opens this node (all traffic, or named namespaces in audit mode)",
            self.cluster_break_glass.clone(),
        );
        registry.register(
            "agent_rolled_back",
            "1 while an automated rollback keeps the namespace in audit on this node (connections a policy change newly denied crossed the threshold)",
            self.rolled_back.clone(),
        );
        registry.register(
            "agent_rollbacks",
            "Namespaces moved to audit by an automated rollback",
            self.rollbacks.clone(),
        );
        registry.register(
            "namespaces_without_default_deny",
            "Namespaces where a new pod would be reachable (ingress) or could reach out (egress) with no policy allowing it, as bulkhead coverage decides; counted after policy and namespace changes",
            self.without_default_deny.clone(),
        );
        registry.register(
            "denied_connections",
            "Connections denied (audit=true: would be denied, let through), each counted once however often its packets are sent again; by the namespace and direction of the pod whose policy denied it",
            self.denied_connections.clone(),
        );
        registry.register(
            "agent_source_up",
            "1 while the agent's source (the Kubernetes API, or the directory) can be read; while 0 the last good ruleset stays in force",
            self.source_up.clone(),
        );
        registry.register(
            "agent_source_failures",
            "Errors reading the source: failed connects and broken watches",
            self.source_failures.clone(),
        );
        registry.register(
            "agent_source_relists",
            "Complete lists of a kind received: the first ones, then relists after 410 Gone or reconnects",
            self.source_relists.clone(),
        );
        registry.register(
            "agent_peak_memory_bytes",
            "Peak resident memory of the agent",
            self.peak_memory_bytes.clone(),
        );
    }
}

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
/// `agent`: the running agent's own metrics, when it is the one writing.
pub fn render(
    state: Option<&TableState>,
    table: &crate::rules::RuleTable,
    agent: Option<&LoopMetrics>,
) -> String {
    let mut registry = Registry::with_prefix("bulkhead");
    if let Some(agent) = agent {
        agent.register(&mut registry);
    }
    let installed = Gauge::<i64>::default();
    let audit = Gauge::<i64>::default();
    let break_glass = Gauge::<i64>::default();
    let unknown = Counter::<u64>::default();
    registry.register(
        "unknown_interface_dropped_packets",
        "Packets dropped because their pod interface has no rules yet (fail closed)",
        unknown.clone(),
    );
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
        unknown.inc_by(state.unknown_interface_drops);
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
            unknown_interface_drops: 3,
        };
        let text = render(Some(&state), &crate::rules::RuleTable::default(), None);
        assert!(text.contains("bulkhead_audit_mode 1"), "{text}");
        assert!(text.contains("bulkhead_break_glass 0"), "{text}");
        assert!(
            text.contains("bulkhead_unknown_interface_dropped_packets_total 3"),
            "{text}"
        );
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
        let text = render(None, &crate::rules::RuleTable::default(), None);
        assert!(text.contains("bulkhead_table_installed 0"), "{text}");
        assert!(!text.contains("bulkhead_denied_packets_total{"), "{text}");
    }
}

#[cfg(test)]
mod loop_tests {
    use super::*;

    #[test]
    fn the_loop_metrics_are_exposed_with_their_names() {
        let agent = LoopMetrics::default();
        agent.last_applied_revision.set(7);
        agent.commit_seconds.observe(0.042);
        agent.deltas.inc();
        agent.delta_objects.inc_by(11);
        agent.sample_memory();
        let text = render(None, &crate::rules::RuleTable::default(), Some(&agent));
        for needle in [
            "bulkhead_agent_last_applied_revision 7",
            "bulkhead_agent_commit_seconds_bucket{le=\"0.05\"} 1",
            "bulkhead_agent_deltas_total 1",
            "bulkhead_agent_delta_objects_total 11",
            "bulkhead_agent_full_replaces_total 0",
            "bulkhead_agent_rejected_inputs_total 0",
            "bulkhead_agent_tightened_connections_total 0",
        ] {
            assert!(text.contains(needle), "{needle} in:\n{text}");
        }
        assert!(
            !text.contains("bulkhead_agent_peak_memory_bytes 0\n"),
            "the peak memory is read from /proc: {text}"
        );
    }
}
