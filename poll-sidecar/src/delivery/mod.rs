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

pub mod backoff;
pub mod gate;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

pub use backoff::Backoff;
pub use gate::{Closed, Gate};

use crate::config::DeliveryConfig;
use crate::metrics::Metrics;

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The target answered 2xx.
    Delivered,
    /// Anything else.
    Failed(Failure),
}

/// Why an attempt failed and what the target asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// One line, e.g. `HTTP 500: {"error":"boom"}` or `timed out after 30s`.
    pub reason: String,
    /// The target's `Retry-After`, if any.
    pub retry_after: Option<Duration>,
    /// Refused or 503: the target is not ready (the gate is now closed).
    pub not_ready: bool,
}

/// How an event's deliveries ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// A 2xx after `attempts` attempts.
    Delivered {
        /// Attempts made, the successful one included.
        attempts: u32,
    },
    /// The attempt cap was reached.
    Dead {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        error: String,
    },
    /// Shutdown came first, or the source revoked the event (its claim was
    /// lost: see [`Deliverer::deliver_fenced`]); no further attempt was made.
    Cancelled {
        /// Attempts made.
        attempts: u32,
    },
}

impl Settled {
    /// Attempts made, failed ones included.
    pub fn attempts(&self) -> u32 {
        match self {
            Self::Delivered { attempts }
            | Self::Dead { attempts, .. }
            | Self::Cancelled { attempts } => *attempts,
        }
    }
}

/// How long the gate stays shut after a 503 with nothing in flight before a
/// probe may let one batch try again.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(5);

/// The longest wait between attempts while the target is not ready (unless
/// it sends a longer Retry-After).
const NOT_READY_WAIT: Duration = Duration::from_secs(2);

/// How often, at most, a closed gate says in the log what the probe saw.
const NOT_READY_LOG_EVERY: Duration = Duration::from_secs(5);

/// The longest a readiness probe waits: a local handler that cannot accept a connection
/// or answer a GET within this is not ready, whatever the delivery timeout.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What one readiness probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    /// A 2xx from the ready URL, or (without one) an accepted TCP connection.
    Ready,
    /// Nothing listens on the port.
    Refused,
    /// The ready URL answered with this non-2xx status.
    Status(u16),
    /// No answer within the probe timeout.
    TimedOut,
    /// Anything else (DNS, reset, a malformed answer), in one line.
    Error(String),
}

impl ProbeResult {
    /// Whether the target looks ready.
    pub fn is_ready(&self) -> bool {
        *self == ProbeResult::Ready
    }

    /// The `result` label on `kipper_poll_readiness_probes_total`.
    pub fn label(&self) -> String {
        match self {
            ProbeResult::Ready => "ready".into(),
            ProbeResult::Refused => "refused".into(),
            ProbeResult::Status(code) => format!("http_{code}"),
            ProbeResult::TimedOut => "timeout".into(),
            ProbeResult::Error(_) => "error".into(),
        }
    }

    /// What an operator should do about it, when the result says.
    fn hint(&self) -> &'static str {
        match self {
            ProbeResult::Status(404) => {
                "the server has no such path: point KIPPER_TARGET_READY_URL at a path it serves \
                 (kip function create --health-path), or unset it for a TCP check"
            }
            ProbeResult::Status(503) => {
                "the handler says it is not ready (starting, or failed to load: see its log)"
            }
            ProbeResult::Refused => {
                "nothing listens yet: the function is starting, or not listening on the port of KIPPER_TARGET_URL"
            }
            _ => "",
        }
    }
}

impl std::fmt::Display for ProbeResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeResult::Ready => f.write_str("ready"),
            ProbeResult::Refused => f.write_str("connection refused"),
            ProbeResult::Status(code) => write!(f, "HTTP {code}"),
            ProbeResult::TimedOut => write!(f, "no answer within {PROBE_TIMEOUT:?}"),
            ProbeResult::Error(e) => f.write_str(e),
        }
    }
}

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
            return failed(format!("cannot build a request to {}", inner.target), false);
        };
        let started = Instant::now();
        let outcome = match tokio::time::timeout(inner.timeout, inner.send(request)).await {
            Ok(outcome) => outcome,
            Err(_) => failed(format!("timed out after {:?}", inner.timeout), false),
        };
        inner
            .metrics
            .delivery_seconds
            .observe(started.elapsed().as_secs_f64());
        match &outcome {
            Outcome::Delivered => inner.gate.confirm(),
            Outcome::Failed(Failure {
                not_ready: true,
                reason,
                ..
            }) => {
                inner.gate.close(if reason.starts_with("HTTP 503") {
                    Closed::Unavailable
                } else {
                    Closed::Refused
                });
            }
            // Any other answer (a 500 too) shows the handler is up and serving.
            Outcome::Failed(Failure { reason, .. }) if reason.starts_with("HTTP ") => {
                inner.gate.confirm()
            }
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
            let error = format!(
                "event of {} bytes exceeds the {MAX_EVENT_BYTES}-byte limit",
                body.len()
            );
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
            let counts = !failure.not_ready
                || (failure.reason.starts_with("HTTP 503")
                    && failure.retry_after.is_none()
                    && inner.ready_url.is_some()
                    && self.probe().await.is_ready());
            if counts {
                counted += 1;
                if counted >= inner.max_attempts {
                    return Settled::Dead {
                        attempts,
                        error: failure.reason,
                    };
                }
            }
            tracing::debug!(message = "Delivery failed; retrying.", id, attempts, reason = %failure.reason);
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

    /// What the readiness probe is: `GET <ready URL>`, or `TCP connect host:port`.
    pub fn probe_target(&self) -> String {
        let inner = &*self.inner;
        match &inner.ready_url {
            Some(url) => format!("GET {url}"),
            None => format!(
                "TCP connect {}:{}",
                inner.target.host().unwrap_or("localhost"),
                inner.target.port_u16().unwrap_or(80)
            ),
        }
    }

    /// Probes the target once: the ready URL should answer 2xx, or without one, the
    /// target's port should accept a connection.
    pub async fn probe(&self) -> ProbeResult {
        let inner = &*self.inner;
        match &inner.ready_url {
            Some(url) => {
                let Ok(request) = Request::get(url.clone()).body(Full::new(Bytes::new())) else {
                    return ProbeResult::Error(format!("cannot build a GET of {url}"));
                };
                let timeout = inner.timeout.min(PROBE_TIMEOUT);
                match tokio::time::timeout(timeout, inner.client.request(request)).await {
                    Ok(Ok(answer)) if answer.status().is_success() => ProbeResult::Ready,
                    Ok(Ok(answer)) => ProbeResult::Status(answer.status().as_u16()),
                    Ok(Err(e)) if e.is_connect() => ProbeResult::Refused,
                    Ok(Err(e)) => ProbeResult::Error(e.to_string()),
                    Err(_) => ProbeResult::TimedOut,
                }
            }
            None => {
                let host = inner.target.host().unwrap_or("localhost");
                let port = inner.target.port_u16().unwrap_or(80);
                let connect = tokio::net::TcpStream::connect((host, port));
                match tokio::time::timeout(inner.timeout.min(PROBE_TIMEOUT), connect).await {
                    Ok(Ok(_)) => ProbeResult::Ready,
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        ProbeResult::Refused
                    }
                    Ok(Err(e)) => ProbeResult::Error(e.to_string()),
                    Err(_) => ProbeResult::TimedOut,
                }
            }
        }
    }

    /// Waits until the gate is open, probing while it is closed for a reason
    /// a probe can clear, or until `cancel`. Returns false when cancelled.
    pub async fn wait_ready(&self, cancel: &CancellationToken) -> bool {
        let gate = self.gate();
        let mut wait = Duration::from_millis(50);
        let since = tokio::time::Instant::now();
        let mut last_log: Option<tokio::time::Instant> = None;
        while let Some(why) = gate.closed() {
            // After a 503 only a delivery proves readiness, but when none is
            // left in flight to prove it, a probe lets one batch try again
            // (half-open) every UNAVAILABLE_RETRY.
            let probe_clears = self.inner.ready_url.is_some()
                || why != Closed::Unavailable
                || since.elapsed() >= UNAVAILABLE_RETRY;
            if probe_clears {
                let result = self.probe().await;
                self.inner
                    .metrics
                    .readiness_probes
                    .get_or_create(&crate::metrics::ProbeLabel {
                        result: result.label(),
                    })
                    .inc();
                if result.is_ready() {
                    gate.open();
                    break;
                }
                // Say why nothing is delivered: at once, then every few seconds, so a
                // function that never becomes ready is never silent.
                if last_log.is_none_or(|t| t.elapsed() >= NOT_READY_LOG_EVERY) {
                    last_log = Some(tokio::time::Instant::now());
                    tracing::warn!(
                        message = "Target is not ready; nothing is claimed until it is.",
                        probe = %self.probe_target(),
                        result = %result,
                        gate = why.label(),
                        waited_ms = since.elapsed().as_millis() as u64,
                        hint = result.hint(),
                    );
                }
            } else if last_log.is_none_or(|t| t.elapsed() >= NOT_READY_LOG_EVERY) {
                last_log = Some(tokio::time::Instant::now());
                tracing::warn!(
                    message = "Target answered 503; nothing is claimed until it answers otherwise.",
                    target = %self.inner.target,
                    gate = why.label(),
                    waited_ms = since.elapsed().as_millis() as u64,
                );
            }
            tokio::select! {
                () = cancel.cancelled() => return false,
                () = gate.opened_within(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(2));
        }
        !cancel.is_cancelled()
    }
}

impl Inner {
    async fn send(&self, request: Request<Full<Bytes>>) -> Outcome {
        let answer = match self.client.request(request).await {
            Ok(answer) => answer,
            Err(e) if e.is_connect() => {
                return failed(format!("cannot connect to {}: {e}", self.target), true);
            }
            Err(e) => return failed(format!("request to {} failed: {e}", self.target), false),
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
        let text = String::from_utf8_lossy(&kept).replace(['\n', '\r'], " ");
        let reason = if text.is_empty() {
            format!("HTTP {}", status.as_u16())
        } else {
            format!("HTTP {}: {text}", status.as_u16())
        };
        Outcome::Failed(Failure {
            reason,
            retry_after,
            not_ready: status == StatusCode::SERVICE_UNAVAILABLE,
        })
    }
}

fn failed(reason: String, not_ready: bool) -> Outcome {
    Outcome::Failed(Failure {
        reason,
        retry_after: None,
        not_ready,
    })
}

/// Resolves when the fence is cancelled; never without a fence (no allocation per event for
/// sources whose claims cannot be lost).
async fn lost(fence: Option<&CancellationToken>) {
    match fence {
        Some(fence) => fence.cancelled().await,
        None => std::future::pending().await,
    }
}
