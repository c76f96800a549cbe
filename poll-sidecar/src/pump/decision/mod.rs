//! The pump's choice of what to do next, as a pure function: [`next_action`] reads a
//! [`PumpView`] (counts, times and the gate, taken once per turn of the loop) and returns one
//! [`Action`]; [`super::Pump::run`] executes it and asks again. Nothing here touches the source,
//! the clock or the network, so every rule is unit-tested with paused time below.
//!
//! The rules, in order of precedence:
//! 1. SIGTERM: begin the drain (stop claiming, give back what has not started).
//! 2. The grace period is over: cancel the deliveries still running.
//! 3. Give back cancelled events; then acknowledge, then dead-letter, each in batches: a full
//!    batch, or whatever there is once nothing else is moving, the oldest has waited
//!    [`SETTLE_WAIT`], the hold is full, or the pump is stopping.
//! 4. Claim, when running, the hold has room, the current batch is started, the idle wait is
//!    over and the readiness gate is open (opened by a probe only: one batch until a delivery
//!    succeeds).
//! 5. Stop, once draining and nothing is held.
//! 6. Otherwise wait for a delivery, a timer, SIGTERM or the gate.

use std::time::Duration;

use tokio::time::Instant;

/// How long a delivered event may wait for its batch to fill before it is
/// acknowledged anyway (it holds its lock meanwhile).
pub(super) const SETTLE_WAIT: Duration = Duration::from_millis(50);

/// The longest the pump sleeps with nothing to wake it but a delivery or a signal.
const LONGEST_WAIT: Duration = Duration::from_secs(3600);

/// How long a wait watches a closed gate before it looks at everything again.
pub(super) const GATE_LOOK: Duration = Duration::from_secs(1);

/// Where the pump is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Claiming and delivering.
    Running,
    /// SIGTERM came: nothing is claimed; deliveries in flight may finish until `deadline`.
    Draining {
        /// The end of the grace period.
        deadline: Instant,
    },
    /// The grace period is over: the deliveries were told to stop; what they hand back is
    /// released.
    Cancelled,
}

/// Everything the choice depends on, read once per turn of the loop.
#[derive(Debug, Clone, Copy)]
pub(super) struct PumpView {
    pub(super) now: Instant,
    pub(super) phase: Phase,
    /// SIGTERM was received.
    pub(super) shutdown: bool,
    /// Events per claim and per acknowledgement.
    pub(super) batch: usize,
    /// Most events held at once (claimed ahead so the next batch is ready).
    pub(super) max_held: usize,
    /// Claimed, not started.
    pub(super) queued: usize,
    /// Being delivered.
    pub(super) active: usize,
    /// Delivered, not acknowledged.
    pub(super) done: usize,
    /// Out of attempts, not dead-lettered.
    pub(super) dead: usize,
    /// Not delivered, not given back.
    pub(super) cancelled: usize,
    /// When the oldest of `done` and `dead` finished.
    pub(super) settle_since: Option<Instant>,
    /// No claim before this (the source was idle or failing).
    pub(super) idle_until: Option<Instant>,
    /// The readiness gate is closed: the target is not ready.
    pub(super) gate_closed: bool,
    /// A delivery succeeded since the gate last opened.
    pub(super) gate_confirmed: bool,
}

impl PumpView {
    /// Events this replica holds in the source (claimed, not yet settled back to it).
    pub(super) fn held(&self) -> usize {
        self.queued + self.active + self.done + self.dead
    }

    fn stopping(&self) -> bool {
        self.phase != Phase::Running
    }

    fn moving(&self) -> bool {
        self.active > 0 || self.queued > 0
    }

    /// Whether `n` finished events should be told to the source now.
    fn settle(&self, n: usize) -> bool {
        let waited = self
            .settle_since
            .is_some_and(|t| self.now.saturating_duration_since(t) >= SETTLE_WAIT);
        n >= self.batch
            || (n > 0
                && (!self.moving() || waited || self.stopping() || self.held() >= self.max_held))
    }

    fn may_claim(&self) -> bool {
        let held = self.held();
        self.phase == Phase::Running
            && held < self.max_held
            && self.queued < self.batch
            && self.idle_until.is_none_or(|t| self.now >= t)
            && !self.gate_closed
            && (held == 0 || self.gate_confirmed)
    }

    fn wake(&self) -> Wake {
        let mut until = self.now + LONGEST_WAIT;
        if let Some(t) = self.idle_until.filter(|t| *t > self.now) {
            until = until.min(t);
        }
        if let Some(t) = self.settle_since {
            until = until.min(t + SETTLE_WAIT);
        }
        if let Phase::Draining { deadline } = self.phase {
            until = until.min(deadline);
        }
        let gate = match (self.gate_closed && !self.stopping(), self.active) {
            (false, _) => GateWatch::No,
            (true, 0) => GateWatch::Ready,
            (true, _) => GateWatch::Reopened,
        };
        Wake {
            until,
            shutdown: !self.stopping(),
            gate,
        }
    }
}

/// One step of the pump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    /// Enter [`Phase::Draining`] and give back the events not started.
    BeginDrain,
    /// Enter [`Phase::Cancelled`]: the deliveries stop at their next attempt.
    CancelDeliveries,
    /// Give the cancelled events back to the source.
    Release,
    /// Acknowledge the delivered events.
    Acknowledge,
    /// Dead-letter the events out of attempts.
    DeadLetter,
    /// Claim up to `want` events.
    Claim {
        /// How many.
        want: usize,
    },
    /// Nothing is held and nothing will be claimed: the pump is done.
    Stop,
    /// Nothing to ask the source now.
    Wait(Wake),
}

/// What ends a wait, besides a delivery finishing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Wake {
    /// The next timer: the idle wait, the settle wait or the grace period.
    pub(super) until: Instant,
    /// SIGTERM ends the wait (not yet draining).
    pub(super) shutdown: bool,
    /// Whether and how the gate's opening ends the wait.
    pub(super) gate: GateWatch,
}

/// How a wait watches a closed readiness gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GateWatch {
    /// The gate is open (or the pump is stopping): not watched.
    No,
    /// Nothing in flight: probe the target until it is ready.
    Ready,
    /// Deliveries in flight retry by themselves: watch for their success for [`GATE_LOOK`].
    Reopened,
}

/// The pump's next step for `view`; see the module docs for the rules.
pub(super) fn next_action(view: &PumpView) -> Action {
    match view.phase {
        Phase::Running if view.shutdown => return Action::BeginDrain,
        Phase::Draining { deadline } if view.now >= deadline => return Action::CancelDeliveries,
        _ => {}
    }
    if view.cancelled > 0 {
        Action::Release
    } else if view.settle(view.done) {
        Action::Acknowledge
    } else if view.settle(view.dead) {
        Action::DeadLetter
    } else if view.may_claim() {
        Action::Claim {
            want: view.batch.min(view.max_held - view.held()),
        }
    } else if view.stopping() && view.held() == 0 {
        Action::Stop
    } else {
        Action::Wait(view.wake())
    }
}

#[cfg(test)]
mod tests;
