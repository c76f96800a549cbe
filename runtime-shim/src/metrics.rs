//! The shim's Prometheus metrics, served on the admin port. Label sets are
//! small and fixed, and their handles are resolved once at start so the hot
//! path is one atomic add per counter, not a label lookup.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Every metric of the shim.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    by_class: [Counter; 5],
    /// Time from the request's arrival to the worker's answer, in seconds.
    pub duration: Histogram,
    /// Requests currently held while the handler starts.
    pub held: Gauge,
    /// Held requests answered 503 because the hold was full.
    pub hold_overflow: Counter,
    /// Held requests answered 503 because the hold timed out.
    pub hold_expired: Counter,
    /// Worker processes ready to serve.
    pub workers_ready: Gauge,
    /// Workers replaced after they crashed.
    pub restarts_crash: Counter,
    /// Workers replaced because they were stuck in an invocation that timed out.
    pub restarts_timeout: Counter,
    /// Times the pool switched to one invocation per worker (see `pool`).
    pub isolations: Counter,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("kipper_shim");
        let invocations = Family::<StatusLabel, Counter>::default();
        registry.register(
            "invocations",
            "Invocations answered, by HTTP status class",
            invocations.clone(),
        );
        let by_class = ["1xx", "2xx", "3xx", "4xx", "5xx"]
            .map(|status| invocations.get_or_create(&StatusLabel { status }).clone());
        let duration = Histogram::new(exponential_buckets(0.000_05, 2.5, 16));
        registry.register(
            "invocation_duration_seconds",
            "Time from request to answer",
            duration.clone(),
        );
        let held = Gauge::default();
        registry.register(
            "held_requests",
            "Requests held while the handler starts",
            held.clone(),
        );
        let rejected = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "hold_rejected",
            "Held requests answered 503",
            rejected.clone(),
        );
        let hold_overflow = rejected
            .get_or_create(&ReasonLabel { reason: "overflow" })
            .clone();
        let hold_expired = rejected
            .get_or_create(&ReasonLabel { reason: "expired" })
            .clone();
        let workers_ready = Gauge::default();
        registry.register(
            "workers_ready",
            "Worker processes ready to serve",
            workers_ready.clone(),
        );
        let restarts = Family::<ReasonLabel, Counter>::default();
        registry.register("worker_restarts", "Workers replaced", restarts.clone());
        let restarts_crash = restarts
            .get_or_create(&ReasonLabel { reason: "crash" })
            .clone();
        let restarts_timeout = restarts
            .get_or_create(&ReasonLabel { reason: "timeout" })
            .clone();
        let isolations = Counter::default();
        registry.register(
            "isolations",
            "Times the pool switched to one invocation per worker after a worker died or got stuck",
            isolations.clone(),
        );
        Arc::new(Self {
            registry,
            by_class,
            duration,
            held,
            hold_overflow,
            hold_expired,
            workers_ready,
            restarts_crash,
            restarts_timeout,
            isolations,
        })
    }

    /// Counts one answered invocation.
    pub fn answered(&self, status: u16, seconds: f64) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].inc();
        self.duration.observe(seconds);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answered_counts_by_class() {
        let m = Metrics::new();
        m.answered(200, 0.001);
        m.answered(204, 0.001);
        m.answered(503, 0.001);
        let text = m.encode();
        assert!(
            text.contains("kipper_shim_invocations_total{status=\"2xx\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("kipper_shim_invocations_total{status=\"5xx\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("kipper_shim_invocation_duration_seconds_count 3"),
            "{text}"
        );
    }
}
