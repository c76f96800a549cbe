//! The HTTP side: binds the function's port before anything else (so the
//! container accepts connections from its first milliseconds), boots the pool
//! behind it, serves the admin port, and drains on shutdown.
//!
//! **Architecture Invariant:** the listener is bound before dependencies are
//! installed or a worker is spawned; nothing on the request path waits for the
//! pool except the [`hold`] gate.

mod admin;
pub mod handler;
pub mod hold;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use kipper_serve::{Drained, Server};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::oneshot;

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
    let (stop_admin, admin_stopped) = oneshot::channel::<()>();
    let admin_task = admin.map(|listener| {
        tokio::spawn(admin::serve(
            listener,
            pool.clone(),
            metrics.clone(),
            async {
                let _ = admin_stopped.await;
            },
        ))
    });

    let service = {
        let app = app.clone();
        service_fn(move |req: Request<Incoming>| handler::handle(app.clone(), req))
    };
    let connections = Server::new("function")
        .serve(listener, service, shutdown)
        .await;
    tracing::info!(
        message = "draining",
        held = app.gate.held(),
        open = connections.open(),
        grace_s = config.shutdown_grace.as_secs_f64()
    );
    if let Drained::Cut { open } = connections.drain(config.shutdown_grace).await {
        tracing::warn!(
            message = "grace period over; closed the remaining connections",
            open
        );
    }
    pool.stop().await;
    // The admin port answers until the pool is stopped, so probes see the drain.
    let _ = stop_admin.send(());
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    tracing::info!(message = "stopped");
    Ok(())
}
