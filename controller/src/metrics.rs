//! Prometheus metrics of the controller, served on `/metrics`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::Error;

/// Label of reconcile outcomes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `ok` or the error's reason.
    pub result: String,
}

/// Label of pending-count requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PendingLabel {
    /// `ok` or the error's reason.
    pub result: String,
}

/// Every metric of the controller.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabel, Counter>,
    reconcile_seconds: Histogram,
    pending_requests: Family<PendingLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kipper_controller");
        let reconciles = Family::<ResultLabel, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles of Functions by result",
            reconciles.clone(),
        );
        let reconcile_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        registry.register(
            "reconcile_duration_seconds",
            "Time of one reconcile",
            reconcile_seconds.clone(),
        );
        let pending_requests = Family::<PendingLabel, Counter>::default();
        registry.register(
            "pending_requests",
            "Requests of KEDA's metrics-api trigger for a bucket's pending changes",
            pending_requests.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_seconds,
            pending_requests,
        }
    }

    /// Records one reconcile.
    pub fn observe_reconcile(&self, took: Duration, error: Option<&Error>) {
        let result = error.map_or("ok", Error::reason).to_owned();
        self.reconciles.get_or_create(&ResultLabel { result }).inc();
        self.reconcile_seconds.observe(took.as_secs_f64());
    }

    /// Records one pending-count request.
    pub fn observe_pending(&self, error: Option<&Error>) {
        let result = error.map_or("ok", Error::reason).to_owned();
        self.pending_requests
            .get_or_create(&PendingLabel { result })
            .inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
