//! One HTTP request of the function's port, from arrival to answer:
//! reserved paths, the hold gate, the body limit, one framed invocation, the
//! per-invocation timeout, and the mapping of the worker's reply to HTTP.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use super::hold::{Admission, HoldGate};
use crate::metrics::Metrics;
use crate::pool::Pool;
use crate::pool::worker::{Delivery, Worker};
use crate::protocol::{self, BodyKind, FLAG_EVENT, Invoke};

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
    let resp = invoke(&app, req).await;
    app.metrics
        .answered(resp.status().as_u16(), started.elapsed().as_secs_f64());
    Ok(resp)
}

async fn invoke(app: &App, req: Request<Incoming>) -> Resp {
    // Refused before holding: a held request must not be one that will fail anyway.
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > app.body_limit as u64) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "the request body is larger than the limit of {} bytes (KIPPER_BODY_LIMIT)",
                app.body_limit
            ),
            None,
        );
    }
    match app.gate.admit().await {
        Admission::Ready => {}
        Admission::Failed(reason) => {
            let request_id = app.request_id(&req);
            tracing::error!(
                message = "answered 503: the handler failed to load",
                request_id,
                method = %req.method(),
                path = req.uri().path(),
                error = %reason
            );
            let mut resp = load_failed();
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                resp.headers_mut().insert(X_REQUEST_ID.clone(), v);
            }
            return resp;
        }
        Admission::Overflow => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the function is starting and too many requests are waiting; retry",
                Some(1),
            );
        }
        Admission::Expired => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the function did not start in time; retry",
                Some(1),
            );
        }
    }
    let request_id = app.request_id(&req);
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, app.body_limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "the request body is larger than the limit of {} bytes (KIPPER_BODY_LIMIT)",
                    app.body_limit
                ),
                None,
            );
        }
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the request body: {e}"),
                None,
            );
        }
    };
    let is_event = parts.method == Method::POST && parts.uri.path() == "/event";
    let body_kind = if body.is_empty() {
        BodyKind::Empty
    } else if is_event
        || parts
            .headers
            .get(CONTENT_TYPE)
            .is_some_and(|v| is_json(v.as_bytes()))
    {
        BodyKind::Json
    } else {
        BodyKind::Text
    };
    let mut headers = Vec::with_capacity(256);
    for (name, value) in &parts.headers {
        headers.extend_from_slice(name.as_str().as_bytes());
        headers.push(b':');
        headers.extend_from_slice(value.as_bytes());
        headers.push(b'\n');
    }
    if !headers.is_empty() {
        headers.pop();
    }
    // A request that never reached a dying worker is sent to another one;
    // one that did may have run, so it is answered 502, never replayed.
    let wait_until = Instant::now() + app.hold_timeout;
    let reply = loop {
        let wait = wait_until.saturating_duration_since(Instant::now());
        let Some(worker) = app.pool.worker(wait).await else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no worker is available; retry",
                Some(1),
            );
        };
        // The invocation's time starts once a worker takes it: neither the
        // cold-start hold nor the wait for a free worker counts against it.
        let invoked = Instant::now();
        let deadline_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| (d + app.timeout).as_millis() as u64)
            .unwrap_or(0);
        let frame = Invoke {
            id: 0,
            flags: if is_event { FLAG_EVENT } else { 0 },
            body_kind,
            deadline_ms,
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            headers: &headers,
            request_id: &request_id,
            body: &body,
        };
        let Some(mut ticket) = worker.invoke(frame) else {
            continue;
        };
        let remaining = app.timeout.saturating_sub(invoked.elapsed());
        let delivery = tokio::time::timeout(remaining, ticket.reply()).await;
        app.pool.freed();
        match delivery {
            Ok(Delivery::Reply(reply)) => break reply,
            Ok(Delivery::NotSent) => continue,
            Ok(Delivery::Lost) => return lost(app, &worker, &request_id).await,
            Err(_) => {
                // Answered alone: the worker is replaced only if it is stuck
                // (see pool::watchdog), not for this invocation's sake.
                ticket.abandon();
                tracing::warn!(
                    message = "invocation timed out",
                    request_id,
                    worker = worker.slot,
                    timeout_ms = app.timeout.as_millis() as u64
                );
                app.pool.timed_out(worker);
                return error(
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!(
                        "the handler did not answer within {:?} (KIPPER_TIMEOUT)",
                        app.timeout
                    ),
                    None,
                );
            }
        }
    };
    drop(headers);
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = Response::new(Full::new(reply.body.clone()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    if let Some(ct) = protocol::content_type(reply.content_type) {
        h.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    for (name, value) in reply.header_pairs() {
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            h.append(name, value);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert(X_REQUEST_ID.clone(), v);
    }
    resp
}

/// The answer to an invocation whose worker died under it: a failed attempt
/// (502, so kipper-poll counts it and dead-letters after its last attempt),
/// not "not ready" (503, which kipper-poll treats as backpressure).
async fn lost(app: &App, worker: &Worker, request_id: &str) -> Resp {
    app.pool.isolate("a worker exited during an invocation");
    let status = worker.exit_status(Duration::from_millis(500)).await;
    let status = status.as_deref().unwrap_or("exit status not known yet");
    tracing::warn!(
        message = "the worker exited during the invocation; not retried",
        request_id,
        worker = worker.slot,
        pid = worker.pid,
        %status
    );
    error(
        StatusCode::BAD_GATEWAY,
        &format!("the worker running this invocation exited ({status}); it was not retried"),
        None,
    )
}

fn is_json(content_type: &[u8]) -> bool {
    let ct = content_type
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default();
    let ct = ct.trim_ascii();
    ct.eq_ignore_ascii_case(b"application/json")
        || (ct.len() > 5 && ct[ct.len() - 5..].eq_ignore_ascii_case(b"+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json(b"application/json"));
        assert!(is_json(b"Application/JSON; charset=utf-8"));
        assert!(is_json(b"application/cloudevents+json"));
        assert!(!is_json(b"text/plain"));
        assert!(!is_json(b"application/jsonx"));
    }

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
