//! The HTTP side: binds the function's port before anything else (so the
//! container accepts connections from its first milliseconds), boots the pool
//! behind it, serves the admin port, and drains on shutdown.
//!
//! **Architecture Invariant:** the listener is bound before dependencies are
//! installed or a worker is spawned; nothing on the request path waits for the
//! pool except the [`hold`] gate.

pub mod handler;
pub mod hold;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpSocket};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::pool::Pool;
use crate::{Error, Result};
use handler::App;
use hold::HoldGate;

/// Binds with a deep accept backlog: at a cold start a burst of connections
/// arrives while the process is still busy starting its workers, and a full
/// backlog drops SYNs, which costs the client a one-second retransmission.
async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    let listen = || -> std::io::Result<TcpListener> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_nodelay(true)?;
        socket.bind(addr)?;
        socket.listen(BACKLOG)
    };
    listen().map_err(|source| Error::Bind { addr, source })
}

/// The kernel caps it at `net.core.somaxconn`.
const BACKLOG: u32 = 4096;

/// Serves until `shutdown` resolves, then drains within the grace period.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listener = bind(config.listen).await?;
    let local = listener.local_addr().map_err(|source| Error::Bind {
        addr: config.listen,
        source,
    })?;
    let admin = match config.admin {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    tracing::info!(
        message = "listening",
        addr = %local,
        admin = %admin.as_ref().and_then(|a| a.local_addr().ok()).map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
        handler = %config.handler.display(),
        runtime = config.runtime.name(),
        workers = config.workers
    );
    let metrics = Metrics::new();
    let pool = Pool::new(config.workers, metrics.clone());
    let gate = HoldGate::new(
        pool.clone(),
        metrics.clone(),
        config.hold_max,
        config.hold_timeout,
    );
    let app = Arc::new(App::new(
        pool.clone(),
        gate,
        metrics.clone(),
        config.timeout,
        config.hold_timeout,
        config.body_limit,
    ));
    {
        let pool = pool.clone();
        let config = config.clone();
        tokio::spawn(async move {
            if let Err(error) = pool.boot(&config).await {
                tracing::error!(message = "cannot start the handler", %error);
            }
        });
    }
    let admin_task =
        admin.map(|listener| tokio::spawn(serve_admin(listener, pool.clone(), metrics.clone())));

    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(conn) => conn,
                    Err(error) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(message = "accept failed", %error);
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Small answers must not wait for Nagle + delayed ACK (upstream's 40 ms).
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let conn = http.serve_connection(TokioIo::new(stream), service_fn(move |req: Request<Incoming>| handler::handle(app.clone(), req)));
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!(
        message = "draining",
        held = app.gate.held(),
        grace_s = config.shutdown_grace.as_secs_f64()
    );
    if tokio::time::timeout(config.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(message = "grace period over; closing the remaining connections");
    }
    pool.stop().await;
    if let Some(task) = admin_task {
        task.abort();
    }
    tracing::info!(message = "stopped");
    Ok(())
}

async fn serve_admin(listener: TcpListener, pool: Arc<Pool>, metrics: Arc<Metrics>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let pool = pool.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let resp = match req.uri().path() {
                    "/metrics" => {
                        let mut resp = http::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from(metrics.encode()),
                        ));
                        resp.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static(
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            ),
                        );
                        resp
                    }
                    "/health" => handler::health(),
                    "/ready" => handler::readiness(&pool),
                    _ => handler::error(
                        StatusCode::NOT_FOUND,
                        "the admin port serves /metrics, /health and /ready",
                        None,
                    ),
                };
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
