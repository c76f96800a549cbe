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
//! Shutdown: stop claiming, release what has not started, let in-flight
//! deliveries finish within the grace period, cancel and release the rest,
//! acknowledge what was delivered.

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::PumpConfig;
use crate::delivery::{Deliverer, Settled};
use crate::health::{Backoff, SourceHealth};
use crate::metrics::Metrics;
use crate::source::{Claimed, DeadLetter, Source};

/// How long a delivered event may wait for its batch to fill before it is
/// acknowledged anyway (it holds its lock meanwhile).
const SETTLE_WAIT: Duration = Duration::from_millis(50);

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

/// What finished deliveries left to tell the source.
struct Settlement<H> {
    done: Vec<Claimed<H>>,
    dead: Vec<DeadLetter<H>>,
    cancelled: Vec<Claimed<H>>,
    /// When the oldest unsettled done/dead event finished.
    since: Option<Instant>,
    /// Counters accumulated since the last flush into the metrics.
    delivered: u64,
    failed_attempts: u64,
    retries: u64,
}

impl<H> Settlement<H> {
    fn new() -> Self {
        Self {
            done: Vec::new(),
            dead: Vec::new(),
            cancelled: Vec::new(),
            since: None,
            delivered: 0,
            failed_attempts: 0,
            retries: 0,
        }
    }

    fn record(&mut self, event: Claimed<H>, settled: Settled) {
        if self.since.is_none() && !matches!(settled, Settled::Cancelled { .. }) {
            self.since = Some(Instant::now());
        }
        let attempts = u64::from(settled.attempts());
        match settled {
            Settled::Delivered { .. } => {
                self.delivered += 1;
                self.failed_attempts += attempts.saturating_sub(1);
                self.retries += attempts.saturating_sub(1);
                self.done.push(event);
            }
            Settled::Dead { attempts, error } => {
                self.failed_attempts += u64::from(attempts);
                self.retries += u64::from(attempts).saturating_sub(1);
                self.dead.push(DeadLetter {
                    event,
                    attempts,
                    error: error.to_string(),
                });
            }
            Settled::Cancelled { .. } => {
                self.failed_attempts += attempts.saturating_sub(1);
                self.cancelled.push(event);
            }
        }
    }

    fn take_done(&mut self) -> Vec<Claimed<H>> {
        if self.dead.is_empty() {
            self.since = None;
        }
        std::mem::take(&mut self.done)
    }

    fn take_dead(&mut self) -> Vec<DeadLetter<H>> {
        if self.done.is_empty() {
            self.since = None;
        }
        std::mem::take(&mut self.dead)
    }

    fn flush_counters(&mut self, metrics: &Metrics) {
        metrics
            .delivered
            .inc_by(std::mem::take(&mut self.delivered));
        metrics
            .failed
            .inc_by(std::mem::take(&mut self.failed_attempts));
        metrics.retried.inc_by(std::mem::take(&mut self.retries));
    }
}

/// Events claimed but not settled: waiting to start, and in flight.
struct Flight<H, D, F> {
    queue: VecDeque<Claimed<H>>,
    active: FuturesUnordered<D>,
    start: F,
    concurrency: usize,
}

impl<H, D, F> Flight<H, D, F>
where
    D: Future<Output = (Claimed<H>, Settled)>,
    F: Fn(Claimed<H>) -> D,
{
    /// Starts queued events until `concurrency` are in flight.
    fn refill(&mut self) {
        while self.active.len() < self.concurrency {
            let Some(event) = self.queue.pop_front() else {
                break;
            };
            self.active.push((self.start)(event));
        }
    }

    fn moving(&self) -> bool {
        !self.active.is_empty() || !self.queue.is_empty()
    }
}

async fn deliver<S: Source>(
    deliverer: Deliverer,
    event: Claimed<S::Handle>,
    cancel: CancellationToken,
) -> (Claimed<S::Handle>, Settled) {
    let settled = deliverer
        .deliver_fenced(&event.id, &event.body, &cancel, S::fence(&event.handle))
        .await;
    (event, settled)
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

    /// Runs until `shutdown`, then drains within the grace period.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let batch = self.config.batch_size;
        // Claimed ahead so the next batch is ready when the current one ends.
        let max_held = self.concurrency + 2 * batch;
        let cancel = CancellationToken::new();
        let deliverer = self.deliverer.clone();
        let delivery_cancel = cancel.clone();
        let mut flight = Flight {
            queue: VecDeque::new(),
            active: FuturesUnordered::new(),
            start: move |event| deliver::<S>(deliverer.clone(), event, delivery_cancel.clone()),
            concurrency: self.concurrency,
        };
        let mut settled = Settlement::new();
        let mut idle_until: Option<Instant> = None;
        let mut grace_deadline: Option<Instant> = None;
        let mut backlog_at = Instant::now();
        // A failing source is retried sooner than the poll interval at first:
        // a restarted server is found again within a fraction of a second.
        let mut reconnect = Backoff::new(self.config.poll_interval);

        loop {
            flight.refill();
            let stopping = shutdown.is_cancelled();
            if stopping && grace_deadline.is_none() {
                grace_deadline = Some(Instant::now() + self.config.shutdown_grace);
                tracing::info!(
                    message = "Shutting down: claiming stops, in-flight deliveries finish.",
                    in_flight = flight.active.len(),
                    queued = flight.queue.len()
                );
                settled.cancelled.extend(flight.queue.drain(..));
            }
            if grace_deadline.is_some_and(|d| Instant::now() >= d) && !cancel.is_cancelled() {
                tracing::warn!(
                    message = "Grace period over; releasing undelivered events.",
                    in_flight = flight.active.len()
                );
                cancel.cancel();
            }
            let held =
                flight.queue.len() + flight.active.len() + settled.done.len() + settled.dead.len();
            self.metrics
                .in_flight
                .set(i64::try_from(held).unwrap_or(i64::MAX));
            settled.flush_counters(&self.metrics);

            // Settle in batches: a full batch, or whatever there is once
            // nothing else is moving, the oldest has waited SETTLE_WAIT, the
            // hold is full, or we are stopping.
            let moving = flight.moving();
            let settle_due = settled.since.is_some_and(|t| t.elapsed() >= SETTLE_WAIT);
            let settle = |n: usize| {
                n >= batch || (n > 0 && (!moving || settle_due || stopping || held >= max_held))
            };
            let claim_allowed = !stopping
                && held < max_held
                && flight.queue.len() < batch
                && idle_until.is_none_or(|t| Instant::now() >= t)
                && self.deliverer.gate().closed().is_none()
                // Opened by a probe only: one batch until a delivery succeeds.
                && (held == 0 || self.deliverer.gate().confirmed());

            if !settled.cancelled.is_empty() {
                let events = std::mem::take(&mut settled.cancelled);
                let result = drive(self.source.release(&events), &mut flight, &mut settled).await;
                self.report("release", events.len(), result);
            } else if settle(settled.done.len()) {
                let events = settled.take_done();
                tracing::debug!(message = "Acknowledging.", events = events.len(), held);
                let result = drive(self.source.ack(&events), &mut flight, &mut settled).await;
                if result.is_ok() {
                    self.metrics.acked.inc_by(events.len() as u64);
                }
                self.report("acknowledge", events.len(), result);
            } else if settle(settled.dead.len()) {
                let events = settled.take_dead();
                for dead in &events {
                    tracing::warn!(message = "Event dead-lettered.", id = %dead.event.id, attempts = dead.attempts, error = %dead.error);
                }
                self.metrics.dead_lettered.inc_by(events.len() as u64);
                let result =
                    drive(self.source.dead_letter(&events), &mut flight, &mut settled).await;
                self.report("dead-letter", events.len(), result);
            } else if claim_allowed {
                let want = batch.min(max_held - held);
                match drive(self.source.claim(want), &mut flight, &mut settled).await {
                    Ok(events) => {
                        self.health.ok();
                        reconnect.reset();
                        tracing::debug!(message = "Claimed.", events = events.len(), held);
                        if events.is_empty() {
                            idle_until = Some(Instant::now() + self.config.poll_interval);
                        } else {
                            idle_until = None;
                        }
                        flight.queue.extend(events);
                    }
                    Err(error) => {
                        // Logged by the health (at most every few seconds in an outage).
                        self.metrics.source_errors.inc();
                        self.health.failed(&error);
                        idle_until = Some(Instant::now() + reconnect.next_wait());
                    }
                }
                // The backlog gauge: when idle, and at most every few seconds during a backlog.
                // Not during an outage: each count would try to reconnect once more.
                if self.health.down().is_none()
                    && (idle_until.is_some() || backlog_at.elapsed() >= BACKLOG_EVERY)
                {
                    backlog_at = Instant::now();
                    let counted = drive(self.source.backlog(), &mut flight, &mut settled).await;
                    self.set_backlog(counted);
                }
            } else if stopping && !moving && held == 0 {
                break;
            } else {
                // Nothing to ask the source: wait for a delivery to finish, the
                // settle or idle wait to end, the gate to open, or shutdown.
                let mut wake = Instant::now() + Duration::from_secs(3600);
                if let Some(t) = idle_until.filter(|t| *t > Instant::now()) {
                    wake = wake.min(t);
                }
                if let Some(t) = settled.since {
                    wake = wake.min(t + SETTLE_WAIT);
                }
                if let Some(d) = grace_deadline.filter(|_| !cancel.is_cancelled()) {
                    wake = wake.min(d);
                }
                let gate_closed = self.deliverer.gate().closed().is_some() && !stopping;
                tokio::select! {
                    Some((event, result)) = flight.active.next() => settled.record(event, result),
                    () = tokio::time::sleep_until(wake) => {}
                    () = shutdown.cancelled(), if !stopping => {}
                    _ = self.deliverer.wait_ready(&shutdown), if gate_closed && flight.active.is_empty() => {}
                    () = self.deliverer.gate().opened_within(Duration::from_secs(1)), if gate_closed && !flight.active.is_empty() => {}
                }
            }
        }
        let flushed = self.source.flush().await;
        self.report("flush", 0, flushed);
        settled.flush_counters(&self.metrics);
        self.metrics.in_flight.set(0);
        tracing::info!(message = "Pump stopped.");
    }

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

/// Runs a source call while the deliveries keep going: finished ones are
/// recorded and queued ones start in their place, so a claim or an
/// acknowledgement never leaves the target idle.
async fn drive<T, H, D, F>(
    call: impl Future<Output = T>,
    flight: &mut Flight<H, D, F>,
    settled: &mut Settlement<H>,
) -> T
where
    D: Future<Output = (Claimed<H>, Settled)>,
    F: Fn(Claimed<H>) -> D,
{
    tokio::pin!(call);
    loop {
        tokio::select! {
            biased;
            out = &mut call => return out,
            Some((event, result)) = flight.active.next(), if !flight.active.is_empty() => {
                settled.record(event, result);
                flight.refill();
            }
        }
    }
}
