//! Every metric of kipper-poll, served on the admin port's `/metrics` in the
//! Prometheus text format. Counters are bumped once per batch by the pump, not
//! per event; only the latency histogram is observed per delivery attempt.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Label of the readiness gate's state: `open`, `startup`, `refused` or `unavailable`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GateLabel {
    /// The state.
    pub state: &'static str,
}

/// Label of a readiness probe's result: `ready`, `refused`, `http_<status>`, `timeout`
/// or `error` (at most a few dozen values).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabel {
    /// The result.
    pub result: String,
}

/// Every state of the gate, so that `/metrics` shows all of them (one at 1).
pub const GATE_STATES: [&str; 4] = ["open", "startup", "refused", "unavailable"];

/// The metrics; cheap to clone (every field is an `Arc` inside).
#[derive(Clone)]
pub struct Metrics {
    /// Events that got a 2xx.
    pub delivered: Counter,
    /// Failed delivery attempts (non-2xx, timeout, refused).
    pub failed: Counter,
    /// Attempts that were retries of an earlier failed one.
    pub retried: Counter,
    /// Events that exhausted their attempts.
    pub dead_lettered: Counter,
    /// Events acknowledged to the source (mark-done and friends).
    pub acked: Counter,
    /// Events claimed and not yet acknowledged, dead-lettered or released.
    pub in_flight: Gauge,
    /// Events waiting in the source, when the source can count them.
    pub backlog: Gauge,
    /// 1 while the target accepts deliveries, 0 while it is not ready.
    pub target_ready: Gauge,
    /// 1 for the readiness gate's current state, 0 for the others.
    pub gate_state: Family<GateLabel, Gauge>,
    /// Readiness probes made while the gate was closed, by result.
    pub readiness_probes: Family<ProbeLabel, Counter>,
    /// Duration of one delivery attempt, request to response.
    pub delivery_seconds: Histogram,
    /// Errors talking to the source (claim, ack, reconnects).
    pub source_errors: Counter,
    /// 1 while the source answers, 0 during an outage (see [`crate::health`]).
    pub source_up: Gauge,
    /// Outages of the source that ended: the source was reached again.
    pub source_reconnects: Counter,
    registry: Arc<Registry>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric under the `kipper_poll` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kipper_poll");
        let delivered = Counter::default();
        let failed = Counter::default();
        let retried = Counter::default();
        let dead_lettered = Counter::default();
        let acked = Counter::default();
        let in_flight = Gauge::default();
        let backlog = Gauge::default();
        let target_ready = Gauge::default();
        let source_errors = Counter::default();
        let gate_state = Family::<GateLabel, Gauge>::default();
        let readiness_probes = Family::<ProbeLabel, Counter>::default();
        let source_up = Gauge::default();
        let source_reconnects = Counter::default();
        // 100 µs .. ~26 s: a local handler answers in well under a millisecond,
        // a slow one in seconds.
        let delivery_seconds = Histogram::new([
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 5.0, 10.0, 30.0,
        ]);
        registry.register(
            "events_delivered",
            "Events that got a 2xx",
            delivered.clone(),
        );
        registry.register(
            "delivery_failures",
            "Failed delivery attempts",
            failed.clone(),
        );
        registry.register(
            "delivery_retries",
            "Delivery attempts that retried a failed one",
            retried.clone(),
        );
        registry.register(
            "events_dead_lettered",
            "Events that exhausted their attempts",
            dead_lettered.clone(),
        );
        registry.register(
            "events_acked",
            "Events removed from the source after delivery",
            acked.clone(),
        );
        registry.register(
            "events_in_flight",
            "Events claimed and not yet settled",
            in_flight.clone(),
        );
        registry.register(
            "source_backlog",
            "Events waiting in the source",
            backlog.clone(),
        );
        registry.register(
            "target_ready",
            "1 while the target accepts deliveries",
            target_ready.clone(),
        );
        registry.register(
            "gate_state",
            "1 for the readiness gate's current state (open, startup, refused, unavailable)",
            gate_state.clone(),
        );
        registry.register(
            "readiness_probes",
            "Readiness probes of the target while the gate was closed, by result",
            readiness_probes.clone(),
        );
        registry.register(
            "source_errors",
            "Errors talking to the source",
            source_errors.clone(),
        );
        registry.register(
            "source_up",
            "1 while the source answers, 0 while it is unreachable",
            source_up.clone(),
        );
        registry.register(
            "source_reconnects",
            "Times the source was reached again after an outage (restart, lost connection, unreachable at start)",
            source_reconnects.clone(),
        );
        registry.register(
            "delivery_duration_seconds",
            "Duration of one delivery attempt",
            delivery_seconds.clone(),
        );
        Self {
            delivered,
            failed,
            retried,
            dead_lettered,
            acked,
            in_flight,
            backlog,
            target_ready,
            gate_state,
            readiness_probes,
            delivery_seconds,
            source_errors,
            source_up,
            source_reconnects,
            registry: Arc::new(registry),
        }
    }

    /// Sets the gate's state: `state` to 1, every other to 0.
    pub fn set_gate(&self, state: &'static str) {
        for s in GATE_STATES {
            self.gate_state
                .get_or_create(&GateLabel { state: s })
                .set(i64::from(s == state));
        }
        self.target_ready.set(i64::from(state == "open"));
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_with_the_prefix() {
        let metrics = Metrics::new();
        metrics.delivered.inc_by(3);
        metrics.delivery_seconds.observe(0.002);
        let text = metrics.render();
        for name in [
            "kipper_poll_events_delivered_total 3",
            "kipper_poll_delivery_failures_total",
            "kipper_poll_delivery_retries_total",
            "kipper_poll_events_dead_lettered_total",
            "kipper_poll_events_in_flight",
            "kipper_poll_source_backlog",
            "kipper_poll_source_up",
            "kipper_poll_source_reconnects_total",
            "kipper_poll_delivery_duration_seconds_bucket",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
        metrics.set_gate("refused");
        metrics
            .readiness_probes
            .get_or_create(&ProbeLabel {
                result: "http_404".into(),
            })
            .inc();
        let text = metrics.render();
        for name in [
            "kipper_poll_gate_state{state=\"refused\"} 1",
            "kipper_poll_gate_state{state=\"open\"} 0",
            "kipper_poll_target_ready 0",
            "kipper_poll_readiness_probes_total{result=\"http_404\"} 1",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
