//! The delivery engine, shared by every source: POSTs one event to the
//! target over a pooled keep-alive HTTP/1.1 client, with a per-attempt
//! timeout, and retries failed attempts with backoff, jitter and
//! `Retry-After` up to a maximum number of attempts.
//!
//! Two entry points:
//! - [`Deliverer::deliver`]: exactly one attempt, the building block (the S3
//!   webhook receiver uses it to answer MinIO with the function's verdict).
//! - [`Deliverer::deliver_with_retries`]: attempts until a 2xx, the attempt
//!   cap (then [`Settled::Dead`]) or cancellation (shutdown).
//!
//! Every attempt carries `Idempotency-Key: <event id>` and
//! `Kipper-Attempt: <n>`. Refused connections and 503s close the readiness
//! [`Gate`] and are retried without counting against the cap: they say the
//! handler is not ready, not that the event is bad. Every other failure
//! counts, `Retry-After` or not: a 502 (kipper-shim: the worker died under
//! this request) or 504 is this event's failed attempt, so a poison event
//! that kills its worker reaches the cap and is dead-lettered.
//!
//! Attempts end in a typed [`Outcome`] ([`outcome`]): the gate and the retry
//! rule decide on its [`FailureKind`], and the text logged and dead-lettered
//! is rendered from it. Readiness probing lives in [`readiness`].

pub mod backoff;
pub mod gate;
pub mod outcome;
pub mod readiness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

pub use backoff::Backoff;
pub use gate::{Closed, Gate};
pub use outcome::{Failure, FailureKind, Outcome, Settled};
pub use readiness::ProbeResult;

use crate::config::DeliveryConfig;
use crate::metrics::Metrics;

/// The longest wait between attempts while the target is not ready (unless
/// it sends a longer Retry-After).
const NOT_READY_WAIT: Duration = Duration::from_secs(2);

/// The largest event body delivered; larger ones are dead-lettered unsent
/// (a row or item that size is a mistake, and memory is bounded).
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// Bytes of an error answer kept for the failure reason.
const REASON_BYTES: usize = 200;
/// The most the client reads of an answer; the rest is dropped with the connection.
const ANSWER_LIMIT: usize = 64 * 1024;

/// Delivers events to the target. Cheap to clone; clones share the
/// connection pool and the gate.
#[derive(Debug, Clone)]
pub struct Deliverer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: Client<HttpConnector, Full<Bytes>>,
    target: http::Uri,
    ready_url: Option<http::Uri>,
    timeout: Duration,
    max_attempts: u32,
    backoff: Backoff,
    gate: Gate,
    metrics: Metrics,
}

impl Deliverer {
    /// A deliverer for `config`, reporting into `metrics`.
    pub fn new(config: &DeliveryConfig, metrics: Metrics) -> Self {
        let mut connector = HttpConnector::new();
        // Events are small requests on a local connection: Nagle would add
        // delayed-ACK stalls to every one.
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(config.concurrency)
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Self {
            inner: Arc::new(Inner {
                client,
                target: config.target.clone(),
                ready_url: config.ready_url.clone(),
                timeout: config.timeout,
                max_attempts: config.max_attempts,
                backoff: Backoff {
                    initial: config.backoff_initial,
                    max: config.backoff_max,
                },
                gate: Gate::new(metrics.clone()),
                metrics,
            }),
        }
    }

    /// The readiness gate the pump waits on before claiming.
    pub fn gate(&self) -> &Gate {
        &self.inner.gate
    }

    /// Attempts one delivery of `body` with the headers of `id` and `attempt`.
    pub async fn deliver(&self, id: &str, attempt: u32, body: Bytes) -> Outcome {
        let inner = &*self.inner;
        let mut request = Request::post(inner.target.clone());
        if let Some(headers) = request.headers_mut() {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            if let Ok(key) = HeaderValue::from_str(id) {
                headers.insert("idempotency-key", key);
            }
            headers.insert("kipper-attempt", HeaderValue::from(attempt));
        }
        let Ok(request) = request.body(Full::new(body)) else {
            return failed(FailureKind::Unsendable {
                target: inner.target.clone(),
            });
        };
        let started = Instant::now();
        let outcome = match tokio::time::timeout(inner.timeout, inner.send(request)).await {
            Ok(outcome) => outcome,
            Err(_) => failed(FailureKind::Timeout(inner.timeout)),
        };
        inner
            .metrics
            .delivery_seconds
            .observe(started.elapsed().as_secs_f64());
        match &outcome {
            Outcome::Delivered => inner.gate.confirm(),
            Outcome::Failed(failure) if failure.is_unavailable() => {
                inner.gate.close(Closed::Unavailable);
            }
            Outcome::Failed(failure) if failure.is_not_ready() => {
                inner.gate.close(Closed::Refused);
            }
            // Any other answer (a 500 too) shows the handler is up and serving.
            Outcome::Failed(failure) if failure.target_answered() => inner.gate.confirm(),
            Outcome::Failed(_) => {}
        }
        outcome
    }

    /// Delivers until a 2xx, the attempt cap or `cancel`. Not-ready failures
    /// (refused, 503) are retried without counting, unless the ready URL says
    /// the target is ready, in which case a 503 is the handler's own verdict.
    pub async fn deliver_with_retries(
        &self,
        id: &str,
        body: &Bytes,
        cancel: &CancellationToken,
    ) -> Settled {
        self.deliver_fenced(id, body, cancel, None).await
    }

    /// [`Self::deliver_with_retries`], and no attempt starts once `fence` is
    /// cancelled: the source lost its claim on the event (a SQL session that
    /// ended with its server), so another replica may take it. An attempt
    /// already sent cannot be recalled; it ends within the delivery timeout.
    pub async fn deliver_fenced(
        &self,
        id: &str,
        body: &Bytes,
        cancel: &CancellationToken,
        fence: Option<&CancellationToken>,
    ) -> Settled {
        let inner = &*self.inner;
        if body.len() > MAX_EVENT_BYTES {
            // A bad event must not block the others: dead-letter it unsent.
            let error = Failure::new(FailureKind::TooLarge { bytes: body.len() });
            return Settled::Dead { attempts: 0, error };
        }
        let mut attempts = 0u32;
        let mut counted = 0u32;
        loop {
            if fence.is_some_and(CancellationToken::is_cancelled) {
                return Settled::Cancelled { attempts };
            }
            attempts += 1;
            let failure = match self.deliver(id, attempts, body.clone()).await {
                Outcome::Delivered => {
                    // Per delivery, so only at debug (RUST_LOG=kipper_poll=debug):
                    // a disabled callsite costs one cached check.
                    tracing::debug!(message = "Delivered.", id, attempts);
                    return Settled::Delivered { attempts };
                }
                Outcome::Failed(failure) => failure,
            };
            // A 503 counts only when the ready URL says the target is ready and
            // it asks for no Retry-After: then it is the handler's verdict on
            // this event, not a start-up state or backpressure.
            let counts = !failure.is_not_ready()
                || (failure.is_unavailable()
                    && failure.retry_after.is_none()
                    && inner.ready_url.is_some()
                    && self.probe().await.is_ready());
            if counts {
                counted += 1;
                if counted >= inner.max_attempts {
                    return Settled::Dead {
                        attempts,
                        error: failure,
                    };
                }
            }
            tracing::debug!(message = "Delivery failed; retrying.", id, attempts, reason = %failure);
            let wait = match (failure.retry_after, counts) {
                (Some(asked), _) => inner.backoff.wait_or(attempts, Some(asked)),
                (None, true) => inner.backoff.wait(counted),
                // Not ready: keep checking often, so delivery resumes soon
                // after the handler is up.
                (None, false) => inner.backoff.wait(attempts).min(NOT_READY_WAIT),
            };
            tokio::select! {
                () = cancel.cancelled() => return Settled::Cancelled { attempts },
                () = lost(fence) => return Settled::Cancelled { attempts },
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

impl Inner {
    async fn send(&self, request: Request<Full<Bytes>>) -> Outcome {
        let answer = match self.client.request(request).await {
            Ok(answer) => answer,
            Err(e) if e.is_connect() => {
                return failed(FailureKind::Refused {
                    target: self.target.clone(),
                    detail: e.to_string(),
                });
            }
            Err(e) => {
                return failed(FailureKind::Connection {
                    target: self.target.clone(),
                    detail: e.to_string(),
                });
            }
        };
        let status = answer.status();
        let retry_after = answer
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(backoff::parse_retry_after);
        // Read the answer to its end so the connection goes back to the pool;
        // keep the start of an error answer for the failure reason.
        let mut body = answer.into_body();
        let mut kept = Vec::new();
        let mut read = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let Ok(data) = frame.into_data() {
                read += data.len();
                if !status.is_success() && kept.len() < REASON_BYTES {
                    kept.extend_from_slice(&data[..data.len().min(REASON_BYTES - kept.len())]);
                }
                if read > ANSWER_LIMIT {
                    break;
                }
            }
        }
        if status.is_success() {
            return Outcome::Delivered;
        }
        let body = String::from_utf8_lossy(&kept).replace(['\n', '\r'], " ");
        Outcome::Failed(Failure {
            kind: FailureKind::Status { status, body },
            retry_after,
        })
    }
}

fn failed(kind: FailureKind) -> Outcome {
    Outcome::Failed(Failure::new(kind))
}

/// Resolves when the fence is cancelled; never without a fence (no allocation per event for
/// sources whose claims cannot be lost).
async fn lost(fence: Option<&CancellationToken>) {
    match fence {
        Some(fence) => fence.cancelled().await,
        None => std::future::pending().await,
    }
}
