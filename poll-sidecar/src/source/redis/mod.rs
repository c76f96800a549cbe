//! The Redis trigger (`KIPPER_TRIGGER=redis`): a reliable queue on the list `KIPPER_REDIS_LIST`.
//! Upstream `LPOP`ed an item before delivering it, so any failure lost it; here an item moves
//! atomically into a processing list owned by this consumer and leaves it only after a 2xx (or
//! into the dead-letter list after the last attempt). See [`queue`] for the keys and scripts.
//!
//! A background task renews this consumer's heartbeat and returns the items of consumers whose
//! heartbeat expired (SIGKILLed pods, lost nodes) to the list; nothing needs doing by hand.

pub mod item;
pub mod queue;
mod scripts;

use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

use self::queue::{QueueKeys, RedisQueue};
use super::{Claimed, DeadLetter, Source};
use crate::config::{RedisConfig, RedisConnection};
use crate::{Error, Result};

fn redis_error(context: &str, error: &redis::RedisError) -> Error {
    Error::Source {
        kind: "redis",
        message: format!("{context}: {error}"),
    }
}

/// The `redis` crate's connection info for `conn`. The password goes from the (secret) config
/// straight into the client, never through a URL string that could end up in a log.
pub fn connection_info(conn: &RedisConnection) -> Result<ConnectionInfo> {
    let addr = if conn.tls {
        ConnectionAddr::TcpTls {
            host: conn.host.clone(),
            port: conn.port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(conn.host.clone(), conn.port)
    };
    let mut settings = RedisConnectionInfo::default().set_db(conn.db);
    if let Some(user) = &conn.username {
        settings = settings.set_username(user);
    }
    if let Some(password) = &conn.password {
        settings = settings.set_password(password.expose());
    }
    let info = addr
        .into_connection_info()
        .map_err(|e| redis_error("connection settings", &e))?;
    Ok(info.set_redis_settings(settings))
}

/// A connection to `conn` that reconnects by itself after a network failure.
pub async fn connect(conn: &RedisConnection) -> Result<ConnectionManager> {
    let client =
        redis::Client::open(connection_info(conn)?).map_err(|e| redis_error("client", &e))?;
    // A claim of a big batch or a 5 MB item takes longer than the crate's 500 ms default.
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(30)))
        // Reconnects after a network failure retry a few times, then the call fails and the
        // pump retries after the poll interval; a first connection that fails stops the start.
        .set_number_of_retries(3);
    client
        .get_connection_manager_with_config(config)
        .await
        .map_err(|e| {
            redis_error(
                &format!("connecting to {}:{} (db {})", conn.host, conn.port, conn.db),
                &e,
            )
        })
}

/// The consumer id of this process: the pod name (`HOSTNAME`) plus a random suffix, so that a
/// restarted container never mistakes the previous one's items for its own.
pub fn consumer_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "kipper-poll".into());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .collect();
    format!("{host}-{:08x}", rand::random::<u32>())
}

/// The Redis list source.
pub struct RedisSource {
    queue: RedisQueue,
    /// Renews the heartbeat and recovers orphans; stopped by `close`, or when the source is
    /// dropped.
    keeper: Option<tokio::task::JoinHandle<()>>,
    /// Items handed to the pump and not yet settled.
    held: usize,
    /// Delivered items whose `LREM` failed (Redis unreachable): retried with the next call, so
    /// a delivered item does not sit in the processing list until the next restart.
    unacked: Vec<Bytes>,
}

impl std::fmt::Debug for RedisSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSource")
            .field("keys", self.queue.keys())
            .finish_non_exhaustive()
    }
}

impl Drop for RedisSource {
    fn drop(&mut self) {
        // Without heartbeats the lease expires and any other consumer (or the next start)
        // returns what is still held; the pump released everything it could before this.
        if let Some(keeper) = &self.keeper {
            keeper.abort();
        }
    }
}

impl RedisSource {
    /// Connects, registers this consumer and returns orphaned items to the list.
    pub async fn connect(config: &RedisConfig) -> Result<Self> {
        let con = connect(&config.connection).await?;
        let consumer = config.consumer.clone().unwrap_or_else(consumer_id);
        let keys = QueueKeys::new(&config.list, config.dead_list.as_deref(), &consumer);
        let queue = RedisQueue::new(con, keys, config.lease);
        queue
            .heartbeat()
            .await
            .map_err(|e| redis_error("registering the consumer", &e))?;
        let recovered = queue
            .recover_orphans()
            .await
            .map_err(|e| redis_error("recovering orphans", &e))?;
        tracing::info!(
            message = "Redis queue ready.",
            list = %config.list,
            consumer = %consumer,
            dead_list = %queue.keys().dead,
            recovered,
        );
        let keeper = tokio::spawn(keep_alive(queue.clone(), config.lease));
        Ok(Self {
            queue,
            keeper: Some(keeper),
            held: 0,
            unacked: Vec::new(),
        })
    }

    /// The queue (tests and benchmarks inspect its keys).
    pub fn queue(&self) -> &RedisQueue {
        &self.queue
    }
}

impl RedisSource {
    async fn flush_unacked(&mut self) -> Result<()> {
        if self.unacked.is_empty() {
            return Ok(());
        }
        self.queue
            .ack(&self.unacked)
            .await
            .map_err(|e| redis_error("acknowledge", &e))?;
        self.unacked.clear();
        Ok(())
    }

    /// Nothing is held, yet the processing list is not empty: a claim whose reply was lost (the
    /// connection broke after the script ran). Give those items back to the list.
    async fn return_strays(&mut self) -> Result<()> {
        let strays = self
            .queue
            .held_in_redis()
            .await
            .map_err(|e| redis_error("processing list length", &e))?;
        if strays > 0 {
            let returned = self
                .queue
                .leave()
                .await
                .map_err(|e| redis_error("returning stray items", &e))?;
            tracing::warn!(
                message = "Returned items of a claim whose reply was lost.",
                returned
            );
        }
        Ok(())
    }
}

/// Renew the heartbeat three times per lease and return dead consumers' items to the list.
async fn keep_alive(queue: RedisQueue, lease: Duration) {
    let mut tick = tokio::time::interval((lease / 3).max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match queue.heartbeat().await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                message = "Heartbeat had expired: this consumer stalled longer than the lease; items it held may be delivered twice.",
                consumer = %queue.keys().consumer,
            ),
            Err(error) => tracing::warn!(message = "Heartbeat failed.", %error),
        }
        match queue.recover_orphans().await {
            Ok(0) => {}
            Ok(recovered) => tracing::info!(
                message = "Returned items of dead consumers to the list.",
                recovered
            ),
            Err(error) => tracing::warn!(message = "Orphan recovery failed.", %error),
        }
    }
}

impl Source for RedisSource {
    type Handle = Bytes;

    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn claim(&mut self, max: usize) -> Result<Vec<Claimed<Bytes>>> {
        self.flush_unacked().await?;
        let items = self
            .queue
            .claim(max)
            .await
            .map_err(|e| redis_error("claim", &e))?;
        if items.is_empty() && self.held == 0 {
            self.return_strays().await?;
        }
        self.held += items.len();
        let list = &self.queue.keys().list;
        Ok(items
            .into_iter()
            .map(|item| Claimed {
                id: item::event_id(list, &item),
                body: item::event_body(&item),
                handle: item,
            })
            .collect())
    }

    async fn ack(&mut self, events: &[Claimed<Bytes>]) -> Result<()> {
        self.held = self.held.saturating_sub(events.len());
        self.unacked.extend(events.iter().map(|e| e.handle.clone()));
        self.flush_unacked().await
    }

    async fn dead_letter(&mut self, events: &[DeadLetter<Bytes>]) -> Result<()> {
        self.held = self.held.saturating_sub(events.len());
        let letters: Vec<queue::DeadLetter> = events
            .iter()
            .map(|d| queue::DeadLetter {
                item: d.event.handle.clone(),
                error: d.error.to_string(),
                attempts: d.attempts,
            })
            .collect();
        self.queue
            .dead_letter(&letters)
            .await
            .map_err(|e| redis_error("dead-letter", &e))?;
        Ok(())
    }

    async fn release(&mut self, events: &[Claimed<Bytes>]) -> Result<()> {
        self.held = self.held.saturating_sub(events.len());
        let items: Vec<Bytes> = events.iter().map(|e| e.handle.clone()).collect();
        self.queue
            .release(&items)
            .await
            .map_err(|e| redis_error("release", &e))
    }

    /// Whatever is still held (an acknowledgement that failed) goes back to the list now rather
    /// than after the lease, and this consumer leaves the registry.
    async fn close(&mut self) -> Result<()> {
        // The heartbeat stops first: a renewal after leaving would register this consumer again.
        if let Some(keeper) = self.keeper.take() {
            keeper.abort();
            let _ = keeper.await;
        }
        let returned = self
            .queue
            .leave()
            .await
            .map_err(|e| redis_error("leaving the queue", &e))?;
        tracing::info!(message = "Left the Redis queue.", returned);
        Ok(())
    }

    async fn backlog(&mut self) -> Result<Option<u64>> {
        self.queue
            .backlog()
            .await
            .map(Some)
            .map_err(|e| redis_error("backlog", &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn conn(tls: bool) -> RedisConnection {
        RedisConnection {
            host: "cache".into(),
            port: 6380,
            username: Some("app".into()),
            password: Some(Secret::new("pw")),
            db: 3,
            tls,
        }
    }

    #[test]
    fn connection_info_carries_login_db_and_tls() {
        let info = connection_info(&conn(false)).unwrap();
        assert_eq!(info.addr(), &ConnectionAddr::Tcp("cache".into(), 6380));
        assert_eq!(info.redis_settings().db(), 3);
        assert_eq!(info.redis_settings().username(), Some("app"));
        assert_eq!(info.redis_settings().password(), Some("pw"));
        let tls = connection_info(&conn(true)).unwrap();
        assert!(
            matches!(tls.addr(), ConnectionAddr::TcpTls { host, port: 6380, insecure: false, .. } if host == "cache")
        );
    }

    #[test]
    fn consumer_ids_are_unique_and_key_safe() {
        let (a, b) = (consumer_id(), consumer_id());
        assert_ne!(a, b);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        );
    }
}
