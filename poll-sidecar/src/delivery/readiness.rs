//! Readiness: whether the target can take events. A probe (`GET` of the
//! ready URL, or a TCP connect to the target's port) says what the target is
//! doing while the [`Gate`] is closed, and [`Deliverer::wait_ready`] holds the
//! pump until it opens, saying in the log why nothing is delivered.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tokio_util::sync::CancellationToken;

use super::{Closed, Deliverer};

/// How long the gate stays shut after a 503 with nothing in flight before a
/// probe may let one batch try again.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(5);

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

impl Deliverer {
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
