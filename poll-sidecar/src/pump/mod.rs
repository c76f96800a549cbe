//! The claim loop, written once for every source: claims batches, keeps up
//! to `concurrency` deliveries in flight, settles finished ones back to the
//! source in batches, and paces itself.
//!
//! One task owns the source (`&mut S`) and polls the deliveries as a
//! `FuturesUnordered` beside whichever source call is running, so a claim or
//! an acknowledgement never stalls the deliveries and the next batch is
//! claimed while the current one is being delivered. A backlog is therefore
//! drained back to back; the poll interval applies only after a claim found
//! nothing (or failed).
//!
//! Each turn of the loop reads the pump's state into a `PumpView`, lets the
//! pure `decision::next_action` choose one step, and executes it; the rules
//! live (and are tested) in `decision/`. `flight.rs` holds the deliveries,
//! `settlement.rs` what they left to tell the source and the metrics
//! ([`DeliveryTally`], shared with the MinIO webhook).
//!
//! Shutdown: stop claiming, release what has not started, let in-flight
//! deliveries finish within the grace period, cancel and release the rest,
//! acknowledge what was delivered, then [`Source::close`].

mod decision;
mod flight;
mod settlement;

pub use settlement::DeliveryTally;

use std::future::Future;
use std::ops::ControlFlow;
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::decision::{Action, GATE_LOOK, GateWatch, Phase, PumpView, Wake, next_action};
use self::flight::{Flight, deliver, drive};
use self::settlement::Settlement;
use crate::config::PumpConfig;
use crate::delivery::{Deliverer, Settled};
use crate::health::{Backoff, SourceHealth};
use crate::metrics::Metrics;
use crate::source::{Claimed, Source};

/// How often the backlog gauge is refreshed while a backlog is drained.
const BACKLOG_EVERY: Duration = Duration::from_secs(10);

/// Drives one source into the deliverer.
#[derive(Debug)]
pub struct Pump<S: Source> {
    source: S,
    deliverer: Deliverer,
    config: PumpConfig,
    concurrency: usize,
    metrics: Metrics,
    health: SourceHealth,
}

impl<S: Source> Pump<S> {
    /// A pump of `source` into `deliverer`.
    pub fn new(
        source: S,
        deliverer: Deliverer,
        config: PumpConfig,
        concurrency: usize,
        metrics: Metrics,
    ) -> Self {
        Self {
            health: SourceHealth::new(source.kind(), metrics.clone()),
            source,
            deliverer,
            config,
            concurrency,
            metrics,
        }
    }

    /// Reports the source's reachability into `health` (shared with
    /// `/readyz`) rather than into a health of its own.
    pub fn with_health(mut self, health: SourceHealth) -> Self {
        self.health = health;
        self
    }

    /// Runs until `shutdown`, drains within the grace period, then closes
    /// the source.
    pub async fn run(self, shutdown: CancellationToken) {
        let cancel = CancellationToken::new();
        let start = {
            let (deliverer, cancel) = (self.deliverer.clone(), cancel.clone());
            move |event| deliver::<S>(deliverer.clone(), event, cancel.clone())
        };
        let mut running = Running {
            flight: Flight::new(self.concurrency, start),
            settled: Settlement::new(),
            phase: Phase::Running,
            cancel,
            idle_until: None,
            backlog_at: Instant::now(),
            // A failing source is retried sooner than the poll interval at first:
            // a restarted server is found again within a fraction of a second.
            reconnect: Backoff::new(self.config.poll_interval),
            pump: self,
        };
        while running.turn(&shutdown).await.is_continue() {}
        running.finish().await;
    }
}

/// The pump while it runs: the source and the deliveries, and the state the
/// decision reads.
struct Running<S: Source, D, F> {
    pump: Pump<S>,
    flight: Flight<S::Handle, D, F>,
    settled: Settlement<S::Handle>,
    phase: Phase,
    /// Cancelled when the grace period is over: deliveries stop retrying.
    cancel: CancellationToken,
    /// No claim before this: the last claim found nothing, or failed.
    idle_until: Option<Instant>,
    /// When the backlog gauge was last refreshed.
    backlog_at: Instant,
    reconnect: Backoff,
}

impl<S, D, F> Running<S, D, F>
where
    S: Source,
    D: Future<Output = (Claimed<S::Handle>, Settled)>,
    F: Fn(Claimed<S::Handle>) -> D,
{
    /// One turn of the loop: start what may start, look, choose one step, take it.
    async fn turn(&mut self, shutdown: &CancellationToken) -> ControlFlow<()> {
        self.flight.refill();
        let view = self.view(shutdown);
        self.publish(view.held());
        self.execute(next_action(&view), shutdown).await
    }

    /// Events held in the source: claimed and not yet settled back to it.
    fn held(&self) -> usize {
        self.flight.queue.len() + self.flight.active.len() + self.settled.unsettled()
    }

    fn view(&self, shutdown: &CancellationToken) -> PumpView {
        let gate = self.pump.deliverer.gate();
        PumpView {
            now: Instant::now(),
            phase: self.phase,
            shutdown: shutdown.is_cancelled(),
            batch: self.pump.config.batch_size,
            // Claimed ahead so the next batch is ready when the current one ends.
            max_held: self.pump.concurrency + 2 * self.pump.config.batch_size,
            queued: self.flight.queue.len(),
            active: self.flight.active.len(),
            done: self.settled.done.len(),
            dead: self.settled.dead.len(),
            cancelled: self.settled.cancelled.len(),
            settle_since: self.settled.since,
            idle_until: self.idle_until,
            gate_closed: gate.closed().is_some(),
            gate_confirmed: gate.confirmed(),
        }
    }

    /// The in-flight gauge and the delivery counters, once per turn (not per event).
    fn publish(&mut self, held: usize) {
        let metrics = &self.pump.metrics;
        metrics
            .in_flight
            .set(i64::try_from(held).unwrap_or(i64::MAX));
        self.settled.tally.flush(metrics);
    }

    async fn execute(&mut self, action: Action, shutdown: &CancellationToken) -> ControlFlow<()> {
        match action {
            Action::BeginDrain => self.begin_drain(),
            Action::CancelDeliveries => {
                tracing::warn!(
                    message = "Grace period over; releasing undelivered events.",
                    in_flight = self.flight.active.len()
                );
                self.cancel.cancel();
                self.phase = Phase::Cancelled;
            }
            Action::Release => self.release().await,
            Action::Acknowledge => self.acknowledge().await,
            Action::DeadLetter => self.dead_letter().await,
            Action::Claim { want } => self.claim(want).await,
            Action::Stop => return ControlFlow::Break(()),
            Action::Wait(wake) => self.wait(wake, shutdown).await,
        }
        ControlFlow::Continue(())
    }

    fn begin_drain(&mut self) {
        tracing::info!(
            message = "Shutting down: claiming stops, in-flight deliveries finish.",
            in_flight = self.flight.active.len(),
            queued = self.flight.queue.len()
        );
        self.phase = Phase::Draining {
            deadline: Instant::now() + self.pump.config.shutdown_grace,
        };
        self.settled.cancelled.extend(self.flight.queue.drain(..));
    }

    async fn release(&mut self) {
        let events = std::mem::take(&mut self.settled.cancelled);
        let source = &mut self.pump.source;
        let result = drive(source.release(&events), &mut self.flight, &mut self.settled).await;
        self.pump.report("release", events.len(), result);
    }

    async fn acknowledge(&mut self) {
        let held = self.held();
        let events = self.settled.take_done();
        tracing::debug!(message = "Acknowledging.", events = events.len(), held);
        let source = &mut self.pump.source;
        let result = drive(source.ack(&events), &mut self.flight, &mut self.settled).await;
        if result.is_ok() {
            self.pump.metrics.acked.inc_by(events.len() as u64);
        }
        self.pump.report("acknowledge", events.len(), result);
    }

    async fn dead_letter(&mut self) {
        let events = self.settled.take_dead();
        for dead in &events {
            tracing::warn!(message = "Event dead-lettered.", id = %dead.event.id, attempts = dead.attempts, error = %dead.error);
        }
        self.pump.metrics.dead_lettered.inc_by(events.len() as u64);
        let source = &mut self.pump.source;
        let result = drive(
            source.dead_letter(&events),
            &mut self.flight,
            &mut self.settled,
        )
        .await;
        self.pump.report("dead-letter", events.len(), result);
    }

    async fn claim(&mut self, want: usize) {
        let source = &mut self.pump.source;
        match drive(source.claim(want), &mut self.flight, &mut self.settled).await {
            Ok(events) => {
                self.pump.health.ok();
                self.reconnect.reset();
                tracing::debug!(
                    message = "Claimed.",
                    events = events.len(),
                    held = self.held()
                );
                self.idle_until = events
                    .is_empty()
                    .then(|| Instant::now() + self.pump.config.poll_interval);
                self.flight.queue.extend(events);
            }
            Err(error) => {
                // Logged by the health (at most every few seconds in an outage).
                self.pump.metrics.source_errors.inc();
                self.pump.health.failed(&error);
                self.idle_until = Some(Instant::now() + self.reconnect.next_wait());
            }
        }
        // The backlog gauge: when idle, and at most every few seconds during a backlog.
        // Not during an outage: each count would try to reconnect once more.
        if self.pump.health.down().is_none()
            && (self.idle_until.is_some() || self.backlog_at.elapsed() >= BACKLOG_EVERY)
        {
            self.backlog_at = Instant::now();
            let source = &mut self.pump.source;
            let counted = drive(source.backlog(), &mut self.flight, &mut self.settled).await;
            self.pump.set_backlog(counted);
        }
    }

    /// Nothing to ask the source: wait for a delivery to finish, the timer,
    /// SIGTERM, or the gate to open.
    async fn wait(&mut self, wake: Wake, shutdown: &CancellationToken) {
        let deliverer = &self.pump.deliverer;
        tokio::select! {
            Some((event, result)) = self.flight.active.next() => self.settled.record(event, result),
            () = tokio::time::sleep_until(wake.until) => {}
            () = shutdown.cancelled(), if wake.shutdown => {}
            _ = deliverer.wait_ready(shutdown), if wake.gate == GateWatch::Ready => {}
            () = deliverer.gate().opened_within(GATE_LOOK), if wake.gate == GateWatch::Reopened => {}
        }
    }

    /// Waits for the source's background acknowledgements, then closes it.
    async fn finish(mut self) {
        let pump = &mut self.pump;
        let flushed = pump.source.flush().await;
        pump.report("flush", 0, flushed);
        self.settled.tally.flush(&pump.metrics);
        pump.metrics.in_flight.set(0);
        if let Err(error) = pump.source.close().await {
            tracing::warn!(
                message = "Closing the source failed; what it held returns when its lease expires.",
                %error,
                source = pump.source.kind()
            );
        }
        tracing::info!(message = "Pump stopped.");
    }
}

impl<S: Source> Pump<S> {
    fn set_backlog(&self, counted: crate::Result<Option<u64>>) {
        match counted {
            Ok(Some(n)) => {
                self.metrics
                    .backlog
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            Ok(None) => {}
            Err(error) => tracing::debug!(message = "Backlog count failed.", %error),
        }
    }

    fn report(&self, what: &'static str, events: usize, result: crate::Result<()>) {
        if let Err(error) = result {
            self.metrics.source_errors.inc();
            self.health.failed(&error);
            tracing::warn!(
                message = "Source call failed; the events stay in the source and come back later.",
                call = what,
                events,
                %error,
                source = self.source.kind()
            );
        }
    }
}
