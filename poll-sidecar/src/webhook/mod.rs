//! Webhook mode of the MinIO trigger: a receiver for MinIO's webhook notification target
//! (`notify_webhook` with `auth_token`), upstream-compatible but fixed. It is an ingress beside
//! the [`crate::pump`], not a [`crate::source::Source`]: MinIO pushes the events and keeps them
//! until it gets a 2xx, so there is nothing to claim, acknowledge or release. Deliveries use the
//! pump's [`Deliverer`] and are counted by the pump's [`DeliveryTally`]. Upstream never exposed
//! or authenticated it; here every POST must carry `Authorization: Bearer <token>`, bodies are
//! bounded, and MinIO gets a 2xx only when the function accepted every record of the request:
//! otherwise MinIO keeps the event in its own queue and retries, so nothing is lost.
//!
//! Answers: 200 all records delivered; 400 not a MinIO event; 401 no token; 403 wrong token;
//! 405 not a POST; 413 body over the limit; 502 the function did not accept a record within the
//! attempts and the deadline. A SIGTERM lets requests in progress finish (within the grace period).
//!
//! `payload.rs` checks the token and reads MinIO's body; this module serves and delivers.

mod payload;

pub use payload::{Refusal, WebhookRecord, authorize, parse};

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
use kipper_serve::{Drained, Server};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::delivery::{Deliverer, Settled};
use crate::metrics::Metrics;
use crate::pump::DeliveryTally;
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
        let mut tally = DeliveryTally::default();
        let mut first_error = None;
        for s in &settled {
            tally.count(s);
            match s {
                Settled::Delivered { .. } => {}
                Settled::Dead { error, attempts } => {
                    first_error
                        .get_or_insert_with(|| format!("{error} (after {attempts} attempts)"));
                }
                Settled::Cancelled { .. } => {
                    first_error
                        .get_or_insert_with(|| format!("not accepted within {:?}", self.deadline));
                }
            }
        }
        // A record that failed is not dead-lettered here: MinIO keeps it and sends it again.
        tally.flush(&self.metrics);
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
    let connections = Server::new("webhook")
        .serve(listener, service, shutdown.cancelled_owned())
        .await;
    match connections.drain(grace).await {
        Drained::Complete => tracing::info!(message = "Webhook receiver drained."),
        Drained::Cut { open } => tracing::warn!(
            message = "Webhook requests still open after the grace period; MinIO will retry them.",
            open
        ),
    }
    Ok(())
}
