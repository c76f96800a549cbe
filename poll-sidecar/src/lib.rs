//! kipper-poll, the event-trigger sidecar of Kipper functions: claims events
//! from PostgreSQL, MySQL, a Redis list or an S3 bucket and POSTs each to the
//! function's `/event`, at-least-once (CONTRACT section 2).
//!
//! The request path mirrors the modules: [`config`] -> a [`source`] claims a
//! batch -> the [`pump`] hands each event to the [`delivery`] engine -> the
//! source acknowledges, dead-letters or releases it. [`admin`] serves
//! `/metrics`, `/healthz` and `/readyz`; [`shutdown`] turns SIGTERM into the
//! drain.

pub mod admin;
pub mod config;
pub mod delivery;
mod error;
pub mod metrics;
pub mod pump;
pub mod shutdown;
pub mod source;

pub use error::{Error, Result};

use tokio_util::sync::CancellationToken;

use crate::config::{Config, S3Mode, SourceConfig};
use crate::delivery::Deliverer;
use crate::metrics::Metrics;
use crate::pump::Pump;
use crate::source::Source;

/// Runs the sidecar until `shutdown` is cancelled and the drain is over.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    let metrics = Metrics::new();
    let deliverer = Deliverer::new(&config.delivery, metrics.clone());
    let admin = match config.admin {
        Some(addr) => {
            Some(admin::serve(addr, metrics.clone(), deliverer.clone(), shutdown.clone()).await?)
        }
        None => None,
    };
    tracing::info!(
        message = "kipper-poll starting.",
        function = %config.function_name,
        target = %config.delivery.target,
        concurrency = config.delivery.concurrency,
        batch_size = config.pump.batch_size,
    );
    let result = match &config.source {
        SourceConfig::Postgres(sql) => {
            pump(
                source::postgres::PostgresSource::connect(sql).await?,
                &config,
                deliverer,
                metrics,
                shutdown,
            )
            .await
        }
        SourceConfig::Mysql(sql) => {
            pump(
                source::mysql::MysqlSource::connect(sql).await?,
                &config,
                deliverer,
                metrics,
                shutdown,
            )
            .await
        }
        SourceConfig::Redis(redis) => {
            // Connecting retries a while (a Redis that is restarting); SIGTERM need not wait.
            let source = tokio::select! {
                source = source::redis::RedisSource::connect(redis) => source?,
                () = shutdown.cancelled() => return Ok(()),
            };
            let queue = source.queue().clone();
            let result = pump(source, &config, deliverer, metrics, shutdown).await;
            // Whatever is still held (an acknowledgement that failed) goes back to the list
            // now rather than after the lease, and this consumer leaves the registry.
            match queue.leave().await {
                Ok(returned) => tracing::info!(message = "Left the Redis queue.", returned),
                Err(error) => {
                    tracing::warn!(message = "Leaving the Redis queue failed; the lease returns what was held.", %error)
                }
            }
            result
        }
        SourceConfig::S3(s3) => match &s3.mode {
            S3Mode::Poll { .. } => {
                let source = source::s3::S3Source::connect(s3).await?;
                let lease = source.lease_releaser();
                let result = pump(source, &config, deliverer, metrics, shutdown).await;
                // Another replica (or the next pod) takes over now, not after the lease expires.
                if let Err(error) = lease.release().await {
                    tracing::warn!(message = "Releasing the bucket lease failed; it expires by itself.", %error);
                }
                result
            }
            S3Mode::Webhook {
                token,
                max_body,
                timeout,
            } => {
                let addr = std::net::SocketAddr::from(([0, 0, 0, 0], s3.webhook_port));
                let policy = source::s3::webhook::WebhookPolicy {
                    token: token.expose().to_owned(),
                    max_body: *max_body,
                };
                let delivery = source::s3::webhook::Delivery {
                    deliverer,
                    metrics,
                    permits: std::sync::Arc::new(tokio::sync::Semaphore::new(
                        config.delivery.concurrency,
                    )),
                    deadline: *timeout,
                };
                source::s3::webhook::serve(
                    addr,
                    policy,
                    delivery,
                    config.pump.shutdown_grace,
                    shutdown,
                )
                .await
            }
        },
    };
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    result
}

async fn pump<S: Source>(
    source: S,
    config: &Config,
    deliverer: Deliverer,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<()> {
    Pump::new(
        source,
        deliverer,
        config.pump.clone(),
        config.delivery.concurrency,
        metrics,
    )
    .run(shutdown)
    .await;
    Ok(())
}
