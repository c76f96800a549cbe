//! What finished deliveries mean: [`DeliveryTally`] turns each delivery result into the
//! delivery counters (shared by the pump and the MinIO webhook, so the metrics mean the same
//! whatever the ingress), and [`Settlement`] sorts the pump's events into what the source must
//! acknowledge, dead-letter or take back.

use tokio::time::Instant;

use crate::delivery::Settled;
use crate::metrics::Metrics;
use crate::source::{Claimed, DeadLetter};

/// Delivery counters accumulated since they were last added to the metrics: the metrics are
/// updated once per batch, not once per event.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryTally {
    /// Events that got a 2xx.
    pub delivered: u64,
    /// Failed attempts.
    pub failed_attempts: u64,
    /// Attempts that retried an earlier failed one.
    pub retries: u64,
}

impl DeliveryTally {
    /// Counts one finished delivery.
    pub fn count(&mut self, settled: &Settled) {
        match *settled {
            Settled::Delivered { attempts } => {
                let earlier = u64::from(attempts).saturating_sub(1);
                self.delivered += 1;
                self.failed_attempts += earlier;
                self.retries += earlier;
            }
            Settled::Dead { attempts, .. } => {
                self.failed_attempts += u64::from(attempts);
                self.retries += u64::from(attempts).saturating_sub(1);
            }
            // Kept as the pump always counted it; see the report of issue 11 on whether a
            // cancelled event's last attempt and its retries should count too.
            Settled::Cancelled { attempts } => {
                self.failed_attempts += u64::from(attempts).saturating_sub(1);
            }
        }
    }

    /// Adds the counts to `metrics` and starts again from zero.
    pub fn flush(&mut self, metrics: &Metrics) {
        let tally = std::mem::take(self);
        metrics.delivered.inc_by(tally.delivered);
        metrics.failed.inc_by(tally.failed_attempts);
        metrics.retried.inc_by(tally.retries);
    }
}

/// What finished deliveries left to tell the source.
pub(super) struct Settlement<H> {
    /// Delivered: to acknowledge.
    pub(super) done: Vec<Claimed<H>>,
    /// Out of attempts: to dead-letter.
    pub(super) dead: Vec<DeadLetter<H>>,
    /// Not delivered (shutdown, or the claim was lost): to give back.
    pub(super) cancelled: Vec<Claimed<H>>,
    /// When the oldest unsettled done/dead event finished.
    pub(super) since: Option<Instant>,
    /// Counters not yet in the metrics.
    pub(super) tally: DeliveryTally,
}

impl<H> Settlement<H> {
    pub(super) fn new() -> Self {
        Self {
            done: Vec::new(),
            dead: Vec::new(),
            cancelled: Vec::new(),
            since: None,
            tally: DeliveryTally::default(),
        }
    }

    /// Files one finished delivery under what the source must do with it.
    pub(super) fn record(&mut self, event: Claimed<H>, settled: Settled) {
        if self.since.is_none() && !matches!(settled, Settled::Cancelled { .. }) {
            self.since = Some(Instant::now());
        }
        self.tally.count(&settled);
        match settled {
            Settled::Delivered { .. } => self.done.push(event),
            Settled::Dead { attempts, error } => self.dead.push(DeadLetter {
                event,
                attempts,
                error,
            }),
            Settled::Cancelled { .. } => self.cancelled.push(event),
        }
    }

    /// Events delivered or dead and not yet told to the source: the source holds them.
    pub(super) fn unsettled(&self) -> usize {
        self.done.len() + self.dead.len()
    }

    pub(super) fn take_done(&mut self) -> Vec<Claimed<H>> {
        if self.dead.is_empty() {
            self.since = None;
        }
        std::mem::take(&mut self.done)
    }

    pub(super) fn take_dead(&mut self) -> Vec<DeadLetter<H>> {
        if self.done.is_empty() {
            self.since = None;
        }
        std::mem::take(&mut self.dead)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::StatusCode;

    use crate::delivery::{Failure, FailureKind};

    use super::*;

    fn http_500() -> Failure {
        Failure::new(FailureKind::Status {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            body: String::new(),
        })
    }

    fn event(n: u32) -> Claimed<u32> {
        Claimed {
            id: format!("ev-{n}"),
            body: Bytes::new(),
            handle: n,
        }
    }

    #[test]
    fn tally_counts_attempts_per_outcome() {
        let mut tally = DeliveryTally::default();
        tally.count(&Settled::Delivered { attempts: 1 });
        tally.count(&Settled::Delivered { attempts: 3 });
        tally.count(&Settled::Dead {
            attempts: 4,
            error: http_500(),
        });
        tally.count(&Settled::Dead {
            attempts: 0,
            error: Failure::new(FailureKind::TooLarge { bytes: 1 }),
        });
        tally.count(&Settled::Cancelled { attempts: 2 });
        assert_eq!(
            tally,
            DeliveryTally {
                delivered: 2,
                failed_attempts: 2 + 4 + 1,
                retries: 2 + 3,
            }
        );
    }

    #[test]
    fn tally_flush_moves_the_counts_into_the_metrics() {
        let metrics = Metrics::new();
        let mut tally = DeliveryTally::default();
        tally.count(&Settled::Delivered { attempts: 2 });
        tally.flush(&metrics);
        tally.flush(&metrics);
        assert_eq!(tally, DeliveryTally::default());
        assert_eq!(metrics.delivered.get(), 1);
        assert_eq!(metrics.failed.get(), 1);
        assert_eq!(metrics.retried.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn settlement_sorts_events_and_remembers_the_oldest() {
        let mut settled = Settlement::new();
        settled.record(event(0), Settled::Cancelled { attempts: 0 });
        assert_eq!(settled.since, None, "a cancelled event waits for no batch");
        settled.record(event(1), Settled::Delivered { attempts: 1 });
        let first = Instant::now();
        tokio::time::advance(std::time::Duration::from_millis(20)).await;
        settled.record(
            event(2),
            Settled::Dead {
                attempts: 3,
                error: http_500(),
            },
        );
        assert_eq!(settled.since, Some(first));
        assert_eq!(
            (
                settled.done.len(),
                settled.dead.len(),
                settled.cancelled.len()
            ),
            (1, 1, 1)
        );
        assert_eq!(settled.unsettled(), 2);
        assert_eq!(settled.take_done().len(), 1);
        assert_eq!(settled.since, Some(first), "the dead one still waits");
        let dead = settled.take_dead();
        assert_eq!(
            (dead[0].attempts, dead[0].error.to_string().as_str()),
            (3, "HTTP 500")
        );
        assert_eq!(settled.since, None);
    }
}
