//! The connections of a server after its listener closed, and their drain: each connection is
//! told to finish its request in progress and close, the caller waits up to its grace period,
//! and whatever is still open then is closed.
//!
//! One `watch` channel carries the [`Phase`] to every connection task; the tasks hold its
//! receivers, so "every connection closed" is "every receiver dropped" and needs no counter.

use std::time::Duration;

use tokio::sync::watch;

/// What the server asks of its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Serve requests as they come.
    Serving,
    /// Finish the request in progress, then close (hyper's graceful shutdown).
    Draining,
    /// Close now: the grace period is over.
    Closed,
}

/// The connections a [`Server`](crate::Server) opened. Dropping this closes every one of them
/// at once; [`drain`](Self::drain) lets them finish first.
#[derive(Debug)]
pub struct Connections {
    phase: watch::Sender<Phase>,
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every connection finished within the grace period.
    Complete,
    /// The grace period ran out; this many connections were still open and were closed.
    Cut {
        /// Connections closed mid-request (or mid-stream).
        open: usize,
    },
}

impl Connections {
    pub(crate) fn new() -> Self {
        Self {
            phase: watch::Sender::new(Phase::Serving),
        }
    }

    /// A new connection's view of the phase; holding it keeps the connection counted as open.
    pub(crate) fn watch(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    /// Connections still open.
    pub fn open(&self) -> usize {
        self.phase.receiver_count()
    }

    /// Asks every connection to finish its request in progress and close, waits up to `grace`,
    /// then closes the rest and waits until they are gone. A zero grace closes everything at
    /// once (the test API server, whose watches would otherwise stream on).
    pub async fn drain(self, grace: Duration) -> Drained {
        self.phase.send_replace(Phase::Draining);
        if tokio::time::timeout(grace, self.phase.closed())
            .await
            .is_ok()
        {
            return Drained::Complete;
        }
        let open = self.phase.receiver_count();
        self.phase.send_replace(Phase::Closed);
        // Each task is parked on the phase, so it drops its connection at its next poll.
        self.phase.closed().await;
        Drained::Cut { open }
    }
}

/// Waits for the next phase; a server gone without draining means [`Phase::Closed`].
pub(crate) async fn next(phase: &mut watch::Receiver<Phase>) -> Phase {
    match phase.changed().await {
        Ok(()) => *phase.borrow_and_update(),
        Err(_) => Phase::Closed,
    }
}
