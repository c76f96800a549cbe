//! The admin port: `/metrics` (Prometheus text), `/healthz` (the process is
//! alive) and `/readyz` (200 while the target accepts deliveries and the
//! source answers; 503 with the reason while the readiness gate is closed or
//! the source is unreachable).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use kipper_serve::Server;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::delivery::Deliverer;
use crate::health::SourceHealth;
use crate::metrics::Metrics;
use crate::{Error, Result};

/// Binds `addr` and serves the admin endpoints until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    deliverer: Deliverer,
    health: SourceHealth,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        Error::io(
            format!("binding the admin port {addr} (KIPPER_ADMIN_PORT; 0 disables it)"),
            e,
        )
    })?;
    tracing::info!(message = "Admin port listening.", %addr);
    let service = service_fn(move |request| {
        let answer = answer(&request, &metrics, &deliverer, &health);
        async move { Ok::<_, Infallible>(answer) }
    });
    Ok(tokio::spawn(async move {
        let connections = Server::new("admin")
            .serve(listener, service, shutdown.cancelled_owned())
            .await;
        connections.drain(ADMIN_GRACE).await;
    }))
}

/// How long a scrape or probe in progress at shutdown may take to finish. The answers are
/// built synchronously, so this only bounds a client that is slow to read.
const ADMIN_GRACE: Duration = Duration::from_secs(1);

fn answer(
    request: &Request<Incoming>,
    metrics: &Metrics,
    deliverer: &Deliverer,
    health: &SourceHealth,
) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match request.uri().path() {
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Bytes::from(metrics.render()),
        ),
        "/healthz" => (
            StatusCode::OK,
            "application/json",
            Bytes::from_static(b"{\"ok\":true}"),
        ),
        "/readyz" => match (health.down(), deliverer.gate().closed()) {
            (None, None) => (
                StatusCode::OK,
                "application/json",
                Bytes::from_static(b"{\"ready\":true}"),
            ),
            (Some(error), _) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "application/json",
                Bytes::from(
                    serde_json::json!({
                        "ready": false,
                        "reason": "SourceUnreachable",
                        "error": error,
                    })
                    .to_string(),
                ),
            ),
            (None, Some(why)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "application/json",
                Bytes::from(format!("{{\"ready\":false,\"reason\":\"{why:?}\"}}")),
            ),
        },
        _ => (
            StatusCode::NOT_FOUND,
            "application/json",
            Bytes::from_static(b"{\"error\":\"no such path; try /metrics, /healthz or /readyz\"}"),
        ),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}
