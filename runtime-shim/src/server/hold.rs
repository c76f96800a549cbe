//! The hold gate: while the pool starts, requests wait here instead of being
//! refused. The wait is bounded in count (`KIPPER_HOLD_MAX`) and in time
//! (`KIPPER_HOLD_TIMEOUT`); past either bound a request is answered 503 with
//! `Retry-After`, never dropped. The body is not read while held, so a held
//! request costs a few hundred bytes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::metrics::Metrics;
use crate::pool::{Pool, State};

/// What the gate decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The pool serves: go on.
    Ready,
    /// The handler failed to load.
    Failed(Arc<str>),
    /// Too many requests are held already.
    Overflow,
    /// The pool did not become ready within the hold timeout.
    Expired,
}

/// Holds requests until the pool is ready.
#[derive(Debug)]
pub struct HoldGate {
    pool: Arc<Pool>,
    metrics: Arc<Metrics>,
    held: AtomicUsize,
    max: usize,
    timeout: Duration,
}

struct Held<'a>(&'a HoldGate);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::Relaxed);
        self.0.metrics.held.dec();
    }
}

impl HoldGate {
    /// A gate in front of `pool`.
    pub fn new(pool: Arc<Pool>, metrics: Arc<Metrics>, max: usize, timeout: Duration) -> Self {
        Self {
            pool,
            metrics,
            held: AtomicUsize::new(0),
            max,
            timeout,
        }
    }

    /// Lets the request through once the pool is ready, or says why not.
    pub async fn admit(&self) -> Admission {
        if self.pool.is_ready() {
            return Admission::Ready;
        }
        if let State::Failed(message) = self.pool.state() {
            return Admission::Failed(message);
        }
        if self.held.fetch_add(1, Ordering::Relaxed) >= self.max {
            self.held.fetch_sub(1, Ordering::Relaxed);
            self.metrics.hold_overflow.inc();
            return Admission::Overflow;
        }
        self.metrics.held.inc();
        let _held = Held(self);
        match tokio::time::timeout(self.timeout, self.pool.settled()).await {
            Ok(State::Failed(message)) => Admission::Failed(message),
            Ok(_) => Admission::Ready,
            Err(_) => {
                self.metrics.hold_expired.inc();
                Admission::Expired
            }
        }
    }

    /// Requests held right now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn overflow_and_expiry_while_starting() {
        let metrics = Metrics::new();
        let pool = Pool::new(1, metrics.clone());
        let gate = Arc::new(HoldGate::new(
            pool,
            metrics.clone(),
            2,
            Duration::from_secs(5),
        ));
        let a = tokio::spawn({
            let g = gate.clone();
            async move { g.admit().await }
        });
        let b = tokio::spawn({
            let g = gate.clone();
            async move { g.admit().await }
        });
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(gate.held(), 2);
        assert_eq!(gate.admit().await, Admission::Overflow);
        assert_eq!(a.await.unwrap(), Admission::Expired);
        assert_eq!(b.await.unwrap(), Admission::Expired);
        assert_eq!(gate.held(), 0);
        let text = metrics.encode();
        assert!(text.contains("reason=\"overflow\"} 1"), "{text}");
        assert!(text.contains("reason=\"expired\"} 2"), "{text}");
    }
}
