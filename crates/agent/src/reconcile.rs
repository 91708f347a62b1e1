//! One reconcile: manifests -> snapshot -> engine -> ruleset -> one transaction. And the loop
//! that runs it whenever the manifest directory changes.

use crate::flowlog::DenyRecord;
use crate::rollback::{Decision, DeniedConnection, RollbackPolicy, Watch};
use crate::source::{Delivery, DirectorySource, Source};
use crate::{conntrack, interfaces};
use bulkhead_engine::{Endpoint, Engine, EngineOptions, Flow};
use bulkhead_index::{Commit, Index, NodeView, Object, ObjectKey, ObjectKind};
use bulkhead_k8s::LoadOptions;
use bulkhead_model::Protocol;
use bulkhead_nft::{Backend, BackendError, CompileOptions, Enforcement, KernelMark, Mode};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub node: String,
    pub manifests: PathBuf,
    /// `ns/pod` -> interface, overriding the route lookup.
    pub interfaces: BTreeMap<String, String>,
    pub default_namespace: String,
    /// Cut existing connections a new ruleset no longer allows.
    pub tighten: bool,
    /// Enforce, or audit (log would-be denies and let them through).
    pub mode: Mode,
    /// Namespaces under audit while the rest is enforced.
    pub audit_namespaces: std::collections::BTreeSet<String>,
    /// Send a rate-limited NFLOG record for every deny (read by `bulkhead agent flows`).
    pub log_denies: bool,
    /// Where the agent keeps state that must outlive it: the break-glass marker.
    pub state_dir: PathBuf,
    /// Prometheus text file refreshed while the agent runs (node_exporter textfile collector).
    pub metrics_file: Option<PathBuf>,
    /// Host interface name prefixes of pods: one without rules yet is dropped (fail closed).
    pub pod_interface_prefixes: Vec<String>,
    /// This node's pod CIDRs: an address in them without rules yet is dropped (fail closed
    /// for pods behind a bridge).
    pub pod_cidrs: Vec<ipnet::IpNet>,
}

impl AgentConfig {
    /// Break-glass is on while this file exists, so a restarted agent stays open too.
    pub fn break_glass_marker(&self) -> PathBuf {
        self.state_dir.join("break-glass")
    }

    /// Left by `break-glass off` for the running agent: cut what break-glass let open.
    pub fn break_glass_ended_marker(&self) -> PathBuf {
        self.state_dir.join("break-glass-ended")
    }

    /// Left by `bulkhead agent clear-rollback`: the running agent enforces its rolled-back
    /// namespaces again.
    pub fn rollback_cleared_marker(&self) -> PathBuf {
        self.state_dir.join("rollback-cleared")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(
        "the manifests have {errors} error(s); keeping the last good ruleset in force (first: {first})"
    )]
    InvalidInput { errors: usize, first: String },
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("agent state: {0}")]
    State(String),
}

/// What a reconcile did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reconciled {
    pub applied: bool,
    pub pods: usize,
    pub pods_without_interface: Vec<String>,
    /// Tracked connections the engine now denies, handed to the cutter thread, which deletes
    /// them right after (the tightened-connections metric counts what the kernel deleted).
    /// Only a turn that tightens after commits reports them; a commit itself reports 0.
    pub connections_cut: usize,
    /// How it was applied: `Some(n)`, a delta touching `n` sets, chains and dispatch entries;
    /// `None`, a full replace of the table (start-up, a mode change) or nothing.
    pub delta_objects: Option<usize>,
    /// Files kept at their last good version (or a load that failed across files), each with
    /// its first error: said loudly, never applied.
    pub rejected: Vec<String>,
    /// The index's revision after this commit.
    pub revision: u64,
    pub took: Duration,
}

impl Reconciled {
    /// A turn that changed nothing in the table and only cut connections it no longer allows.
    fn cuts_only(cut: usize, revision: u64, took: Duration) -> Self {
        Self {
            applied: false,
            pods: 0,
            pods_without_interface: Vec::new(),
            connections_cut: cut,
            delta_objects: None,
            rejected: Vec::new(),
            revision,
            took,
        }
    }
}

#[derive(Debug)]
pub struct Agent<B: Backend> {
    pub config: AgentConfig,
    pub backend: B,
    source: Box<dyn Source>,
    index: Index,
    /// What the kernel holds since the last apply; empty until the first full replace (and
    /// after anything that changed the table behind the ruleset's back, like break-glass).
    view: NodeView,
    /// The kernel's generation and table fingerprint right after this agent's last commit:
    /// a later read that differs means someone else changed the table (see [`Agent::run`]).
    mark: Option<KernelMark>,
    /// Another process committed around this agent's last commit: restore to be sure.
    mark_unsure: bool,
    /// Lists tracked flows for tightening; opened at the first tightening.
    conntrack: Option<conntrack::Conntrack>,
    /// Deletes the flows tightening picked, off the loop.
    cutter: Option<conntrack::Cutter>,
    /// Break-glass as the kernel has it, when the marker could not be made to say the same
    /// (the kernel flip comes first and wins; see [`Agent::break_glass`]).
    glass_from_kernel: Option<bool>,
    /// What the loop did, for the running agent's metrics file.
    pub stats: crate::metrics::LoopMetrics,
    /// Where the loop shows its state to the HTTP endpoints, when it has any.
    published: Option<crate::status::Published>,
    /// A commit that may have narrowed access, not yet followed by tightening. Tightening
    /// lists every tracked flow (the kernel walks its whole conntrack table: ~15 ms) and may
    /// build the engine, so it runs after the commit is in the kernel and once for a burst of
    /// commits, not inside each.
    tighten_due: Option<Instant>,
    /// Since when the namespaces-without-default-deny gauge is out of date.
    default_deny_due: Option<Instant>,
    /// The cluster-wide break-glass in force (from the source).
    cluster_glass: Option<crate::source::ClusterBreakGlass>,
    /// Automated rollback, when enabled ([`Agent::enable_rollback`]).
    rollback: Option<RollbackPolicy>,
    /// The window after the last policy change, while it lasts.
    watch: Option<Watch>,
    /// The versions, before that change, of the policies it changed (`None`: it added them).
    previous_policies: Vec<(ObjectKey, Option<Box<Object>>)>,
    /// Namespaces moved to audit by a rollback, and why.
    rolled_back: BTreeMap<String, Decision>,
    /// New denied connections from the deny count reader ([`Agent::receive_denied`]).
    denied_inbox: Option<std::sync::mpsc::Receiver<DenyRecord>>,
    /// Connections denied since start, per namespace (for `agent status`).
    denied_by_namespace: BTreeMap<String, u64>,
    /// The status file is older than what it shows.
    status_due: bool,
}

impl<B: Backend> Agent<B> {
    /// An agent fed by the manifests directory of `config`.
    pub fn new(config: AgentConfig, backend: B) -> Self {
        let source = DirectorySource::new(
            config.manifests.clone(),
            LoadOptions {
                default_namespace: config.default_namespace.clone(),
            },
            vec![config.state_dir.clone()],
        );
        Self::with_source(config, backend, Box::new(source))
    }

    /// An agent fed by another source (the Kubernetes API).
    pub fn with_source(config: AgentConfig, backend: B, source: Box<dyn Source>) -> Self {
        Self {
            config,
            backend,
            source,
            index: Index::new(),
            view: NodeView::default(),
            mark: None,
            mark_unsure: false,
            conntrack: None,
            cutter: None,
            glass_from_kernel: None,
            stats: crate::metrics::LoopMetrics::default(),
            published: None,
            tighten_due: None,
            // Counted once the first commit is in.
            default_deny_due: Some(Instant::now()),
            cluster_glass: None,
            rollback: None,
            watch: None,
            previous_policies: Vec::new(),
            rolled_back: BTreeMap::new(),
            denied_inbox: None,
            denied_by_namespace: BTreeMap::new(),
            status_due: false,
        }
    }

    /// Turns automated rollback on: a namespace whose connections a policy change newly
    /// denies reach `policy.threshold` within `policy.window` goes to audit on this node.
    pub fn enable_rollback(&mut self, policy: RollbackPolicy) {
        self.rollback = Some(policy);
    }

    /// Where the reader of the deny count group hands over each new denied connection (for
    /// rollback and `agent status`).
    pub fn receive_denied(&mut self, inbox: std::sync::mpsc::Receiver<DenyRecord>) {
        self.denied_inbox = Some(inbox);
    }

    /// Makes the loop publish its liveness, readiness, source health and (on request)
    /// metrics to `published`.
    pub fn publish_to(&mut self, published: crate::status::Published) {
        self.published = Some(published);
    }

    /// One turn's worth of publishing: cheap fields always, metrics when asked for.
    fn publish(&mut self) {
        let health = self.source.health();
        self.stats.record_source(&health);
        let Some(published) = self.published.clone() else {
            return;
        };
        {
            let mut status = published.status();
            status.last_turn = Some(Instant::now());
            status.ready = self.view.last().is_some();
            status.source = health;
        }
        if published.metrics_wanted() {
            self.stats.sample_memory();
            let text = self
                .metrics()
                .unwrap_or_else(|e| format!("# metrics unavailable: {e}\n"));
            published.put_metrics(text);
        }
    }

    /// Reads every manifest again, then commits what changed. At start-up a file that does
    /// not load stops everything (the kernel keeps the table it has); later it only keeps
    /// that file at its last good version.
    pub fn reconcile(&mut self) -> Result<Reconciled, AgentError> {
        let delivery = self.source.resync(&self.index);
        self.commit(delivery)
    }

    fn commit(&mut self, delivery: Delivery) -> Result<Reconciled, AgentError> {
        let result = self.try_commit(delivery);
        if result.is_err() {
            self.stats.commit_failures.inc();
        }
        result
    }

    fn try_commit(&mut self, delivery: Delivery) -> Result<Reconciled, AgentError> {
        let start = Instant::now();
        let seen = delivery.seen.unwrap_or(start);
        if !delivery.rejected.is_empty() {
            self.stats.rejected.inc_by(delivery.rejected.len() as u64);
        }
        // The index always follows the source (what loaded, without the rejected files), so
        // the next delivery can be a difference; only the kernel waits.
        for event in delivery.events {
            self.index.handle(event);
        }
        self.follow_revision(start);
        if self.view.last().is_none()
            && let Some(first) = delivery.rejected.first()
        {
            return Err(AgentError::InvalidInput {
                errors: delivery.rejected.len(),
                first: first.clone(),
            });
        }
        let cluster_glass = self.source.cluster_break_glass();
        if cluster_glass != self.cluster_glass {
            match &cluster_glass {
                Some(g) => eprintln!("cluster break-glass ON for {} ({})", g.scope(), g.origin),
                None => eprintln!("cluster break-glass off: enforcing again"),
            }
            self.cluster_glass = cluster_glass;
            self.stats
                .cluster_break_glass
                .set(i64::from(self.cluster_glass.is_some()));
        }
        let glass = self.cluster_glass.as_ref();
        let enforcement = Enforcement {
            mode: self.config.mode,
            log_denies: self.config.log_denies,
            break_glass: self.break_glass() || glass.is_some_and(|g| g.all),
        };
        let mut audit_namespaces = self.config.audit_namespaces.clone();
        audit_namespaces.extend(glass.into_iter().flat_map(|g| g.namespaces.iter().cloned()));
        audit_namespaces.extend(self.rolled_back.keys().cloned());
        // Pods of other nodes update this node's sets in place; anything else compiles the
        // node from the whole index.
        let mut options = CompileOptions {
            node: self.config.node.clone(),
            interfaces: Default::default(),
            audit_namespaces,
            pod_interface_prefixes: self.config.pod_interface_prefixes.clone(),
            pod_cidrs: self.config.pod_cidrs.clone(),
        };
        let (ruleset, commit, report) =
            match self
                .view
                .next_in_place(&self.index, self.index.changes(), &options, enforcement)
            {
                Some(next) => {
                    self.stats.in_place.inc();
                    next
                }
                None => {
                    let (view, config) = (&mut self.view, &self.config);
                    self.index.with_cluster(|cluster| {
                        options.interfaces =
                            interfaces::for_node(cluster, &config.node, &config.interfaces);
                        view.next(cluster, &options, enforcement)
                    })
                }
            };
        // Rules rendered again (a replaced chain, a whole new table) start from the counts
        // the kernel has for their ids, so deny counters never go backwards.
        let rerenders = match &commit {
            Commit::Full => true,
            Commit::Delta(t) => !t.chains_replaced.is_empty(),
            Commit::Nothing => false,
        };
        let counts = if rerenders {
            self.backend.deny_counts().unwrap_or_default()
        } else {
            Default::default()
        };
        let had_previous = self.view.last().is_some();
        let generation_before = self.backend.generation().ok();
        // A delta when the kernel holds a ruleset this agent applied, a full replace
        // otherwise (or when the delta is refused: the full replace is always valid).
        let (changed, delta_objects) = match commit {
            Commit::Nothing => (false, None),
            Commit::Delta(t) => {
                // Set elements alone go over netlink; anything else (or a refused write) as
                // one nft batch; a refused batch as a full replace.
                let written = t
                    .elements_only()
                    .is_some_and(|changes| self.backend.write_elements(changes).is_ok());
                let applied = written
                    || self
                        .view
                        .last()
                        .map(|last| t.render(last, &ruleset, &counts))
                        .map(|script| self.backend.apply(&script))
                        .unwrap_or(Err(BackendError::Failed {
                            command: "delta".into(),
                            status: "no committed ruleset".into(),
                            stderr: String::new(),
                        }))
                        .is_ok();
                if applied {
                    (true, Some(t.size()))
                } else {
                    self.backend
                        .apply(&bulkhead_nft::render::render_counting(&ruleset, &counts))?;
                    (true, None)
                }
            }
            Commit::Full => {
                self.backend
                    .apply(&bulkhead_nft::render::render_counting(&ruleset, &counts))?;
                (true, None)
            }
        };
        if changed {
            self.remember_mark(generation_before);
        }
        match (changed, delta_objects) {
            (true, Some(n)) => {
                self.stats.deltas.inc();
                self.stats.delta_objects.inc_by(n as u64);
            }
            (true, None) => {
                self.stats.full_replaces.inc();
            }
            (false, _) => {}
        }
        if changed {
            // Audit mode and break-glass let denied flows through; cutting them would not.
            let enforcing =
                ruleset.enforcement.mode == Mode::Enforce && !ruleset.enforcement.break_glass;
            if self.config.tighten && had_previous && enforcing {
                self.tighten_due.get_or_insert_with(Instant::now);
            }
            // The id table names what the kernel now reports by id. The kernel has the
            // ruleset either way; a table that cannot be written is reported, and the names
            // in the rules' comments are the fallback.
            let mut table = crate::rules::RuleTable::load(&self.config.state_dir);
            let table_changed = table.merge(ruleset.rule_table());
            self.view.committed(ruleset);
            if table_changed && let Err(e) = table.save(&self.config.state_dir) {
                return Err(AgentError::State(format!(
                    "the rule id table {}: {e}",
                    crate::rules::RuleTable::path(&self.config.state_dir).display()
                )));
            }
        }
        // Only policies, namespaces and what they select by (not pods) decide which
        // namespaces are default-deny: counted again once the agent is idle.
        if self
            .index
            .changes()
            .keys()
            .any(|k| k.kind != bulkhead_index::ObjectKind::Pod)
        {
            self.default_deny_due.get_or_insert_with(Instant::now);
        }
        // The kernel has every change so far: the next in-place update starts from here.
        self.index.clear_changes();
        self.stats
            .last_applied_revision
            .set(i64::try_from(self.index.revision()).unwrap_or(i64::MAX));
        if changed {
            self.stats
                .commit_seconds
                .observe(seen.elapsed().as_secs_f64());
        }
        self.stats.sample_memory();
        self.status_due = true;
        Ok(Reconciled {
            applied: changed,
            pods: report.pods,
            pods_without_interface: report.pods_without_interface,
            // Cutting follows the commit, in a turn of its own (`tighten_due`).
            connections_cut: 0,
            delta_objects,
            rejected: delivery.rejected,
            revision: self.index.revision(),
            took: start.elapsed(),
        })
    }

    /// Break-glass: on, every packet is accepted before any policy runs (fail open); off,
    /// enforcement is back. The kernel first (one element flip, so the lever works even
    /// when the disk does not), then the marker file that keeps the state for a running or
    /// restarted agent; a marker that cannot be written is reported after the flip, saying
    /// what holds. Returns whether a table was there to flip.
    pub fn set_break_glass(&mut self, on: bool) -> Result<bool, AgentError> {
        let flipped = if self.backend.table_exists()? {
            let generation_before = self.backend.generation().ok();
            self.backend
                .apply(&bulkhead_nft::render::render_break_glass(on))?;
            self.remember_mark(generation_before);
            // The next reconcile renders the map from the marker again, as a full replace.
            self.view.forget();
            true
        } else {
            false
        };
        self.persist_break_glass(on).map_err(|e| {
            AgentError::State(format!(
                "break-glass is {} in the kernel{}, but {e}: a running agent keeps it, a restarted agent would not",
                if on { "ON" } else { "off" },
                if flipped { "" } else { " (no table yet, so nothing changed there)" },
            ))
        })?;
        Ok(flipped)
    }

    /// Makes the marker say `on`; for `off` also leaves the note that has the running agent
    /// cut what break-glass let open.
    fn persist_break_glass(&self, on: bool) -> Result<(), String> {
        let marker = self.config.break_glass_marker();
        let failed = |path: &std::path::Path, e: std::io::Error| {
            format!("{} could not be written ({e})", path.display())
        };
        if on {
            return std::fs::create_dir_all(&self.config.state_dir)
                .and_then(|()| crate::files::write_by_rename(&marker, b"on\n"))
                .map_err(|e| failed(&marker, e));
        }
        match std::fs::remove_file(&marker) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(failed(&marker, e)),
        }
        let ended = self.config.break_glass_ended_marker();
        crate::files::write_by_rename(&ended, b"off\n").map_err(|e| failed(&ended, e))
    }

    /// Whether break-glass is on: the marker, unless the kernel was flipped and the marker
    /// could not follow.
    fn break_glass(&self) -> bool {
        self.glass_from_kernel
            .unwrap_or_else(|| self.config.break_glass_marker().exists())
    }

    /// The counter of denied connections this agent's metrics expose; a reader of the deny
    /// count group feeds it (`connections::ConnectionCounter`).
    pub fn denied_connections(&self) -> crate::connections::ConnectionCounts {
        self.stats.denied_connections.clone()
    }

    /// Prometheus exposition of the table's state (deny counters, audit, break-glass).
    pub fn metrics(&mut self) -> Result<String, AgentError> {
        let table = crate::rules::RuleTable::load(&self.config.state_dir);
        Ok(crate::metrics::render(
            self.backend.state()?.as_ref(),
            &table,
            // Only an agent that has applied something has a loop to report.
            self.view.last().map(|_| &self.stats),
        ))
    }

    /// Writes [`Agent::metrics`] to `path` atomically (a scraper never sees half a file).
    pub fn write_metrics(&mut self, path: &std::path::Path) -> Result<(), AgentError> {
        let text = self.metrics()?;
        crate::files::write_by_rename(path, text.as_bytes())
            .map_err(|e| AgentError::State(format!("{}: {e}", path.display())))
    }

    /// Removes Bulkhead's table if present.
    pub fn uninstall(&mut self) -> Result<bool, AgentError> {
        if !self.backend.table_exists()? {
            return Ok(false);
        }
        self.backend
            .apply(&bulkhead_nft::render::render_removal())?;
        self.view.forget();
        self.mark = None;
        Ok(true)
    }

    /// Reconciles now, then commits every change the directory source sees (inotify:
    /// complete files only; polling every `poll` where inotify is not available), until
    /// `keep_running` says stop.
    pub fn run(
        &mut self,
        poll: Duration,
        mut report: impl FnMut(Result<Reconciled, AgentError>),
        keep_running: impl Fn() -> bool,
    ) {
        report(self.reconcile());
        let mut metrics_written: Option<Instant> = None;
        let mut table_checked = Instant::now();
        let mut quiet = true;
        while keep_running() {
            self.publish();
            // Repair: the table deleted or changed behind the agent's back (by hand, another
            // tool) is put back at once, and counted. The check reads the generation id (one
            // netlink request) and reads the table's fingerprint only when it moved.
            if table_checked.elapsed() >= TABLE_CHECK_EVERY && self.view.last().is_some() {
                table_checked = Instant::now();
                match self.foreign_change() {
                    None => {}
                    Some(ForeignChange::BreakGlass(on)) => {
                        // `agent break-glass` flipped the map (the kernel first, then the
                        // marker): not a repair. The kernel is the truth; the marker follows
                        // it, and the ruleset in force now says what the kernel has.
                        self.glass_from_kernel = match self.persist_break_glass(on) {
                            Ok(()) => None,
                            Err(e) => {
                                report(Err(AgentError::State(format!(
                                    "break-glass is {} in the kernel, but {e}; keeping it while this agent runs",
                                    if on { "ON" } else { "off" }
                                ))));
                                Some(on)
                            }
                        };
                        if let Some(mut last) = self.view.last().cloned() {
                            last.enforcement.break_glass = on;
                            self.view.committed(last);
                        }
                    }
                    Some(reason) => {
                        self.view.forget();
                        self.mark = None;
                        self.stats.repairs.inc();
                        // The metrics file shows the repair now, not at its next refresh.
                        metrics_written = None;
                        report(Err(AgentError::State(format!(
                            "{reason} behind the agent's back; restoring it"
                        ))));
                        report(self.commit(crate::source::Delivery::default()));
                    }
                }
            }
            // Break-glass ended (`agent break-glass off` flipped the map and left a note, so
            // even an `on` shorter than one turn of this loop is seen): what was opened during
            // it and the policies deny is cut like any tightening.
            let ended = self.config.break_glass_ended_marker();
            if std::fs::symlink_metadata(&ended).is_ok()
                && std::fs::remove_file(&ended).is_ok()
                && self.config.tighten
            {
                let start = Instant::now();
                let flows = self.tracked_pod_flows();
                let cut = if flows.is_empty() {
                    0
                } else {
                    self.tighten(flows)
                };
                report(Ok(Reconciled::cuts_only(
                    cut,
                    self.index.revision(),
                    start.elapsed(),
                )));
            }
            if let Some(path) = self.config.metrics_file.clone()
                && metrics_written.is_none_or(|t| t.elapsed() >= METRICS_EVERY)
            {
                if let Err(e) = self.write_metrics(&path) {
                    report(Err(e));
                }
                metrics_written = Some(Instant::now());
            }
            // Commits that may have narrowed access are followed by one tightening pass
            // once the source is quiet (or 200 ms after the first of a burst).
            if let Some(since) = self.tighten_due
                && (quiet || since.elapsed() >= TIGHTEN_WITHIN)
            {
                let start = Instant::now();
                let cut = self.tighten_now();
                if cut > 0 {
                    report(Ok(Reconciled::cuts_only(
                        cut,
                        self.index.revision(),
                        start.elapsed(),
                    )));
                }
            }
            let wait = if self.tighten_due.is_some() {
                Duration::from_millis(10)
            } else if self.source.is_watching() {
                // Woken by inotify at once; the timeout only paces metrics and stop checks.
                Duration::from_millis(250)
            } else {
                poll
            };
            // Denied connections: counted per namespace, and judged by the rollback.
            if self.take_denied() {
                report(self.commit(crate::source::Delivery::default()));
            }
            let cleared = self.config.rollback_cleared_marker();
            if std::fs::symlink_metadata(&cleared).is_ok()
                && std::fs::remove_file(&cleared).is_ok()
                && !self.rolled_back.is_empty()
            {
                self.end_rollback("rollback cleared by an operator");
                report(self.commit(crate::source::Delivery::default()));
            }
            if self.status_due {
                self.write_status();
            }
            // The default-deny count takes an engine over the policies (0.4 s at 5,000
            // namespaces and 10,000 policies): when the source is quiet, or at the latest
            // DEFAULT_DENY_WITHIN after the change, never between an event and its commit.
            if let Some(since) = self.default_deny_due
                && (quiet || since.elapsed() >= DEFAULT_DENY_WITHIN)
            {
                self.count_default_deny();
            }
            if let Some(done) = self.step(wait) {
                quiet = false;
                report(done);
            } else {
                quiet = true;
                if self.view.last().is_none() && !self.source.is_watching() {
                    // Start-up was refused (invalid input): try again as the files change.
                    report(self.reconcile());
                }
            }
        }
    }
}

impl<B: Backend> Agent<B> {
    /// After the index took a delivery: a policy change is a new revision. It ends any
    /// rollback (the operator's next revision decides), and with rollback on, opens the
    /// window that watches it, keeping the changed policies' previous versions.
    fn follow_revision(&mut self, now: Instant) {
        if self.view.last().is_none() {
            return;
        }
        let policies = || {
            self.index
                .changes()
                .iter()
                .filter(|(k, _)| k.kind == ObjectKind::Policy)
        };
        if policies().next().is_none() {
            return;
        }
        // The previous versions are kept (copied) only when a rollback may need them.
        if self.rollback.is_some() {
            self.previous_policies = policies()
                .map(|(k, before)| (k.clone(), before.clone()))
                .collect();
            self.watch = Some(Watch::new(self.index.revision(), now));
        }
        if !self.rolled_back.is_empty() {
            self.end_rollback("a new policy revision");
        }
    }

    /// Enforces the rolled-back namespaces again (the next commit leaves them out of audit).
    fn end_rollback(&mut self, why: &str) {
        eprintln!(
            "{why}: enforcing the rolled-back namespace(s) {} again",
            self.rolled_back
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
        for namespace in std::mem::take(&mut self.rolled_back).into_keys() {
            self.stats.mark_rolled_back(&namespace, false);
        }
    }

    /// Takes the denied connections the reader handed over; true when a rollback moved a
    /// namespace to audit (the caller commits that).
    fn take_denied(&mut self) -> bool {
        let Some(inbox) = &self.denied_inbox else {
            return false;
        };
        let records: Vec<DenyRecord> = inbox.try_iter().take(10_000).collect();
        if records.is_empty() {
            return false;
        }
        // Enforced denies only: an audit one (node, namespace, or a rolled-back namespace)
        // let its connection through.
        let denied: Vec<&DenyRecord> = records
            .iter()
            .filter(|r| !r.audit && r.would.is_none())
            .collect();
        for r in &denied {
            *self
                .denied_by_namespace
                .entry(r.namespace().to_string())
                .or_default() += 1;
        }
        self.status_due = true;
        let now = Instant::now();
        let (Some(policy), Some(watch)) = (self.rollback, &self.watch) else {
            return false;
        };
        if watch.is_over(&policy, now) {
            self.watch = None;
            self.previous_policies.clear();
            return false;
        }
        let allowed_before = self.allowed_before(&denied);
        let connections: Vec<DeniedConnection> = denied
            .iter()
            .zip(allowed_before)
            .map(|(r, newly_denied)| DeniedConnection {
                // Handed over as they came: now is when the loop learnt of them.
                at: now,
                namespace: r.namespace().to_string(),
                newly_denied,
            })
            .collect();
        let Some(watch) = &mut self.watch else {
            return false;
        };
        let decisions = watch.decide(
            &policy,
            &connections,
            &self.rolled_back.keys().cloned().collect(),
        );
        if decisions.is_empty() {
            return false;
        }
        for decision in decisions {
            eprintln!(
                "ROLLBACK: namespace {} goes to audit on this node: {} (threshold {} within {:.0} s); `bulkhead agent clear-rollback` or a new revision enforces it again",
                decision.namespace,
                decision,
                policy.threshold,
                policy.window.as_secs_f64()
            );
            self.stats.rollbacks.inc();
            self.source.announce_rollback(&self.config.node, &decision);
            self.stats.mark_rolled_back(&decision.namespace, true);
            self.rolled_back
                .insert(decision.namespace.clone(), decision);
        }
        true
    }

    /// Whether the revision before the watched change allowed each denied connection: the
    /// engine over the pods at both ends, every namespace, and the policies with the changed
    /// ones at their previous versions.
    fn allowed_before(&self, denied: &[&DenyRecord]) -> Vec<bool> {
        let addresses: std::collections::BTreeSet<std::net::IpAddr> =
            denied.iter().flat_map(|r| [r.src, r.dst]).collect();
        let changed: std::collections::BTreeSet<&ObjectKey> =
            self.previous_policies.iter().map(|(k, _)| k).collect();
        let mut cluster = bulkhead_model::Cluster::default();
        for kind in [
            ObjectKind::Namespace,
            ObjectKind::Node,
            ObjectKind::ServiceAccount,
            ObjectKind::Tier,
            ObjectKind::NetworkSet,
            ObjectKind::Pod,
            ObjectKind::Policy,
        ] {
            for object in self.index.objects_of_kind(kind, None) {
                match object {
                    Object::Namespace(n) => cluster.namespaces.push(n.clone()),
                    Object::Node(n) => cluster.nodes.push(n.clone()),
                    Object::ServiceAccount(a) => cluster.service_accounts.push(a.clone()),
                    Object::Tier(t) => cluster.tiers.push(t.clone()),
                    Object::NetworkSet(n) => cluster.network_sets.push(n.clone()),
                    Object::Pod(p) if p.ips.iter().any(|ip| addresses.contains(ip)) => {
                        cluster.pods.push(p.clone());
                    }
                    Object::Policy(p) if !changed.contains(&object.key()) => {
                        cluster.policies.push(p.clone());
                    }
                    _ => {}
                }
            }
        }
        for (_, before) in &self.previous_policies {
            if let Some(before) = before
                && let Object::Policy(p) = &**before
            {
                cluster.policies.push(p.clone());
            }
        }
        cluster.finish();
        let engine = Engine::new(&cluster, EngineOptions::for_cluster(&cluster));
        denied
            .iter()
            .map(|r| {
                let endpoint = |ip: std::net::IpAddr| {
                    engine
                        .resolve(&ip.to_string())
                        .map(|r| r.endpoint)
                        .unwrap_or(Endpoint::External(ip))
                };
                let protocol = r.protocol();
                engine
                    .evaluate(&Flow {
                        src: endpoint(r.src),
                        dst: endpoint(r.dst),
                        protocol,
                        port: r.dport,
                        icmp: None,
                    })
                    .allowed
            })
            .collect()
    }

    /// Writes `status.json` for `bulkhead agent status` (the loop does after its commits).
    pub fn write_status(&mut self) {
        self.status_due = false;
        let mut namespaces: BTreeMap<String, crate::node_status::NamespaceStatus> = BTreeMap::new();
        let glass = self.cluster_glass.as_ref();
        let mut set = |name: &str, mode: &str, reason: Option<String>| {
            let entry = namespaces.entry(name.to_string()).or_default();
            entry.mode = mode.to_string();
            entry.reason = reason;
        };
        for ns in &self.config.audit_namespaces {
            set(ns, "audit", Some("--audit-namespace".to_string()));
        }
        for ns in glass.into_iter().flat_map(|g| g.namespaces.iter()) {
            set(
                ns,
                "audit",
                glass.map(|g| format!("cluster break-glass ({})", g.origin)),
            );
        }
        for (ns, decision) in &self.rolled_back {
            set(ns, "rolled-back", Some(decision.to_string()));
        }
        for (ns, count) in &self.denied_by_namespace {
            let entry = namespaces.entry(ns.clone()).or_default();
            if entry.mode.is_empty() {
                entry.mode = "enforce".to_string();
            }
            entry.denied_connections = *count;
        }
        let audited_policies = self
            .index
            .objects_of_kind(ObjectKind::Policy, None)
            .filter_map(|o| match o {
                Object::Policy(p) if p.staged == Some(bulkhead_model::StagedAction::Audit) => {
                    Some(format!("{} {}", p.kind.as_str(), p.key()))
                }
                _ => None,
            })
            .collect();
        let status = crate::node_status::NodeStatus {
            node: self.config.node.clone(),
            written_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default(),
            pid: std::process::id(),
            source: self.source.describe(),
            last_applied_revision: self.index.revision(),
            node_mode: match self.config.mode {
                Mode::Enforce => "enforce".to_string(),
                Mode::Audit => "audit".to_string(),
            },
            break_glass: crate::node_status::BreakGlass {
                node: self.break_glass(),
                cluster: glass.map(|g| format!("{} ({})", g.scope(), g.origin)),
            },
            namespaces,
            audited_policies,
            rollback: self.rollback.map(|p| crate::node_status::RollbackSettings {
                threshold: p.threshold,
                window_seconds: p.window.as_secs_f64(),
            }),
        };
        // A status that cannot be written is not worth stopping enforcement for; the next
        // commit tries again.
        let _ = status.write(&self.config.state_dir);
    }

    /// Sets the namespaces-without-default-deny gauge from the index (the decision of
    /// `bulkhead coverage`: a new pod of the namespace is neither reachable nor able to reach).
    pub fn count_default_deny(&mut self) {
        self.default_deny_due = None;
        let (ingress, egress) = self.index.with_cluster(|cluster| {
            let engine = bulkhead_engine::Engine::new(
                cluster,
                bulkhead_engine::EngineOptions::for_cluster(cluster),
            );
            let states = bulkhead_analysis::default_deny::namespaces(&engine);
            (
                states.values().filter(|s| !s.ingress).count(),
                states.values().filter(|s| !s.egress).count(),
            )
        });
        self.stats.set_without_default_deny(ingress, egress);
    }

    /// Cuts tracked flows the engine now denies (see [`crate::conntrack`]): the loop lists
    /// and picks them, the cutter thread deletes them (and counts them in the
    /// tightened-connections metric). Returns how many were handed over.
    /// Cuts `flows` the policies in force deny; returns how many were handed to the cutter.
    fn tighten(&mut self, flows: Vec<conntrack::TrackedFlow>) -> usize {
        let doomed = self.index.with_cluster(|cluster| {
            denied(
                &Engine::new(cluster, EngineOptions::for_cluster(cluster)),
                flows,
            )
        });
        let count = doomed.len();
        self.cutter
            .get_or_insert_with(|| {
                conntrack::Cutter::start(self.stats.tightened_connections.clone())
            })
            .cut(doomed);
        count
    }

    /// Cuts the tracked flows the policies in force deny, when a commit may have narrowed
    /// access (see `tighten_due`). Returns how many were handed to the cutter.
    fn tighten_now(&mut self) -> usize {
        if self.tighten_due.take().is_none() {
            return 0;
        }
        let flows = self.tracked_pod_flows();
        if flows.is_empty() {
            return 0;
        }
        self.tighten(flows)
    }

    /// The tracked flows with a pod of the index at one end: only those can be cut, and
    /// when there are none the engine need not be built to judge them.
    fn tracked_pod_flows(&mut self) -> Vec<conntrack::TrackedFlow> {
        if self.conntrack.is_none() {
            self.conntrack = conntrack::Conntrack::open().ok();
        }
        let Some(listed) = self.conntrack.as_mut().map(conntrack::Conntrack::list) else {
            return Vec::new();
        };
        let Ok(mut flows) = listed else {
            // A socket that failed is opened again next time.
            self.conntrack = None;
            return Vec::new();
        };
        flows.retain(|f| self.index.owners(f.src) > 0 || self.index.owners(f.dst) > 0);
        flows
    }

    /// Records where the kernel stands after this agent's own transaction. When the
    /// generation moved by more than that one transaction, another process committed around
    /// it and the mark cannot tell whose change the table holds: no mark, so the next check
    /// restores the table from the ruleset.
    fn remember_mark(&mut self, generation_before: Option<u32>) {
        (self.mark, self.mark_unsure) = match (self.backend.mark(), generation_before) {
            (Ok(mark), Some(before)) if mark.generation == before.wrapping_add(1) => {
                (Some(mark), false)
            }
            (Ok(mark), None) => (Some(mark), false),
            (Ok(_), Some(_)) => (None, true),
            // No netlink: only the `nft list tables` check is left.
            (Err(_), _) => (None, false),
        };
    }

    /// Whether the table is no longer what this agent committed. Without netlink (or without
    /// a mark), only a removed table is seen, through `nft list tables`.
    fn foreign_change(&mut self) -> Option<ForeignChange> {
        match (self.mark, self.backend.generation()) {
            (Some(mark), Ok(generation)) if generation == mark.generation => return None,
            (Some(mark), Ok(_)) => match self.backend.mark() {
                Ok(now) if now.fingerprint == mark.fingerprint => {
                    // Another table changed, or only the break-glass map flipped.
                    self.mark = Some(now);
                    return (now.break_glass != mark.break_glass)
                        .then_some(ForeignChange::BreakGlass(now.break_glass));
                }
                Ok(now) if now.fingerprint.is_some() => return Some(ForeignChange::Changed),
                // Gone: said below, after asking nft too.
                Ok(_) | Err(_) => {}
            },
            // The commit could not be told apart from another process's.
            (None, Ok(_)) if self.mark_unsure => return Some(ForeignChange::Changed),
            (None, Ok(_)) => {}
            (_, Err(_)) => {}
        }
        match self.backend.table_exists() {
            Ok(false) => Some(ForeignChange::Removed),
            _ => None,
        }
    }

    /// Waits up to `wait` for the source to see a change, and commits it; `None` when nothing
    /// changed (one turn of [`Agent::run`], for benchmarks and tests).
    pub fn step(&mut self, wait: Duration) -> Option<Result<Reconciled, AgentError>> {
        let delivery = self.source.changes(&self.index, wait)?;
        Some(self.commit(delivery))
    }
}

/// How stale the namespaces-without-default-deny gauge may get while changes keep coming.
const DEFAULT_DENY_WITHIN: Duration = Duration::from_secs(30);

/// How often a running agent checks that its table is as it left it (a generation read: one
/// netlink request, microseconds).
const TABLE_CHECK_EVERY: Duration = Duration::from_millis(200);

/// What [`Agent::foreign_change`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ForeignChange {
    Removed,
    Changed,
    /// Only the break-glass map flipped (`agent break-glass`): now on, or off.
    BreakGlass(bool),
}

impl std::fmt::Display for ForeignChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Removed => "the table was removed",
            Self::Changed => "the table was changed",
            Self::BreakGlass(_) => "break-glass was switched",
        })
    }
}

/// The longest a commit that may have narrowed access waits for its tightening pass while
/// more changes keep arriving.
const TIGHTEN_WITHIN: Duration = Duration::from_millis(200);

/// How often a running agent refreshes its metrics file.
const METRICS_EVERY: Duration = Duration::from_secs(5);

/// The tracked flows between pods (or a pod and anything) that the engine now denies.
fn denied(engine: &Engine<'_>, flows: Vec<conntrack::TrackedFlow>) -> Vec<conntrack::TrackedFlow> {
    flows
        .into_iter()
        .filter(|flow| {
            let (src, dst) = (
                engine.endpoint_for_ip(flow.src),
                engine.endpoint_for_ip(flow.dst),
            );
            if !matches!(src, Endpoint::Pod(_)) && !matches!(dst, Endpoint::Pod(_)) {
                return false;
            }
            let Ok(protocol) = flow.protocol.parse::<Protocol>() else {
                return false;
            };
            !engine
                .evaluate(&Flow {
                    src,
                    dst,
                    protocol,
                    port: Some(flow.dport),
                    icmp: None,
                })
                .allowed
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_nft::FakeBackend;

    fn write(dir: &std::path::Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).expect("write");
    }

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x, labels: {app: a}}\nspec: {nodeName: n1, containers: [{name: c, image: i}]}\nstatus: {phase: Running, podIP: 10.9.0.1, podIPs: [{ip: 10.9.0.1}]}\n";
    const DENY: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: x}\nspec: {podSelector: {}}\n";

    /// A fresh manifest directory of this test holding `POD` as pod.yaml.
    fn directory_with_pod(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("bulkhead-agent-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        write(&dir, "pod.yaml", POD);
        dir
    }

    fn agent(dir: &std::path::Path) -> Agent<FakeBackend> {
        Agent::new(
            AgentConfig {
                node: "n1".into(),
                manifests: dir.to_path_buf(),
                interfaces: BTreeMap::from([("x/a".to_string(), "veth-a".to_string())]),
                default_namespace: "default".into(),
                tighten: false,
                mode: Mode::Enforce,
                audit_namespaces: Default::default(),
                log_denies: true,
                state_dir: dir.join("state"),
                metrics_file: None,
                pod_interface_prefixes: vec!["veth".into()],
                pod_cidrs: Vec::new(),
            },
            FakeBackend::default(),
        )
    }

    /// The gauge follows policy changes: namespace x with a pod and no policy has no default
    /// deny either way; a `podSelector: {}` ingress policy gives it one; the count is made
    /// when asked (idle), not per commit.
    #[test]
    fn namespaces_without_default_deny_are_counted_from_the_index() {
        let dir = directory_with_pod("nodefault");
        let mut a = agent(&dir);
        a.reconcile().expect("reconcile");
        assert!(a.default_deny_due.is_some(), "due from the start");
        a.count_default_deny();
        assert!(a.default_deny_due.is_none());
        let gauge = |a: &mut Agent<FakeBackend>, direction: &str| {
            let text = a.metrics().expect("metrics");
            text.lines()
                .find(|l| {
                    l.starts_with(&format!(
                        "bulkhead_namespaces_without_default_deny{{direction=\"{direction}\"}}"
                    ))
                })
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|n| n.parse::<i64>().ok())
        };
        // `x` (from the pod) and `default`: neither has any policy.
        let (ingress, egress) = (gauge(&mut a, "ingress"), gauge(&mut a, "egress"));
        assert!(ingress.is_some_and(|n| n >= 1), "{ingress:?}");
        write(&dir, "policy.yaml", DENY);
        a.reconcile().expect("reconcile");
        assert!(a.default_deny_due.is_some(), "a policy change makes it due");
        a.count_default_deny();
        assert_eq!(
            gauge(&mut a, "ingress"),
            ingress.map(|n| n - 1),
            "x is default-deny for ingress now"
        );
        assert_eq!(gauge(&mut a, "egress"), egress, "not for egress");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn foreign_changes_are_told_apart_from_other_tables_and_from_break_glass() {
        let dir = directory_with_pod("foreign");
        let mut a = agent(&dir);
        assert!(a.reconcile().expect("valid").applied);
        assert_eq!(a.foreign_change(), None, "right after its own commit");
        a.backend.foreign_change(false);
        assert_eq!(a.foreign_change(), None, "another table changed");
        a.backend.foreign_change(true);
        assert_eq!(a.foreign_change(), Some(ForeignChange::Changed));
        // Restored: the agent's commit is its own again.
        a.view.forget();
        assert!(a.reconcile().expect("valid").applied);
        assert_eq!(a.foreign_change(), None);
        // `agent break-glass on` from another process: the map alone flipped.
        a.backend
            .apply(&bulkhead_nft::render::render_break_glass(true))
            .expect("fake");
        assert_eq!(a.foreign_change(), Some(ForeignChange::BreakGlass(true)));
        assert_eq!(a.foreign_change(), None, "adopted once");
        // `nft delete table`: a transaction like any other.
        a.backend.present = false;
        a.backend.foreign_change(true);
        assert_eq!(a.foreign_change(), Some(ForeignChange::Removed));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn break_glass_flips_the_kernel_even_when_the_marker_cannot_be_written() {
        let dir = directory_with_pod("glass");
        let mut a = agent(&dir);
        assert!(a.reconcile().expect("valid").applied);
        // The state directory is a file: no marker can be written there.
        std::fs::write(&a.config.state_dir, "not a directory").expect("write");
        let err = a.set_break_glass(true).expect_err("the marker fails");
        assert!(
            err.to_string()
                .contains("break-glass is ON in the kernel, but"),
            "{err}"
        );
        assert!(a.backend.break_glass, "the kernel was flipped first");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn invalid_input_at_start_up_applies_nothing() {
        let dir = directory_with_pod("start");
        write(
            &dir,
            "broken.yaml",
            "kind: NetworkPolicy\napiVersion: networking.k8s.io/v1\nmetadata: {name: b, namespace: x}\nspec: {policyTypes: [Sideways]}\n",
        );
        let mut a = agent(&dir);
        let err = a
            .reconcile()
            .expect_err("start-up with a broken file is refused");
        assert!(
            err.to_string().contains("keeping the last good ruleset"),
            "{err}"
        );
        assert!(
            a.backend.applied.is_empty(),
            "the kernel keeps the table it has"
        );
        std::fs::remove_file(dir.join("broken.yaml")).expect("fix");
        assert!(a.reconcile().expect("valid").applied);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn applies_once_per_change_and_keeps_the_last_good_ruleset_on_bad_input() {
        let dir = directory_with_pod("test");
        let mut a = agent(&dir);
        let first = a.reconcile().expect("valid");
        assert!(first.applied);
        assert_eq!(first.pods, 1);
        assert!(
            !a.reconcile().expect("valid").applied,
            "nothing changed, nothing applied"
        );
        write(&dir, "policy.yaml", DENY);
        let second = a.reconcile().expect("valid");
        assert!(second.applied);
        assert!(
            second.delta_objects.is_some_and(|n| n > 0)
                && a.backend.applied[1].starts_with("# Bulkhead dataplane delta"),
            "a change after start-up is a delta, not a new table: {}",
            a.backend.applied[1]
        );
        assert!(
            !a.backend.applied[1].contains("delete table"),
            "the table (and its counters) stays"
        );
        let id = bulkhead_nft::ruleset::rule_id("ingress of x/a", "end of tier default");
        assert!(
            a.backend.applied[1].contains(&format!(
                "counter meta nfproto vmap @deny_verdict comment \"bh:{id} ingress of x/a: end of tier default\""
            )),
            "{}",
            a.backend.applied[1]
        );
        assert!(
            a.backend.applied[1].contains(&format!(
                "log group 7 prefix \"bh:D:{id}:ingress of x/a:end of tier default\""
            )),
            "denies are logged with their id, pod and rule"
        );
        // The id table names the rule for `agent flows` and `agent metrics`.
        let table = crate::rules::RuleTable::load(&a.config.state_dir);
        assert_eq!(
            table
                .get(&id)
                .map(|r| (r.direction.as_str(), r.pod.as_str(), r.rule.as_str())),
            Some(("ingress", "x/a", "end of tier default"))
        );
        write(
            &dir,
            "broken.yaml",
            "kind: NetworkPolicy\napiVersion: networking.k8s.io/v1\nmetadata: {name: b, namespace: x}\nspec: {policyTypes: [Sideways]}\n",
        );
        // While running, a broken file keeps its last good version (here: none, so nothing of
        // it is applied), and says so.
        let r = a.reconcile().expect("the other files are fine");
        assert!(!r.applied, "nothing applied for a broken file");
        assert!(
            r.rejected.iter().any(|m| m
                .contains("broken.yaml has 1 error(s); keeping its last good version")
                && m.contains("\"Sideways\" is not Ingress or Egress")),
            "{:?}",
            r.rejected
        );
        assert_eq!(a.backend.applied.len(), 2, "the last good ruleset stays");
        // Break-glass: one element flip now, and kept by every later reconcile.
        assert!(a.set_break_glass(true).expect("fake"));
        assert_eq!(
            a.backend.applied.last().map(String::as_str),
            Some(
                "flush map inet bulkhead break_glass\nadd element inet bulkhead break_glass { ipv4 : accept, ipv6 : accept }\n"
            )
        );
        std::fs::remove_file(dir.join("broken.yaml")).expect("fix the input");
        assert!(a.reconcile().expect("valid").applied);
        assert!(
            a.backend
                .applied
                .last()
                .is_some_and(|s| s.contains("map break_glass { type nf_proto : verdict; elements = { ipv4 : accept, ipv6 : accept }; }")),
            "a reconcile keeps break-glass on"
        );
        assert!(a.set_break_glass(false).expect("fake"));
        assert!(a.reconcile().expect("valid").applied);
        assert!(
            a.backend
                .applied
                .last()
                .is_some_and(|s| s.contains("map break_glass { type nf_proto : verdict; }"))
        );
        assert!(a.uninstall().expect("fake"));
        assert!(
            a.backend
                .applied
                .last()
                .is_some_and(|s| s.ends_with("delete table inet bulkhead\n"))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_alias_bomb_or_a_fifo_in_the_directory_keeps_the_last_good_ruleset() {
        let dir = directory_with_pod("bomb");
        write(&dir, "policy.yaml", DENY);
        let mut a = agent(&dir);
        assert!(a.reconcile().expect("valid").applied);
        // "Billion laughs": refused as go-yaml refuses it, before it is expanded.
        let mut bomb = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for (i, name) in ["b", "c", "d", "e", "f", "g", "h", "i"].iter().enumerate() {
            let prev = ["a", "b", "c", "d", "e", "f", "g", "h"][i];
            let refs = vec![format!("*{prev}"); 9].join(", ");
            bomb.push_str(&format!("{name}: &{name} [{refs}]\n"));
        }
        write(&dir, "bomb.yaml", &bomb);
        let r = a.reconcile().expect("the other files are fine");
        assert!(!r.applied);
        assert!(
            r.rejected.iter().any(|m| m.contains("excessive aliasing")),
            "{:?}",
            r.rejected
        );
        assert_eq!(a.backend.applied.len(), 1, "the last good ruleset stays");
        std::fs::remove_file(dir.join("bomb.yaml")).expect("remove");
        // A FIFO is skipped with a warning, never opened (opening it would block the loop).
        let made = std::process::Command::new("mkfifo")
            .arg(dir.join("pipe.yaml"))
            .status()
            .is_ok_and(|s| s.success());
        assert!(made, "mkfifo (coreutils) runs");
        let r = a.reconcile().expect("a skipped FIFO is not an error");
        assert!(!r.applied, "nothing changed");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
