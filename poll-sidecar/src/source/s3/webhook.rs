//! Webhook mode of the MinIO trigger: a receiver for MinIO's webhook notification target
//! (`notify_webhook` with `auth_token`), upstream-compatible but fixed. Upstream never exposed
//! or authenticated it; here every POST must carry `Authorization: Bearer <token>`, bodies are
//! bounded, and MinIO gets a 2xx only when the function accepted every record of the request:
//! otherwise MinIO keeps the event in its own queue and retries, so nothing is lost.
//!
//! Answers: 200 all records delivered; 400 not a MinIO event; 401 no token; 403 wrong token;
//! 413 body over the limit; 502 the function did not accept a record (after the retries that fit
//! in MinIO's request); 503 shutting down.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::checkpoint::RESERVED_PREFIX;
use crate::delivery::{Deliverer, Settled};
use crate::metrics::Metrics;
use crate::{Error, Result};

/// How the receiver checks and bounds requests.
#[derive(Clone)]
pub struct WebhookPolicy {
    /// The token MinIO sends (its `auth_token`), without `Bearer `.
    pub token: String,
    /// Largest accepted body, in bytes.
    pub max_body: usize,
}

impl std::fmt::Debug for WebhookPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookPolicy")
            .field("token", &"***")
            .field("max_body", &self.max_body)
            .finish()
    }
}

/// One record to deliver: its id for the idempotency header and the record itself.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRecord {
    /// Stable id of the change: bucket, key and etag (or sequencer for deletions).
    pub id: String,
    /// The S3 event record, passed on unchanged.
    pub record: Value,
}

/// Why a request was refused before any delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The status answered.
    pub status: StatusCode,
    /// The reason, sent as `{"error": reason}`.
    pub reason: String,
}

fn refuse(status: StatusCode, reason: impl Into<String>) -> Refusal {
    Refusal {
        status,
        reason: reason.into(),
    }
}

/// Check the `Authorization` header against the token, in constant time.
pub fn authorize(header: Option<&[u8]>, token: &str) -> Result<(), Refusal> {
    let Some(value) = header else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "missing Authorization: Bearer <token> (MinIO auth_token)",
        ));
    };
    // MinIO sends "Bearer <token>"; accept the scheme in any case, as RFC 7235 says.
    let presented = match value.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => &value[7..],
        _ => value,
    };
    if constant_time_eq(presented, token.as_bytes()) {
        Ok(())
    } else {
        Err(refuse(StatusCode::FORBIDDEN, "wrong bearer token"))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Lengths leak, contents do not: every byte is compared whatever the first difference.
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The records of a MinIO webhook body `{"EventName", "Key", "Records": [...]}`, skipping
/// Kipper's reserved objects (a poll-mode checkpoint in the same bucket is no event).
pub fn parse(body: &[u8]) -> Result<Vec<WebhookRecord>, Refusal> {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}")))?;
    let records = doc
        .get("Records")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            refuse(
                StatusCode::BAD_REQUEST,
                "not a MinIO event: no \"Records\" array",
            )
        })?;
    let mut out = Vec::with_capacity(records.len());
    for (i, record) in records.iter().enumerate() {
        let object = &record["s3"]["object"];
        let (Some(bucket), Some(key)) = (
            record["s3"]["bucket"]["name"].as_str(),
            object["key"].as_str(),
        ) else {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                format!("Records[{i}] lacks s3.bucket.name or s3.object.key"),
            ));
        };
        // Keys arrive URL-encoded (MinIO uses query escaping: '/' is %2F, ' ' is '+').
        let decoded: String = url::form_urlencoded::parse(format!("k={key}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if decoded.starts_with(RESERVED_PREFIX) {
            continue;
        }
        let version = object["eTag"]
            .as_str()
            .filter(|e| !e.is_empty())
            .or_else(|| object["sequencer"].as_str())
            .unwrap_or_default();
        let event = record["eventName"].as_str().unwrap_or_default();
        out.push(WebhookRecord {
            id: format!("s3:{bucket}/{decoded}@{version}:{event}"),
            record: record.clone(),
        });
    }
    Ok(out)
}

fn answer(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// Handle one request: authorize, read the bounded body, parse it, and deliver every record
/// through `deliver` (which retries as the delivery policy says and returns the last error).
pub async fn handle<D, F>(
    request: Request<Incoming>,
    policy: Arc<WebhookPolicy>,
    deliver: D,
) -> Result<Response<Full<Bytes>>, Infallible>
where
    D: Fn(Vec<WebhookRecord>) -> F,
    F: Future<Output = Result<usize, String>>,
{
    // MinIO probes the endpoint (HEAD) when the target is configured; the probe carries nothing.
    if request.method() == Method::HEAD || request.method() == Method::GET {
        return Ok(answer(StatusCode::OK, &json!({"ok": true})));
    }
    if request.method() != Method::POST {
        return Ok(answer(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "POST MinIO events here"}),
        ));
    }
    let auth = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if let Err(r) = authorize(auth, &policy.token) {
        return Ok(answer(r.status, &json!({"error": r.reason})));
    }
    let too_large = json!({"error": format!("body over the limit of {} bytes", policy.max_body)});
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > policy.max_body) {
        return Ok(answer(StatusCode::PAYLOAD_TOO_LARGE, &too_large));
    }
    let body = match Limited::new(request.into_body(), policy.max_body)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return Ok(answer(StatusCode::PAYLOAD_TOO_LARGE, &too_large));
        }
        Err(e) => {
            return Ok(answer(
                StatusCode::BAD_REQUEST,
                &json!({"error": format!("reading the body: {e}")}),
            ));
        }
    };
    let records = match parse(&body) {
        Ok(records) => records,
        Err(r) => return Ok(answer(r.status, &json!({"error": r.reason}))),
    };
    Ok(match deliver(records).await {
        Ok(delivered) => answer(StatusCode::OK, &json!({"delivered": delivered})),
        Err(error) => answer(
            StatusCode::BAD_GATEWAY,
            &json!({"error": format!("the function did not accept the event: {error}")}),
        ),
    })
}

/// What the receiver needs to deliver records.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The shared delivery engine (pool, timeout, retries, readiness gate).
    pub deliverer: Deliverer,
    /// Counters of the admin port.
    pub metrics: Metrics,
    /// Deliveries in flight at once, over all requests.
    pub permits: Arc<Semaphore>,
    /// How long one MinIO request may wait for the function's verdict; MinIO retries after.
    pub deadline: Duration,
}

impl Delivery {
    /// Deliver every record, with retries, until each is accepted, one is dead or the deadline
    /// passes. Ok(n) only when all n were accepted. Shutdown does not cut a request short: the
    /// receiver's drain waits for it, bounded by the deadline and the grace period.
    pub async fn deliver_all(&self, records: Vec<WebhookRecord>) -> Result<usize, String> {
        let cancel = CancellationToken::new();
        let timer = {
            let cancel = cancel.clone();
            let deadline = self.deadline;
            tokio::spawn(async move {
                tokio::time::sleep(deadline).await;
                cancel.cancel();
            })
        };
        let count = records.len();
        let settled = futures::future::join_all(records.into_iter().map(|r| {
            let cancel = cancel.clone();
            async move {
                let Ok(_permit) = self.permits.acquire().await else {
                    return Settled::Cancelled { attempts: 0 };
                };
                let body = Bytes::from(r.record.to_string());
                self.deliverer
                    .deliver_with_retries(&r.id, &body, &cancel)
                    .await
            }
        }))
        .await;
        timer.abort();
        let mut first_error = None;
        let (mut delivered, mut dead, mut retried) = (0u64, 0u64, 0u64);
        for s in &settled {
            retried += u64::from(s.attempts().saturating_sub(1));
            match s {
                Settled::Delivered { .. } => delivered += 1,
                Settled::Dead { error, attempts } => {
                    dead += 1;
                    first_error
                        .get_or_insert_with(|| format!("{error} (after {attempts} attempts)"));
                }
                Settled::Cancelled { .. } => {
                    first_error
                        .get_or_insert_with(|| format!("not accepted within {:?}", self.deadline));
                }
            }
        }
        self.metrics.delivered.inc_by(delivered);
        self.metrics.retried.inc_by(retried);
        // A record MinIO will send again is not dead here: MinIO's queue keeps it.
        self.metrics
            .failed
            .inc_by(dead + (count as u64 - delivered - dead));
        match first_error {
            None => Ok(count),
            Some(error) => Err(error),
        }
    }
}

/// Bind `addr` and receive MinIO webhook requests until `shutdown`; then wait up to `grace` for
/// the requests in progress.
pub async fn serve(
    addr: SocketAddr,
    policy: WebhookPolicy,
    delivery: Delivery,
    grace: Duration,
    shutdown: CancellationToken,
) -> Result<()> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        Error::io(
            format!("binding the MinIO webhook port {addr} (KIPPER_MINIO_WEBHOOK_PORT)"),
            e,
        )
    })?;
    serve_on(listener, policy, delivery, grace, shutdown).await
}

/// [`serve`] on a bound listener (tests bind port 0).
pub async fn serve_on(
    listener: TcpListener,
    policy: WebhookPolicy,
    delivery: Delivery,
    grace: Duration,
    shutdown: CancellationToken,
) -> Result<()> {
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("webhook listener address", e))?;
    tracing::info!(message = "MinIO webhook receiver listening.", %addr, max_body = policy.max_body);
    let policy = Arc::new(policy);
    let delivery = Arc::new(delivery);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(message = "Webhook accept failed.", %error);
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (policy, delivery) = (policy.clone(), delivery.clone());
        let service = service_fn(move |request| {
            let (policy, delivery) = (policy.clone(), delivery.clone());
            async move {
                handle(request, policy, |records| {
                    let delivery = delivery.clone();
                    async move { delivery.deliver_all(records).await }
                })
                .await
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    tokio::select! {
        () = graceful.shutdown() => tracing::info!(message = "Webhook receiver drained."),
        () = tokio::time::sleep(grace) => tracing::warn!(message = "Webhook requests still open after the grace period; MinIO will retry them."),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_exactly() {
        assert_eq!(
            authorize(None, "t").unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        assert!(authorize(Some(b"Bearer s3cret"), "s3cret").is_ok());
        assert!(authorize(Some(b"bearer s3cret"), "s3cret").is_ok());
        assert_eq!(
            authorize(Some(b"Bearer s3cret2"), "s3cret")
                .unwrap_err()
                .status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            authorize(Some(b"Bearer "), "s3cret").unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            authorize(Some(b"Basic abc"), "s3cret").unwrap_err().status,
            StatusCode::FORBIDDEN
        );
    }

    fn minio_body(keys: &[&str]) -> Vec<u8> {
        let records: Vec<Value> = keys
            .iter()
            .map(|k| {
                json!({"eventName": "s3:ObjectCreated:Put",
                       "s3": {"bucket": {"name": "b"}, "object": {"key": k, "eTag": "e1", "size": 3}}})
            })
            .collect();
        json!({"EventName": "s3:ObjectCreated:Put", "Key": "b/x", "Records": records})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn parse_takes_records_and_skips_reserved_keys() {
        let records = parse(&minio_body(&[
            "in%2Fa+b.txt",
            ".kipper%2Fcheckpoints%2Ff.json",
        ]))
        .unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].id, "s3:b/in/a b.txt@e1:s3:ObjectCreated:Put");
        assert_eq!(records[0].record["s3"]["object"]["key"], "in%2Fa+b.txt");
    }

    #[test]
    fn parse_refuses_what_is_not_a_minio_event() {
        assert_eq!(parse(b"nope").unwrap_err().status, StatusCode::BAD_REQUEST);
        assert_eq!(
            parse(b"{\"Key\":\"b/k\"}").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        let bad = json!({"Records": [{"s3": {}}]}).to_string();
        assert!(
            parse(bad.as_bytes())
                .unwrap_err()
                .reason
                .contains("Records[0]")
        );
    }
}
