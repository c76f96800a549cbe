//! The controller's HTTP endpoints: `/health`, `/ready`, `/metrics`, and
//! `/pending/<namespace>/<function>` (KEDA `metrics-api` for minio functions:
//! `{"pending": N}`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use kipper_serve::{Drained, Server};
use tokio::net::TcpListener;
use tracing::warn;

use crate::metrics::Metrics;
use crate::{Error, Result};

/// Counts a function's pending changes: `(namespace, function) -> count`.
pub type PendingCounter =
    Arc<dyn Fn(String, String) -> Pin<Box<dyn Future<Output = Result<u64>> + Send>> + Send + Sync>;

/// What the endpoints need.
#[derive(Clone)]
pub struct ServerState {
    /// Metrics to expose and update.
    pub metrics: Arc<Metrics>,
    /// The pending-changes counter.
    pub pending: PendingCounter,
    /// Whether the Kubernetes API answers (`/ready` fails while it does not).
    pub api: crate::controller::ApiHealth,
}

fn json(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Answers one request.
pub async fn handle(state: &ServerState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    route(state, req.method(), req.uri().path()).await
}

/// Routing, separate from hyper's body type so it is testable.
pub async fn route(state: &ServerState, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if method != Method::GET {
        return json(
            StatusCode::METHOD_NOT_ALLOWED,
            serde_json::json!({"error": "only GET is served"}),
        );
    }
    match path {
        "/health" => json(StatusCode::OK, serde_json::json!({"ok": true})),
        "/ready" if state.api.reachable() => json(StatusCode::OK, serde_json::json!({"ok": true})),
        "/ready" => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"ok": false, "reason": "cannot reach the Kubernetes API server"}),
        ),
        "/metrics" => {
            let mut resp = Response::new(Full::new(Bytes::from(state.metrics.encode())));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            resp
        }
        p if p.starts_with("/pending/") => {
            let parts: Vec<&str> = p["/pending/".len()..].split('/').collect();
            let [namespace, function] = parts.as_slice() else {
                return json(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"error": "use /pending/<namespace>/<function>"}),
                );
            };
            if !is_dns_label(namespace) || !is_dns_label(function) {
                return json(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"error": "namespace and function must be DNS labels"}),
                );
            }
            let result = (state.pending)((*namespace).to_owned(), (*function).to_owned()).await;
            state.metrics.observe_pending(result.as_ref().err());
            match result {
                Ok(n) => json(StatusCode::OK, serde_json::json!({"pending": n})),
                Err(e) => {
                    warn!(message = "Failed to count pending changes.", %namespace, %function, error = %e);
                    let status = match e {
                        Error::Invalid(_) | Error::UnknownService { .. } => StatusCode::NOT_FOUND,
                        _ => StatusCode::BAD_GATEWAY,
                    };
                    json(status, serde_json::json!({"error": e.to_string()}))
                }
            }
        }
        _ => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "not found"}),
        ),
    }
}

/// Serves on `listener` until `shutdown` resolves, then lets open connections finish for up
/// to `grace`.
pub async fn serve(
    listener: TcpListener,
    state: ServerState,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> Result<()> {
    let service = service_fn(move |req: Request<Incoming>| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(&state, &req).await) }
    });
    let connections = Server::new("controller")
        .serve(listener, service, shutdown)
        .await;
    if let Drained::Cut { open } = connections.drain(grace).await {
        warn!(
            message = "Connections still open after the grace period; closed them.",
            open
        );
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn state(result: fn() -> Result<u64>) -> ServerState {
        let api = crate::controller::ApiHealth::default();
        api.set(true);
        ServerState {
            metrics: Arc::new(Metrics::new()),
            pending: Arc::new(move |_, _| Box::pin(async move { result() })),
            api,
        }
    }

    async fn text(resp: Response<Full<Bytes>>) -> (u16, String) {
        let code = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (code, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn health_ready_metrics_and_errors() {
        let s = state(|| Ok(7));
        assert_eq!(
            text(route(&s, &Method::GET, "/health").await).await,
            (200, r#"{"ok":true}"#.into())
        );
        assert_eq!(text(route(&s, &Method::GET, "/ready").await).await.0, 200);
        s.api.set(false);
        let (code, body) = text(route(&s, &Method::GET, "/ready").await).await;
        assert_eq!(code, 503);
        assert!(body.contains("Kubernetes API"), "{body}");
        s.api.set(true);
        assert_eq!(text(route(&s, &Method::POST, "/health").await).await.0, 405);
        assert_eq!(text(route(&s, &Method::GET, "/nope").await).await.0, 404);
        assert_eq!(
            text(route(&s, &Method::GET, "/pending/a").await).await.0,
            400
        );
        assert_eq!(
            text(route(&s, &Method::GET, "/pending/ns/f").await).await,
            (200, r#"{"pending":7}"#.into())
        );
        let (_, metrics) = text(route(&s, &Method::GET, "/metrics").await).await;
        assert!(
            metrics.contains("kipper_controller_pending_requests_total"),
            "{metrics}"
        );
        let failing = state(|| Err(Error::S3("list s3://b: timeout".into())));
        let (code, body) = text(route(&failing, &Method::GET, "/pending/ns/f").await).await;
        assert_eq!(code, 502);
        assert!(body.contains("timeout"), "{body}");
    }

    #[tokio::test]
    async fn a_missing_function_is_404_a_broken_secret_502() {
        let missing = state(|| Err(Error::Invalid("no Function ns/f".into())));
        let (code, _) = text(route(&missing, &Method::GET, "/pending/ns/f").await).await;
        assert_eq!(code, 404);
        let broken = state(|| {
            Err(Error::MalformedObject {
                object: "Secret s3-credentials".into(),
                problem: "has no key \"accessKey\"".into(),
            })
        });
        let (code, body) = text(route(&broken, &Method::GET, "/pending/ns/f").await).await;
        assert_eq!(code, 502);
        assert!(
            body.contains(r#"Secret s3-credentials has no key \"accessKey\""#),
            "{body}"
        );
    }
}
