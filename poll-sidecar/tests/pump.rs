//! The pump and the deliverer through the library API, with an in-memory
//! source (it records every call) and a real HTTP target on a local port:
//! the contract every source relies on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kipper_poll::config::{DeliveryConfig, PumpConfig};
use kipper_poll::delivery::{Deliverer, Outcome};
use kipper_poll::metrics::Metrics;
use kipper_poll::pump::Pump;
use kipper_poll::source::{Claimed, DeadLetter, Source};
use tokio_util::sync::CancellationToken;

mod support;

/// What the in-memory source was told.
#[derive(Debug, Default)]
struct Calls {
    acked: Vec<u32>,
    ack_calls: usize,
    dead: Vec<(u32, u32)>,
    released: Vec<u32>,
    flushed: bool,
    /// `close` calls, and whether each came after `flush`.
    closed: Vec<bool>,
}

struct MemorySource {
    pending: VecDeque<u32>,
    calls: Arc<Mutex<Calls>>,
}

impl Source for MemorySource {
    type Handle = u32;

    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn claim(&mut self, max: usize) -> kipper_poll::Result<Vec<Claimed<u32>>> {
        let n = max.min(self.pending.len());
        Ok(self
            .pending
            .drain(..n)
            .map(|i| Claimed {
                id: format!("ev-{i}"),
                body: Bytes::from(format!("{{\"id\":{i}}}")),
                handle: i,
            })
            .collect())
    }

    async fn ack(&mut self, events: &[Claimed<u32>]) -> kipper_poll::Result<()> {
        let mut calls = self.calls.lock().unwrap();
        calls.ack_calls += 1;
        calls.acked.extend(events.iter().map(|e| e.handle));
        Ok(())
    }

    async fn dead_letter(&mut self, events: &[DeadLetter<u32>]) -> kipper_poll::Result<()> {
        self.calls
            .lock()
            .unwrap()
            .dead
            .extend(events.iter().map(|d| (d.event.handle, d.attempts)));
        Ok(())
    }

    async fn release(&mut self, events: &[Claimed<u32>]) -> kipper_poll::Result<()> {
        self.calls
            .lock()
            .unwrap()
            .released
            .extend(events.iter().map(|e| e.handle));
        Ok(())
    }

    async fn flush(&mut self) -> kipper_poll::Result<()> {
        self.calls.lock().unwrap().flushed = true;
        Ok(())
    }

    async fn close(&mut self) -> kipper_poll::Result<()> {
        let mut calls = self.calls.lock().unwrap();
        let after_flush = calls.flushed;
        calls.closed.push(after_flush);
        Ok(())
    }
}

fn delivery(target: &str, max_attempts: u32) -> DeliveryConfig {
    DeliveryConfig {
        target: target.parse().unwrap(),
        ready_url: None,
        concurrency: 8,
        timeout: Duration::from_secs(5),
        max_attempts,
        backoff_initial: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
    }
}

fn pacing(batch_size: usize) -> PumpConfig {
    PumpConfig {
        batch_size,
        poll_interval: Duration::from_secs(3600),
        shutdown_grace: Duration::from_secs(5),
    }
}

async fn pump(
    events: u32,
    handler: &support::Handler,
    max_attempts: u32,
) -> (Arc<Mutex<Calls>>, CancellationToken) {
    let calls = Arc::new(Mutex::new(Calls::default()));
    let source = MemorySource {
        pending: (0..events).collect(),
        calls: calls.clone(),
    };
    let metrics = Metrics::new();
    let deliverer = Deliverer::new(&delivery(&handler.url(), max_attempts), metrics.clone());
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(Pump::new(source, deliverer, pacing(50), 8, metrics).run(stop));
    (calls, shutdown)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_event_is_acknowledged_once_in_batches() {
    let handler = support::Handler::start(0, &[]);
    let (calls, shutdown) = pump(500, &handler, 3).await;
    support::wait_until("all acked", Duration::from_secs(30), async || {
        calls.lock().unwrap().acked.len() == 500
    })
    .await;
    shutdown.cancel();
    support::wait_until("flushed", Duration::from_secs(10), async || {
        calls.lock().unwrap().flushed
    })
    .await;
    let calls = calls.lock().unwrap();
    let mut acked = calls.acked.clone();
    acked.sort_unstable();
    assert_eq!(
        acked,
        (0..500).collect::<Vec<_>>(),
        "each event acknowledged exactly once"
    );
    assert!(
        calls.ack_calls <= 40,
        "acknowledged in batches, not one by one: {} calls",
        calls.ack_calls
    );
    assert!(calls.dead.is_empty() && calls.released.is_empty());
    let keys: std::collections::HashSet<String> =
        handler.deliveries().iter().map(|d| d.key.clone()).collect();
    assert_eq!(
        keys.len(),
        500,
        "the idempotency id travels as Idempotency-Key"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_events_are_dead_lettered_after_max_attempts() {
    let handler = support::Handler::start(0, &["--fail-percent=30"]);
    let (calls, _shutdown) = pump(100, &handler, 3).await;
    support::wait_until("all settled", Duration::from_secs(30), async || {
        let c = calls.lock().unwrap();
        c.acked.len() + c.dead.len() == 100
    })
    .await;
    let calls = calls.lock().unwrap();
    assert!(!calls.dead.is_empty() && calls.dead.len() < 100);
    assert!(
        calls.dead.iter().all(|(_, attempts)| *attempts == 3),
        "{:?}",
        calls.dead
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_releases_what_has_not_started() {
    let handler = support::Handler::start(0, &["--delay-ms=200"]);
    let (calls, shutdown) = pump(200, &handler, 3).await;
    support::wait_until(
        "deliveries under way",
        Duration::from_secs(30),
        async || !handler.deliveries().is_empty(),
    )
    .await;
    shutdown.cancel();
    support::wait_until("closed", Duration::from_secs(10), async || {
        !calls.lock().unwrap().closed.is_empty()
    })
    .await;
    let calls = calls.lock().unwrap();
    assert_eq!(calls.closed, [true], "closed once, after the flush");
    assert!(
        !calls.released.is_empty(),
        "queued events go back to the source"
    );
    let settled = calls.acked.len() + calls.released.len();
    assert!(
        settled <= 200 && calls.acked.len() >= 8,
        "in flight finished: {calls:?}"
    );
    assert!(
        calls.acked.iter().all(|a| !calls.released.contains(a)),
        "nothing both acked and released"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_attempt_reports_the_answer_and_sends_the_headers() {
    let handler = support::Handler::start(0, &["--fail-first=1", "--retry-after=3"]);
    let deliverer = Deliverer::new(&delivery(&handler.url(), 3), Metrics::new());
    let body = Bytes::from_static(b"{\"a\":1}");
    match deliverer.deliver("key-1", 1, body.clone()).await {
        Outcome::Failed(failure) => {
            assert!(failure.to_string().starts_with("HTTP 500"), "{failure:?}");
            assert_eq!(
                failure.status(),
                Some(http::StatusCode::INTERNAL_SERVER_ERROR)
            );
            assert_eq!(failure.retry_after, Some(Duration::from_secs(3)));
            assert!(!failure.is_not_ready());
        }
        Outcome::Delivered => panic!("the first attempt fails"),
    }
    assert_eq!(
        deliverer.deliver("key-1", 2, body).await,
        Outcome::Delivered
    );
    let deliveries = handler.deliveries();
    assert_eq!(
        deliveries
            .iter()
            .map(|d| (d.key.as_str(), d.attempt))
            .collect::<Vec<_>>(),
        [("key-1", 1), ("key-1", 2)]
    );
    assert_eq!(deliveries[1].body, serde_json::json!({"a": 1}));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_event_is_dead_lettered_unsent() {
    let handler = support::Handler::start(0, &[]);
    let deliverer = Deliverer::new(&delivery(&handler.url(), 3), Metrics::new());
    let huge = Bytes::from(vec![b' '; kipper_poll::delivery::MAX_EVENT_BYTES + 1]);
    let settled = deliverer
        .deliver_with_retries("big", &huge, &CancellationToken::new())
        .await;
    assert!(
        matches!(
            settled,
            kipper_poll::delivery::Settled::Dead { attempts: 0, .. }
        ),
        "{settled:?}"
    );
    assert!(handler.deliveries().is_empty());
}
