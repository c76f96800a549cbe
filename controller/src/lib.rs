//! kipper-controller: turns `kipper.run/v1alpha1` `Function` resources into the Kubernetes,
//! KEDA and Traefik objects that run them, and serves the `kip function` CLI.
//!
//! The crate is lean on purpose: it renders and applies; Kubernetes schedules and KEDA scales.
//! - [`crd`]: the `Function` resource (spec, status, defaults, validation).
//! - [`addons`]: typed KEDA, HTTP add-on and Traefik objects, written from `../shared/schemas/`.
//! - [`render`]: the pure renderer, `Function` + service facts -> objects; no cluster needed.
//! - [`controller`]: the reconcile loop (server-side apply, pruning, status, hostname checks).
//! - [`database`]: per-function databases created on bind.
//! - [`pending`]: counts a bucket's pending changes for KEDA's `metrics-api` trigger (minio).
//! - [`services`]: stateful services, bindings to apps, copy-data and shared volumes (pure).
//! - [`cli`]: the `kip function`, `kip service`, `kip volume` and `kip tunnel` commands.

pub mod addons;
pub mod cli;
pub mod config;
pub mod controller;
pub mod crd;
pub mod database;
pub mod error;
pub mod facts;
pub mod metrics;
pub mod pending;
pub mod render;
pub mod schedule;
pub mod server;
pub mod services;
pub mod telemetry;
pub mod yaml;

pub use error::{Error, Result};

use std::sync::Arc;

/// Runs the controller and its HTTP endpoints until `shutdown` resolves.
pub async fn run(
    config: config::ControllerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let client = kube::Client::try_default().await.map_err(|e| {
        Error::Unavailable(format!(
            "no Kubernetes API to talk to ({}): run in a cluster or set KUBECONFIG",
            error::describe_kube(&e)
        ))
    })?;
    let metrics = Arc::new(metrics::Metrics::new());
    let health = controller::ApiHealth::default();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Io {
            context: format!(
                "listen on {} (KIPPER_ADMIN_PORT, KIPPER_LISTEN)",
                config.listen
            ),
            source,
        })?;
    tracing::info!(message = "Serving.", listen = %config.listen);
    let pending_client = client.clone();
    let cache = Arc::new(pending::PendingCache::new(std::time::Duration::from_secs(
        2,
    )));
    let state = server::ServerState {
        metrics: metrics.clone(),
        api: health.clone(),
        pending: Arc::new(move |namespace, function| {
            let client = pending_client.clone();
            let cache = cache.clone();
            Box::pin(async move {
                let count = async {
                    let target = pending::resolve(&client, &namespace, &function).await?;
                    pending::count_pending(&target, &function).await
                };
                cache.get_or_count(&namespace, &function, count).await
            })
        }),
    };
    // One shutdown signal fans out to the controller and the server.
    let (tx, rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let server = tokio::spawn(server::serve(
        listener,
        state,
        stopped(rx.clone()),
        config.shutdown_grace,
    ));
    let ctl = tokio::spawn(controller::run(
        client,
        config.render,
        metrics,
        health,
        stopped(rx),
    ));
    shutdown.await;
    tracing::info!(message = "Shutting down.");
    let _ = tx.send(true);
    let _ = ctl.await;
    match server.await {
        Ok(r) => r,
        Err(source) => Err(Error::TaskFailed {
            task: "server",
            source,
        }),
    }
}
