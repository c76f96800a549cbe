//! What happens to a worker after one of its invocations timed out.
//!
//! The invocation is answered 504 at once and abandoned; the worker is *not*
//! killed for it, because its other invocations may be running fine (an async
//! handler awaiting something slow blocks nothing). It takes no new
//! invocations until it answers a `PING`, which the loop that runs handlers
//! answers (at once when that loop is free), and it is replaced only when it
//! is stuck: no answer within [`GRACE`]. Then the pool isolates, and the
//! stuck worker is killed once none of its other
//! invocations is still waited for: each of those ends with its own answer or
//! its own 504, so none is answered for its neighbour's fault. A worker that
//! answers the ping late recovers and is not killed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Pool;
use super::worker::Worker;

/// How long a worker has to answer a `PING` after an invocation timed out.
pub const GRACE: Duration = Duration::from_secs(1);

/// Decides whether `worker` is stuck, and replaces it if so.
pub async fn check(pool: Arc<Pool>, worker: Arc<Worker>) {
    // One check at a time per worker: the many timeouts of a blocked worker
    // all come to the same conclusion.
    if worker.checking.swap(true, Ordering::AcqRel) {
        return;
    }
    // Until it answers, nothing more is queued behind what may be a blocked
    // handler (an async worker answers in microseconds).
    worker.set_draining(true);
    let Some(ping) = worker.ping() else {
        return;
    };
    if worker.pong(ping, GRACE).await || worker.is_dead() {
        worker.set_draining(false);
        worker.checking.store(false, Ordering::Release);
        pool.available.notify_waiters();
        return;
    }
    tracing::warn!(
        message = "worker stuck in an invocation that timed out; no new requests go to it",
        worker = worker.slot,
        pid = worker.pid,
        grace_ms = GRACE.as_millis() as u64
    );
    pool.isolate("a worker got stuck in an invocation past KIPPER_TIMEOUT");
    loop {
        if worker.is_dead() {
            return;
        }
        if worker.live() == 0 {
            worker.kill(true);
            return;
        }
        if worker.pong(ping, Duration::from_millis(50)).await {
            tracing::info!(
                message = "worker answered again; it takes requests again",
                worker = worker.slot,
                pid = worker.pid
            );
            worker.set_draining(false);
            worker.checking.store(false, Ordering::Release);
            pool.available.notify_waiters();
            return;
        }
    }
}
