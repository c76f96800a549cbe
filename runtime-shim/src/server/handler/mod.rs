//! One HTTP request of the function's port, from arrival to answer: the reserved paths
//! (`/health`, `/ready`) here, everything else through [`invoke`]'s steps (the body limit, the
//! hold gate, one framed invocation, the per-invocation timeout, and the mapping of the
//! worker's reply to HTTP). The answers the shim writes itself (errors, health, readiness) are
//! built here too, so every port words them the same way.

mod body;
mod call;
mod invoke;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use super::hold::HoldGate;
use crate::metrics::Metrics;
use crate::pool::Pool;

/// What every request needs, shared by all connections.
#[derive(Debug)]
pub struct App {
    /// The workers.
    pub pool: Arc<Pool>,
    /// Where requests wait during a cold start.
    pub gate: HoldGate,
    /// Counters and histograms.
    pub metrics: Arc<Metrics>,
    /// Per-invocation timeout.
    pub timeout: Duration,
    /// Longest wait for a worker (cold start or replacement).
    pub hold_timeout: Duration,
    /// Largest body accepted.
    pub body_limit: usize,
    id_prefix: u32,
    counter: AtomicU64,
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

impl App {
    /// The shared request state.
    pub fn new(
        pool: Arc<Pool>,
        gate: HoldGate,
        metrics: Arc<Metrics>,
        timeout: Duration,
        hold_timeout: Duration,
        body_limit: usize,
    ) -> Self {
        // Request ids only need to be unique across restarts of a pod: the
        // start time's low bits make a cheap per-process prefix.
        let id_prefix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
            .unwrap_or(0);
        Self {
            pool,
            gate,
            metrics,
            timeout,
            hold_timeout,
            body_limit,
            id_prefix,
            counter: AtomicU64::new(0),
        }
    }

    fn request_id(&self, req: &Request<Incoming>) -> String {
        if let Some(v) = req.headers().get(&X_REQUEST_ID)
            && v.len() <= 128
            && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
            && let Ok(s) = v.to_str()
        {
            return s.to_owned();
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{:08x}-{n:x}", self.id_prefix)
    }
}

type Resp = Response<Full<Bytes>>;

fn json(status: StatusCode, body: &'static str) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A JSON `{"error": message}` answer.
pub fn error(status: StatusCode, message: &str, retry_after: Option<u32>) -> Resp {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// `GET /ready` and the admin port's readiness.
pub fn readiness(pool: &Pool) -> Resp {
    match pool.state() {
        crate::pool::State::Ready => json(StatusCode::OK, r#"{"ready":true}"#),
        crate::pool::State::Starting => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the handler is starting",
            Some(1),
        ),
        // The reason (a stack, file paths) was logged when the load failed; callers of a
        // public port learn only that it failed.
        crate::pool::State::Failed(_) => load_failed(),
    }
}

/// The one line every caller gets while the handler has failed to load. The reason
/// stays in the log: a stack trace names files and lines an outsider has no business
/// seeing, and the operator reads it with `kip function logs`.
pub const LOAD_FAILED: &str = "the handler failed to load; the reason is in the function's log";

fn load_failed() -> Resp {
    error(StatusCode::SERVICE_UNAVAILABLE, LOAD_FAILED, Some(10))
}

/// `GET /health`: the process is alive (upstream answered exactly this).
pub fn health() -> Resp {
    json(StatusCode::OK, r#"{"ok":true}"#)
}

/// Serves one request of the function's port.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    if req.method() == Method::GET {
        match req.uri().path() {
            "/health" => return Ok(health()),
            "/ready" => return Ok(readiness(&app.pool)),
            _ => {}
        }
    }
    let started = Instant::now();
    let resp = invoke::invoke(&app, req).await;
    app.metrics
        .answered(resp.status().as_u16(), started.elapsed().as_secs_f64());
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_json_with_retry_after() {
        let resp = error(StatusCode::SERVICE_UNAVAILABLE, "say \"hi\"", Some(3));
        assert_eq!(resp.headers()[RETRY_AFTER], "3");
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
    }

    #[test]
    fn the_load_failure_line_is_one_line_without_paths() {
        assert!(!LOAD_FAILED.contains('\n'));
        assert!(!LOAD_FAILED.contains('/'));
    }
}
