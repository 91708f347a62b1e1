//! Automated rollback (off by default): after a policy change, a namespace whose connections
//! the change newly denies cross a threshold within a window is moved to audit on this node.
//!
//! Only connections the previous revision allowed count: a compromised pod flooding denies it
//! never had cannot force its namespace open. The decision is per node and a pure function of
//! the denied connections seen since the change ([`Watch::decide`]); the agent classifies each
//! denied connection (allowed by the previous revision or not) with the engine.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// When to roll back: `threshold` newly denied connections in one namespace within `window`
/// of a policy change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RollbackPolicy {
    pub threshold: u64,
    pub window: Duration,
}

/// One denied connection since the change, as the agent classified it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeniedConnection {
    pub at: Instant,
    /// The namespace of the pod whose policy denied it.
    pub namespace: String,
    /// The previous revision allowed it: the change denies it.
    pub newly_denied: bool,
}

/// The window after one policy change (a revision) on this node.
#[derive(Clone, Debug)]
pub struct Watch {
    pub revision: u64,
    pub since: Instant,
    /// Newly denied connections per namespace so far.
    newly_denied: BTreeMap<String, u64>,
    /// Denied connections the previous revision denied too (counted, never decisive).
    denied_before: BTreeMap<String, u64>,
}

/// A namespace to move to audit, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub namespace: String,
    pub newly_denied: u64,
    pub revision: u64,
    pub within: Duration,
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} connection(s) the previous revision allowed were denied within {:.0} s of revision {}",
            self.newly_denied,
            self.within.as_secs_f64(),
            self.revision
        )
    }
}

impl Watch {
    pub fn new(revision: u64, since: Instant) -> Self {
        Self {
            revision,
            since,
            newly_denied: BTreeMap::new(),
            denied_before: BTreeMap::new(),
        }
    }

    /// Whether the window is over at `now` (the watch can be dropped).
    pub fn is_over(&self, policy: &RollbackPolicy, now: Instant) -> bool {
        now.saturating_duration_since(self.since) > policy.window
    }

    /// Takes the denied connections seen, and returns the namespaces that cross the threshold
    /// now (each once: `rolled_back` holds those already moved).
    pub fn decide(
        &mut self,
        policy: &RollbackPolicy,
        denied: &[DeniedConnection],
        rolled_back: &BTreeSet<String>,
    ) -> Vec<Decision> {
        let mut out = Vec::new();
        for d in denied {
            // Before the change, or after its window: not this change's doing.
            if d.at < self.since || d.at.saturating_duration_since(self.since) > policy.window {
                continue;
            }
            let counts = if d.newly_denied {
                &mut self.newly_denied
            } else {
                &mut self.denied_before
            };
            let n = counts.entry(d.namespace.clone()).or_default();
            *n += 1;
            if d.newly_denied
                && *n == policy.threshold
                && !rolled_back.contains(&d.namespace)
                && !out.iter().any(|x: &Decision| x.namespace == d.namespace)
            {
                out.push(Decision {
                    namespace: d.namespace.clone(),
                    newly_denied: *n,
                    revision: self.revision,
                    within: d.at.saturating_duration_since(self.since),
                });
            }
        }
        out
    }

    /// Connections denied since the change that the previous revision denied too.
    pub fn denied_before(&self, namespace: &str) -> u64 {
        self.denied_before.get(namespace).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RollbackPolicy = RollbackPolicy {
        threshold: 10,
        window: Duration::from_secs(60),
    };

    fn series(
        start: Instant,
        namespace: &str,
        newly: bool,
        count: u64,
        every_ms: u64,
    ) -> Vec<DeniedConnection> {
        (0..count)
            .map(|i| DeniedConnection {
                at: start + Duration::from_millis(i * every_ms),
                namespace: namespace.to_string(),
                newly_denied: newly,
            })
            .collect()
    }

    #[test]
    fn newly_denied_connections_over_the_threshold_roll_their_namespace_back_once() {
        let t0 = Instant::now();
        let mut watch = Watch::new(7, t0);
        let mut rolled = BTreeSet::new();
        // Nine within the window: nothing yet.
        let first = series(t0, "shop", true, 9, 500);
        assert!(watch.decide(&POLICY, &first, &rolled).is_empty());
        // The tenth crosses it.
        let tenth = series(t0 + Duration::from_secs(5), "shop", true, 1, 0);
        let decisions = watch.decide(&POLICY, &tenth, &rolled);
        assert_eq!(
            decisions,
            [Decision {
                namespace: "shop".into(),
                newly_denied: 10,
                revision: 7,
                within: Duration::from_secs(5),
            }]
        );
        assert!(
            decisions[0]
                .to_string()
                .contains("10 connection(s) the previous revision allowed")
        );
        rolled.insert("shop".to_string());
        // More of them change nothing: it is rolled back already.
        let more = series(t0 + Duration::from_secs(6), "shop", true, 20, 10);
        assert!(watch.decide(&POLICY, &more, &rolled).is_empty());
    }

    #[test]
    fn a_flood_of_connections_that_were_never_allowed_does_not_roll_back() {
        let t0 = Instant::now();
        let mut watch = Watch::new(3, t0);
        let flood = series(t0, "shop", false, 100_000, 0);
        assert!(watch.decide(&POLICY, &flood, &BTreeSet::new()).is_empty());
        assert_eq!(watch.denied_before("shop"), 100_000);
        // A few newly denied ones among them stay under the threshold.
        let few = series(t0 + Duration::from_secs(1), "shop", true, 9, 1);
        assert!(watch.decide(&POLICY, &few, &BTreeSet::new()).is_empty());
    }

    #[test]
    fn only_the_window_after_the_change_counts_and_namespaces_count_apart() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut watch = Watch::new(1, t0);
        // Before the change, and after the window.
        let early = series(t0 - Duration::from_secs(5), "shop", true, 20, 1);
        let late = series(t0 + Duration::from_secs(61), "shop", true, 20, 1);
        assert!(watch.decide(&POLICY, &early, &BTreeSet::new()).is_empty());
        assert!(watch.decide(&POLICY, &late, &BTreeSet::new()).is_empty());
        // Five in each of two namespaces: neither crosses ten.
        let mut mixed = series(t0, "shop", true, 5, 10);
        mixed.extend(series(t0, "billing", true, 5, 10));
        assert!(watch.decide(&POLICY, &mixed, &BTreeSet::new()).is_empty());
        let rest = series(t0 + Duration::from_secs(2), "billing", true, 5, 10);
        let decisions = watch.decide(&POLICY, &rest, &BTreeSet::new());
        assert_eq!(decisions.len(), 1);
        assert_eq!(decisions[0].namespace, "billing");
        assert!(watch.is_over(&POLICY, t0 + Duration::from_secs(61)));
        assert!(!watch.is_over(&POLICY, t0 + Duration::from_secs(59)));
    }
}
