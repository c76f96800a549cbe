//! The admin port (`KIPPER_ADMIN_PORT`): `/metrics`, `/health` and `/ready` on a port of their
//! own, so probes and scrapes never queue behind function requests.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use kipper_serve::Server;
use tokio::net::TcpListener;

use super::handler;
use crate::metrics::Metrics;
use crate::pool::Pool;

/// Serves the admin endpoints on `listener` until `stop` resolves.
pub(super) async fn serve(
    listener: TcpListener,
    pool: Arc<Pool>,
    metrics: Arc<Metrics>,
    stop: impl Future<Output = ()>,
) {
    let service = service_fn(move |req: Request<Incoming>| {
        let resp = answer(&req, &pool, &metrics);
        async move { Ok::<_, Infallible>(resp) }
    });
    let connections = Server::new("admin").serve(listener, service, stop).await;
    // The shim is exiting: its pool is stopped, so no answer here is worth waiting for.
    drop(connections);
}

fn answer(req: &Request<Incoming>, pool: &Pool, metrics: &Metrics) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/metrics" => {
            let mut resp = Response::new(Full::new(Bytes::from(metrics.encode())));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            resp
        }
        "/health" => handler::health(),
        "/ready" => handler::readiness(pool),
        _ => handler::error(
            StatusCode::NOT_FOUND,
            "the admin port serves /metrics, /health and /ready",
            None,
        ),
    }
}
