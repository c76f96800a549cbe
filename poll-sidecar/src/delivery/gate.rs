//! The readiness gate: nothing is claimed while the target is not ready.
//!
//! A refused connection or a 503 closes the gate. It opens again when a
//! delivery succeeds, or when a probe passes: `GET` of the configured ready
//! URL (2xx), or, without one, a TCP connect, which only proves a refused
//! port is open again, so after a 503 only a successful delivery (the held
//! events keep retrying) reopens it. A handler still starting or failed to
//! load therefore consumes nothing beyond what was already in flight.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::metrics::Metrics;

impl Closed {
    /// The state's name on `/metrics` (`kipper_poll_gate_state{state=...}`).
    pub fn label(self) -> &'static str {
        match self {
            Closed::Startup => "startup",
            Closed::Refused => "refused",
            Closed::Unavailable => "unavailable",
        }
    }
}

/// Why the gate is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Closed {
    /// Not probed yet.
    Startup = 1,
    /// The connection was refused.
    Refused = 2,
    /// The target answered 503.
    Unavailable = 3,
}

const OPEN: u8 = 0;

/// Shared by the deliverer (which closes and opens it) and the pump (which
/// waits on it before claiming).
#[derive(Debug)]
pub struct Gate {
    state: AtomicU8,
    /// A delivery succeeded since the gate last opened. A probe only shows
    /// the port is open, so until then the pump claims one batch at a time.
    confirmed: AtomicBool,
    opened: Notify,
    metrics: Metrics,
}

impl Gate {
    /// A gate closed until the first probe passes.
    pub fn new(metrics: Metrics) -> Self {
        metrics.set_gate(Closed::Startup.label());
        Self {
            state: AtomicU8::new(Closed::Startup as u8),
            confirmed: AtomicBool::new(false),
            opened: Notify::new(),
            metrics,
        }
    }

    /// Why the gate is closed, or `None` when open.
    pub fn closed(&self) -> Option<Closed> {
        match self.state.load(Ordering::Acquire) {
            OPEN => None,
            1 => Some(Closed::Startup),
            2 => Some(Closed::Refused),
            _ => Some(Closed::Unavailable),
        }
    }

    /// Whether a delivery succeeded since the gate last opened.
    pub fn confirmed(&self) -> bool {
        self.confirmed.load(Ordering::Acquire)
    }

    /// A delivery succeeded: the target is ready beyond doubt.
    pub fn confirm(&self) {
        if !self.confirmed.swap(true, Ordering::AcqRel) || self.closed().is_some() {
            self.open();
        }
    }

    /// Opens the gate and wakes the waiters.
    pub fn open(&self) {
        if self.state.swap(OPEN, Ordering::AcqRel) != OPEN {
            self.metrics.set_gate("open");
            tracing::info!(message = "Target is ready; claiming resumes.");
            self.opened.notify_waiters();
        }
    }

    /// Closes the gate for `why`.
    pub fn close(&self, why: Closed) {
        self.confirmed.store(false, Ordering::Release);
        let was = self.state.swap(why as u8, Ordering::AcqRel);
        if was != why as u8 {
            self.metrics.set_gate(why.label());
        }
        if was == OPEN {
            tracing::warn!(message = "Target is not ready; claiming pauses.", reason = ?why);
        }
    }

    /// Waits until the gate opens or `wait` passes, whichever is first.
    pub async fn opened_within(&self, wait: Duration) {
        let notified = self.opened.notified();
        if self.closed().is_none() {
            return;
        }
        let _ = tokio::time::timeout(wait, notified).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opening_wakes_a_waiter() {
        let gate = std::sync::Arc::new(Gate::new(Metrics::new()));
        assert_eq!(gate.closed(), Some(Closed::Startup));
        let waiter = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.opened_within(Duration::from_secs(3600)).await })
        };
        tokio::task::yield_now().await;
        gate.open();
        waiter.await.unwrap();
        assert_eq!(gate.closed(), None);
        gate.close(Closed::Unavailable);
        assert_eq!(gate.closed(), Some(Closed::Unavailable));
    }
}
