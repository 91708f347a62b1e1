//! What a running agent shows to the outside (the HTTP endpoints of `agent --kubernetes`):
//! liveness, readiness, the state of its source, and its metrics text on request. The loop
//! publishes; readers on other threads only look.

use crate::source::SourceHealth;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Status {
    /// The loop's last turn (liveness: a stuck loop stops moving this).
    pub last_turn: Option<Instant>,
    /// True once the first full sync has been committed to the kernel.
    pub ready: bool,
    pub source: SourceHealth,
    /// The last metrics text, and whether a reader is waiting for a fresh one.
    metrics: Option<(Instant, String)>,
    metrics_wanted: bool,
}

/// Shared between the loop and readers.
#[derive(Clone, Debug, Default)]
pub struct Published(Arc<(Mutex<Status>, Condvar)>);

impl Published {
    pub fn status(&self) -> MutexGuard<'_, Status> {
        self.0.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the loop for fresh metrics and waits up to `within` for them; falls back to the
    /// last text (the loop may be busy with a large commit).
    pub fn metrics(&self, within: Duration) -> Option<String> {
        let asked = Instant::now();
        let mut status = self.status();
        status.metrics_wanted = true;
        let deadline = asked + within;
        loop {
            if let Some((at, text)) = &status.metrics
                && *at >= asked
            {
                return Some(text.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return status.metrics.as_ref().map(|(_, t)| t.clone());
            }
            status = self
                .0
                .1
                .wait_timeout(status, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Whether a reader waits for metrics (the loop then renders them).
    pub fn metrics_wanted(&self) -> bool {
        self.status().metrics_wanted
    }

    pub fn put_metrics(&self, text: String) {
        let mut status = self.status();
        status.metrics = Some((Instant::now(), text));
        status.metrics_wanted = false;
        self.0.1.notify_all();
    }
}
