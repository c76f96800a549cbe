//! Whether the source is reachable, for `/readyz`, `/metrics` and the log.
//!
//! A source that cannot be reached (a database restarting, a failover, a
//! Redis loading its data, a wrong password after a Secret rotation) is an
//! outage to wait out, never a reason to exit: a sidecar that exits is
//! restarted by Kubernetes into the same outage, a restart loop. Both the
//! start ([`crate::run`]) and the pump retry with [`Backoff`] and report here;
//! only bad configuration stops the process (exit code 2).
//!
//! The log says when an outage starts, at most every [`LOG_EVERY`] while it
//! lasts, and when it ends; `/readyz` answers 503 with the reason meanwhile;
//! `/metrics` has `kipper_poll_source_up` and
//! `kipper_poll_source_reconnects_total` (outages that ended).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::Metrics;

/// How often a lasting outage is logged again.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// The first wait after a failure; doubled per failure up to the cap.
const FIRST_WAIT: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
struct State {
    /// The outage: its last error and when it began.
    down: Option<(String, Instant)>,
    logged: Option<Instant>,
    failures: u64,
}

/// The shared reachability of the source; cheap to clone.
#[derive(Debug, Clone)]
pub struct SourceHealth {
    kind: &'static str,
    state: Arc<Mutex<State>>,
    metrics: Metrics,
}

impl SourceHealth {
    /// The health of source `kind` (e.g. `postgres`), up until a failure.
    pub fn new(kind: &'static str, metrics: Metrics) -> Self {
        metrics.source_up.set(1);
        Self {
            kind,
            state: Arc::default(),
            metrics,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A plain record: consistent even if a holder panicked.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A call to the source failed with `error`: an outage starts or goes on.
    pub fn failed(&self, error: &dyn std::fmt::Display) {
        let now = Instant::now();
        let mut state = self.state();
        state.failures += 1;
        let text = error.to_string();
        match &mut state.down {
            None => {
                state.down = Some((text.clone(), now));
                state.logged = Some(now);
                self.metrics.source_up.set(0);
                tracing::warn!(message = "Source unreachable; retrying with backoff, the sidecar keeps running.", source = self.kind, error = %text);
            }
            Some((last, since)) => {
                let since = *since;
                *last = text.clone();
                if state
                    .logged
                    .is_none_or(|t| now.duration_since(t) >= LOG_EVERY)
                {
                    state.logged = Some(now);
                    tracing::warn!(
                        message = "Source still unreachable; retrying.",
                        source = self.kind,
                        error = %text,
                        down_for = ?now.duration_since(since),
                        failures = state.failures,
                    );
                }
            }
        }
    }

    /// A call to the source succeeded: an outage, if any, is over.
    pub fn ok(&self) {
        let mut state = self.state();
        if let Some((_, since)) = state.down.take() {
            self.metrics.source_up.set(1);
            self.metrics.source_reconnects.inc();
            tracing::info!(
                message = "Source reachable again.",
                source = self.kind,
                down_for = ?since.elapsed(),
                failures = state.failures,
            );
        }
        state.failures = 0;
    }

    /// The last error while the source is unreachable, else `None`.
    pub fn down(&self) -> Option<String> {
        self.state().down.as_ref().map(|(e, _)| e.clone())
    }
}

/// Exponential backoff with jitter for reconnecting: 100 ms doubling per
/// failure, capped at `cap` (the poll interval: the contract's "wait when the
/// source is failing"), so a restarted server is found again within a poll
/// interval and an outage costs one attempt per interval.
#[derive(Debug, Clone)]
pub struct Backoff {
    cap: Duration,
    failures: u32,
}

impl Backoff {
    /// A backoff whose waits never exceed `cap`.
    pub fn new(cap: Duration) -> Self {
        Self { cap, failures: 0 }
    }

    /// The wait before the next attempt, after one more failure.
    pub fn next_wait(&mut self) -> Duration {
        let base = FIRST_WAIT
            .saturating_mul(1 << self.failures.min(16))
            .min(self.cap);
        self.failures = self.failures.saturating_add(1);
        // Full jitter in the upper half: replicas that lost the same server
        // do not all come back in the same millisecond.
        base.mul_f64(0.5 + rand::random::<f64>() / 2.0)
    }

    /// The source answered: start again from the first wait.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1));
        let waits: Vec<Duration> = (0..8).map(|_| b.next_wait()).collect();
        assert!(waits[0] >= Duration::from_millis(50) && waits[0] <= FIRST_WAIT);
        assert!(waits[3] >= Duration::from_millis(400));
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(1)));
        b.reset();
        assert!(b.next_wait() <= FIRST_WAIT);
    }

    #[test]
    fn an_outage_is_reported_until_the_source_answers() {
        let metrics = Metrics::new();
        let health = SourceHealth::new("postgres", metrics.clone());
        assert_eq!(health.down(), None);
        health.failed(&"connection refused");
        health.failed(&"still refused");
        assert_eq!(health.down().as_deref(), Some("still refused"));
        assert_eq!(metrics.source_up.get(), 0);
        health.ok();
        assert_eq!(health.down(), None);
        assert_eq!(metrics.source_up.get(), 1);
        assert_eq!(metrics.source_reconnects.get(), 1);
        health.ok();
        assert_eq!(metrics.source_reconnects.get(), 1, "only outages count");
    }
}
