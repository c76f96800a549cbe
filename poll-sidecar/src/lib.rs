//! kipper-poll, the event-trigger sidecar of Kipper functions: claims events
//! from PostgreSQL, MySQL, a Redis list or an S3 bucket and POSTs each to the
//! function's `/event`, at-least-once (CONTRACT section 2).
//!
//! The request path mirrors the modules: [`config`] -> a [`source`] claims a
//! batch -> the [`pump`] hands each event to the [`delivery`] engine -> the
//! source acknowledges, dead-letters or releases it, and is closed at the end.
//! The MinIO [`webhook`] is the one ingress beside the pump: MinIO pushes
//! events, which it delivers with the same engine. [`admin`] serves
//! `/metrics`, `/healthz` and `/readyz`. SIGTERM ([`kipper_contract::shutdown`],
//! the one shutdown future of the three binaries) cancels the token [`run`]
//! takes, which starts the drain.

pub mod admin;
pub mod config;
pub mod delivery;
mod error;
pub mod health;
pub mod metrics;
pub mod pump;
pub mod source;
pub mod webhook;

pub use error::{Error, Result};

use tokio_util::sync::CancellationToken;

use crate::config::{Config, S3Mode, SourceConfig};
use crate::delivery::Deliverer;
use crate::health::{Backoff, SourceHealth};
use crate::metrics::Metrics;
use crate::pump::Pump;
use crate::source::Source;

/// Runs the sidecar until `shutdown` is cancelled and the drain is over.
///
/// A SQL source is connected, and every statement prepared, before the admin
/// port opens or anything is logged: a query or placeholder the database
/// refuses is bad configuration ([`Error::is_config`]), reported as the one
/// line of a refused start. A source that cannot be reached (down,
/// restarting, loading, refusing the login) is not: the admin port opens,
/// `/readyz` reports the outage, and the connection is retried with backoff
/// until it succeeds or SIGTERM ([`health`]); a SQL query first checked after
/// such a wait may still stop the start with exit code 2.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    match &config.source {
        SourceConfig::Postgres(sql) => {
            run_sql(&config, shutdown, "postgres", || {
                source::postgres::PostgresSource::connect(sql)
            })
            .await
        }
        SourceConfig::Mysql(sql) => {
            run_sql(&config, shutdown, "mysql", || {
                source::mysql::MysqlSource::connect(sql)
            })
            .await
        }
        SourceConfig::Redis(redis) => {
            let started = Started::new(&config, &shutdown, "redis").await?;
            let result = connect_and_pump(&config, &started, shutdown, || {
                source::redis::RedisSource::connect(redis)
            })
            .await;
            started.finish().await;
            result
        }
        SourceConfig::S3(s3) => {
            let started = Started::new(&config, &shutdown, "s3").await?;
            let result = match &s3.mode {
                S3Mode::Poll { .. } => {
                    connect_and_pump(&config, &started, shutdown, || {
                        source::s3::S3Source::connect(s3)
                    })
                    .await
                }
                S3Mode::Webhook {
                    token,
                    max_body,
                    timeout,
                } => {
                    let addr = std::net::SocketAddr::from(([0, 0, 0, 0], s3.webhook_port));
                    let policy = webhook::WebhookPolicy {
                        token: token.expose().to_owned(),
                        max_body: *max_body,
                    };
                    let delivery = webhook::Delivery {
                        deliverer: started.deliverer.clone(),
                        metrics: started.metrics.clone(),
                        permits: std::sync::Arc::new(tokio::sync::Semaphore::new(
                            config.delivery.concurrency,
                        )),
                        deadline: *timeout,
                    };
                    webhook::serve(addr, policy, delivery, config.pump.shutdown_grace, shutdown)
                        .await
                }
            };
            started.finish().await;
            result
        }
    }
}

/// Connects a source once the admin port is open, retrying until it answers,
/// and pumps it until shutdown (SIGTERM while connecting: `Ok`).
async fn connect_and_pump<S, F, Fut>(
    config: &Config,
    started: &Started,
    shutdown: CancellationToken,
    connect: F,
) -> Result<()>
where
    S: Source,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<S>>,
{
    match retry_connect(config, started, &shutdown, connect).await? {
        Some(source) => pump(source, config, started, shutdown).await,
        None => Ok(()),
    }
}

/// Connects a SQL source and pumps it until shutdown: bad configuration is
/// returned before anything listens; an unreachable server opens the admin
/// port and is retried until it answers (SIGTERM while waiting: `Ok`).
async fn run_sql<S, F, Fut>(
    config: &Config,
    shutdown: CancellationToken,
    kind: &'static str,
    mut connect: F,
) -> Result<()>
where
    S: Source,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<S>>,
{
    // Bad configuration (a refused query) stops the start before the admin port opens.
    let (source, started) = match connect().await {
        Ok(source) => (source, Started::new(config, &shutdown, kind).await?),
        Err(error) if error.is_config() => return Err(error),
        Err(error) => {
            let started = Started::new(config, &shutdown, kind).await?;
            started.health.failed(&error);
            match retry_connect(config, &started, &shutdown, connect).await? {
                Some(source) => (source, started),
                None => {
                    started.finish().await;
                    return Ok(());
                }
            }
        }
    };
    let result = pump(source, config, &started, shutdown).await;
    started.finish().await;
    result
}

/// Calls `connect` until it succeeds, with backoff capped at the poll
/// interval, reporting the outage into the health; bad configuration is
/// returned at once. `None`: SIGTERM came first.
async fn retry_connect<S, F, Fut>(
    config: &Config,
    started: &Started,
    shutdown: &CancellationToken,
    mut connect: F,
) -> Result<Option<S>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<S>>,
{
    let mut backoff = Backoff::new(config.pump.poll_interval);
    loop {
        if started.health.down().is_some() {
            tokio::select! {
                () = tokio::time::sleep(backoff.next_wait()) => {}
                () = shutdown.cancelled() => return Ok(None),
            }
        }
        let attempt = tokio::select! {
            attempt = connect() => attempt,
            () = shutdown.cancelled() => return Ok(None),
        };
        match attempt {
            Ok(source) => {
                started.health.ok();
                return Ok(Some(source));
            }
            Err(error) if error.is_config() => return Err(error),
            Err(error) => {
                started.metrics.source_errors.inc();
                started.health.failed(&error);
            }
        }
    }
}

/// What runs beside the source: metrics, the deliverer, the admin port.
struct Started {
    metrics: Metrics,
    deliverer: Deliverer,
    health: SourceHealth,
    admin: Option<tokio::task::JoinHandle<()>>,
}

impl Started {
    /// Opens the admin port and logs the start.
    async fn new(
        config: &Config,
        shutdown: &CancellationToken,
        kind: &'static str,
    ) -> Result<Self> {
        let metrics = Metrics::new();
        let deliverer = Deliverer::new(&config.delivery, metrics.clone());
        let health = SourceHealth::new(kind, metrics.clone());
        let admin = match config.admin {
            Some(addr) => Some(
                admin::serve(
                    addr,
                    metrics.clone(),
                    deliverer.clone(),
                    health.clone(),
                    shutdown.clone(),
                )
                .await?,
            ),
            None => None,
        };
        tracing::info!(
            message = "kipper-poll starting.",
            function = %config.function_name,
            // Not `target`: that key is the tracing target in a JSON line.
            target_url = %config.delivery.target,
            concurrency = config.delivery.concurrency,
            batch_size = config.pump.batch_size,
        );
        Ok(Self {
            metrics,
            deliverer,
            health,
            admin,
        })
    }

    /// Waits for the admin port to close (it follows the shutdown token).
    async fn finish(self) {
        if let Some(admin) = self.admin {
            let _ = admin.await;
        }
    }
}

async fn pump<S: Source>(
    source: S,
    config: &Config,
    started: &Started,
    shutdown: CancellationToken,
) -> Result<()> {
    Pump::new(
        source,
        started.deliverer.clone(),
        config.pump.clone(),
        config.delivery.concurrency,
        started.metrics.clone(),
    )
    .with_health(started.health.clone())
    .run(shutdown)
    .await;
    Ok(())
}
