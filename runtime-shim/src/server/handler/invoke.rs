//! One invocation, in the order it happens: refuse a body declared over the limit, wait at the
//! hold gate, read the body ([`body`](super::body)), build the [`Call`], hand it to a worker
//! (again to another worker if the first died before it was sent), and turn the worker's reply
//! into the HTTP answer.
//!
//! Each step answers the request itself when it cannot go on (`Err(answer)`), so [`invoke`]
//! reads as the list of steps. Nothing here allocates per request beyond what the steps always
//! needed: the request id, the flattened headers and the collected body.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use super::body::{check_declared_length, read_body};
use super::call::Call;
use super::{App, Resp, X_REQUEST_ID, error, load_failed};
use crate::pool::worker::{Delivery, Worker};
use crate::protocol::{self, Reply};
use crate::server::hold::Admission;

/// Runs one request of the function's port through the handler.
pub(super) async fn invoke(app: &App, req: Request<Incoming>) -> Resp {
    // Refused before holding: a held request must not be one that will fail anyway.
    if let Err(refusal) = check_declared_length(req.headers(), app.body_limit) {
        return refusal.answer(app.body_limit);
    }
    if let Err(answer) = admit(app, &req).await {
        return answer;
    }
    let request_id = app.request_id(&req);
    let (parts, body) = req.into_parts();
    let body = match read_body(body, app.body_limit).await {
        Ok(body) => body,
        Err(refusal) => return refusal.answer(app.body_limit),
    };
    let reply = {
        // The flattened headers live only as long as the call.
        let call = Call::new(&parts, &body, &request_id);
        match dispatch(app, &call).await {
            Ok(reply) => reply,
            Err(answer) => return answer,
        }
    };
    respond(reply, &request_id)
}

/// Waits at the hold gate until a worker can take requests; answers 503 when none will.
async fn admit(app: &App, req: &Request<Incoming>) -> Result<(), Resp> {
    match app.gate.admit().await {
        Admission::Ready => Ok(()),
        Admission::Failed(reason) => {
            let request_id = app.request_id(req);
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
            Err(resp)
        }
        Admission::Overflow => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the function is starting and too many requests are waiting; retry",
            Some(1),
        )),
        Admission::Expired => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the function did not start in time; retry",
            Some(1),
        )),
    }
}

/// What became of one attempt on one worker.
enum Attempt {
    /// The worker answered.
    Replied(Reply),
    /// The worker died before the request reached it: safe to send elsewhere.
    NotSent,
    /// The worker died with the request: it may have run, so it is never replayed.
    Lost,
    /// No answer within `KIPPER_TIMEOUT`; the ticket has been abandoned.
    TimedOut,
}

/// Hands the call to workers until one answers, dies with it, or times out.
async fn dispatch(app: &App, call: &Call<'_>) -> Result<Reply, Resp> {
    // A request that never reached a dying worker is sent to another one;
    // one that did may have run, so it is answered 502, never replayed.
    let wait_until = Instant::now() + app.hold_timeout;
    loop {
        let wait = wait_until.saturating_duration_since(Instant::now());
        let Some(worker) = app.pool.worker(wait).await else {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no worker is available; retry",
                Some(1),
            ));
        };
        match attempt(app, &worker, call).await {
            Attempt::Replied(reply) => return Ok(reply),
            Attempt::NotSent => continue,
            Attempt::Lost => return Err(lost(app, &worker, call.request_id).await),
            Attempt::TimedOut => return Err(timed_out(app, worker, call.request_id)),
        }
    }
}

/// One attempt: frame the call, send it, wait for the reply within the invocation's time.
async fn attempt(app: &App, worker: &Arc<Worker>, call: &Call<'_>) -> Attempt {
    // The invocation's time starts once a worker takes it: neither the
    // cold-start hold nor the wait for a free worker counts against it.
    let invoked = Instant::now();
    let deadline_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| (d + app.timeout).as_millis() as u64)
        .unwrap_or(0);
    let Some(mut ticket) = worker.invoke(call.frame(deadline_ms)) else {
        return Attempt::NotSent;
    };
    let remaining = app.timeout.saturating_sub(invoked.elapsed());
    let delivery = tokio::time::timeout(remaining, ticket.reply()).await;
    app.pool.freed();
    match delivery {
        Ok(Delivery::Reply(reply)) => Attempt::Replied(reply),
        Ok(Delivery::NotSent) => Attempt::NotSent,
        Ok(Delivery::Lost) => Attempt::Lost,
        Err(_) => {
            ticket.abandon();
            Attempt::TimedOut
        }
    }
}

/// The answer to an invocation that timed out: 504 for this request alone.
fn timed_out(app: &App, worker: Arc<Worker>, request_id: &str) -> Resp {
    // Answered alone: the worker is replaced only if it is stuck
    // (see pool::watchdog), not for this invocation's sake.
    tracing::warn!(
        message = "invocation timed out",
        request_id,
        worker = worker.slot,
        timeout_ms = app.timeout.as_millis() as u64
    );
    app.pool.timed_out(worker);
    error(
        StatusCode::GATEWAY_TIMEOUT,
        &format!(
            "the handler did not answer within {:?} (KIPPER_TIMEOUT)",
            app.timeout
        ),
        None,
    )
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

/// The worker's reply as the HTTP answer: its status, content type and headers, plus the
/// request id.
fn respond(mut reply: Reply, request_id: &str) -> Resp {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = Response::new(Full::new(std::mem::take(&mut reply.body)));
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
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(X_REQUEST_ID.clone(), v);
    }
    resp
}
