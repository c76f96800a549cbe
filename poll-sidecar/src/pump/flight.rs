//! The pump's deliveries: [`Flight`] holds the claimed events waiting to start and the
//! deliveries in flight (a `FuturesUnordered` of one concrete future type, so nothing is boxed),
//! and [`drive`] keeps them going while the pump waits for a source call.

use std::collections::VecDeque;
use std::future::Future;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio_util::sync::CancellationToken;

use super::settlement::Settlement;
use crate::delivery::{Deliverer, Settled};
use crate::source::{Claimed, Source};

/// Events claimed but not settled: waiting to start, and in flight.
pub(super) struct Flight<H, D, F> {
    /// Claimed, not started yet.
    pub(super) queue: VecDeque<Claimed<H>>,
    /// Being delivered.
    pub(super) active: FuturesUnordered<D>,
    start: F,
    concurrency: usize,
}

impl<H, D, F> Flight<H, D, F>
where
    D: Future<Output = (Claimed<H>, Settled)>,
    F: Fn(Claimed<H>) -> D,
{
    /// No events yet; `start` begins the delivery of one, at most `concurrency` at once.
    pub(super) fn new(concurrency: usize, start: F) -> Self {
        Self {
            queue: VecDeque::new(),
            active: FuturesUnordered::new(),
            start,
            concurrency,
        }
    }

    /// Starts queued events until `concurrency` are in flight.
    pub(super) fn refill(&mut self) {
        while self.active.len() < self.concurrency {
            let Some(event) = self.queue.pop_front() else {
                break;
            };
            self.active.push((self.start)(event));
        }
    }
}

/// One delivery of `event`, with its retries, stopped by `cancel` (the grace period is over)
/// or by the source's fence (its claim was lost).
pub(super) async fn deliver<S: Source>(
    deliverer: Deliverer,
    event: Claimed<S::Handle>,
    cancel: CancellationToken,
) -> (Claimed<S::Handle>, Settled) {
    let settled = deliverer
        .deliver_fenced(&event.id, &event.body, &cancel, S::fence(&event.handle))
        .await;
    (event, settled)
}

/// Runs a source call while the deliveries keep going: finished ones are
/// recorded and queued ones start in their place, so a claim or an
/// acknowledgement never leaves the target idle.
pub(super) async fn drive<T, H, D, F>(
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
