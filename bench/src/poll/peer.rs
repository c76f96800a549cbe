//! The job queues a user would run instead of kipper-poll, on the same source server: for
//! PostgreSQL graphile-worker and pg-boss, for Redis BullMQ. Each is a Node adapter in
//! `bench/peers/` (`seed` adds N jobs holding the same JSON rows; `work` runs the queue's worker
//! posting each job to the same no-op handler, or doing nothing in process). This side seeds
//! through the adapter, counts what is left straight from the queue's tables or keys, and
//! drops them afterwards. The drain itself is measured by `poll::run`, as for kipper-poll.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::Context as _;
use redis::aio::MultiplexedConnection;

use super::Backlog;

/// A queue under comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueuePeer {
    /// npm graphile-worker (PostgreSQL).
    GraphileWorker,
    /// npm pg-boss (PostgreSQL).
    PgBoss,
    /// npm bullmq (Redis).
    BullMq,
}

impl QueuePeer {
    /// The peers of the `bench-poll` source named `source`.
    pub fn of_source(source: &str) -> &'static [QueuePeer] {
        match source {
            "postgres" => &[QueuePeer::GraphileWorker, QueuePeer::PgBoss],
            "redis" => &[QueuePeer::BullMq],
            _ => &[],
        }
    }

    /// Its package name.
    pub fn name(self) -> &'static str {
        match self {
            QueuePeer::GraphileWorker => "graphile-worker",
            QueuePeer::PgBoss => "pg-boss",
            QueuePeer::BullMq => "bullmq",
        }
    }

    /// How the adapter runs it, for the notes under the table.
    pub fn describe(self) -> &'static str {
        match self {
            QueuePeer::GraphileWorker => {
                "concurrentJobs = concurrency, localQueue.size = batch, completeJobBatchDelay 0"
            }
            QueuePeer::PgBoss => {
                "4 work() loops of batchSize = batch, pollingIntervalSeconds 0.5 (its minimum)"
            }
            QueuePeer::BullMq => "Worker concurrency = concurrency, removeOnComplete",
        }
    }
}

/// One peer's queue on the source server: where it is and how to reach it.
pub struct PeerBacklog {
    peer: QueuePeer,
    url: String,
    node_modules: PathBuf,
    /// Schema (PostgreSQL) or queue name (Redis) of the current run.
    name: String,
    pg: Option<tokio_postgres::Client>,
    redis: Option<MultiplexedConnection>,
    /// Jobs per fetch, for the adapters that batch.
    pub batch_size: usize,
    /// Jobs in flight.
    pub concurrency: usize,
}

impl std::fmt::Debug for PeerBacklog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerBacklog")
            .field("peer", &self.peer)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PeerBacklog {
    /// `peer` on the source server at `url`, with the npm packages in `node_modules`.
    pub fn new(
        peer: QueuePeer,
        url: String,
        node_modules: PathBuf,
        batch_size: usize,
        concurrency: usize,
    ) -> Self {
        Self {
            peer,
            url,
            node_modules,
            name: String::new(),
            pg: None,
            redis: None,
            batch_size,
            concurrency,
        }
    }

    /// The adapter run in `mode` (`seed` or `work`), its environment set.
    pub fn command(&self, mode: &str, target: Option<&str>, rows: u64) -> Command {
        let mut cmd = Command::new("node");
        cmd.arg(crate::peers::scripts().join(format!("{}.js", self.peer.name())))
            .arg(mode)
            .env("NODE_PATH", &self.node_modules)
            .env("PEER_URL", &self.url)
            .env("PEER_NAME", &self.name)
            .env("PEER_ROWS", rows.to_string())
            .env("PEER_TARGET", target.unwrap_or(""))
            .env("PEER_CONCURRENCY", self.concurrency.to_string())
            .env("PEER_BATCH", self.batch_size.to_string());
        cmd
    }

    /// Its package name.
    pub fn peer(&self) -> QueuePeer {
        self.peer
    }
}

impl Backlog for PeerBacklog {
    async fn seed(&mut self, rows: u64) -> anyhow::Result<()> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .subsec_nanos();
        self.name = format!(
            "bench_{}_{}_{nanos:x}",
            self.peer.name().replace('-', "_"),
            std::process::id()
        );
        let status = self
            .command("seed", None, rows)
            .stdout(Stdio::null())
            .status()
            .with_context(|| format!("seeding {} (node)", self.peer.name()))?;
        anyhow::ensure!(status.success(), "seeding {} failed", self.peer.name());
        match self.peer {
            QueuePeer::GraphileWorker | QueuePeer::PgBoss => {
                let (client, connection) =
                    tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
                        .await
                        .with_context(|| format!("PostgreSQL at {}", self.url))?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!(
                        "ANALYZE {}.{}",
                        self.name,
                        match self.peer {
                            QueuePeer::GraphileWorker => "_private_jobs",
                            _ => "job",
                        }
                    ))
                    .await?;
                self.pg = Some(client);
            }
            QueuePeer::BullMq => {
                let client = redis::Client::open(self.url.as_str())?;
                self.redis = Some(client.get_multiplexed_async_connection().await?);
            }
        }
        let seeded = self.remaining().await?;
        anyhow::ensure!(
            seeded == rows,
            "seeding {} left {seeded} pending jobs, not {rows}",
            self.peer.name()
        );
        Ok(())
    }

    async fn remaining(&mut self) -> anyhow::Result<u64> {
        if let Some(pg) = &self.pg {
            // graphile-worker deletes a job when it completes; pg-boss marks it completed.
            let sql = match self.peer {
                QueuePeer::GraphileWorker => {
                    format!("SELECT count(*) FROM {}._private_jobs", self.name)
                }
                _ => format!(
                    "SELECT count(*) FROM {}.job WHERE state IN ('created', 'retry', 'active')",
                    self.name
                ),
            };
            let n: i64 = pg.query_one(&sql, &[]).await?.get(0);
            return Ok(u64::try_from(n)?);
        }
        if let Some(con) = &mut self.redis {
            let key = |k: &str| format!("bull:{}:{k}", self.name);
            let (wait, active, prioritized, delayed): (u64, u64, u64, u64) = redis::pipe()
                .cmd("LLEN")
                .arg(key("wait"))
                .cmd("LLEN")
                .arg(key("active"))
                .cmd("ZCARD")
                .arg(key("prioritized"))
                .cmd("ZCARD")
                .arg(key("delayed"))
                .query_async(con)
                .await?;
            return Ok(wait + active + prioritized + delayed);
        }
        anyhow::bail!("{} was not seeded", self.peer.name())
    }

    async fn cleanup(&mut self) {
        if let Some(pg) = self.pg.take() {
            let _ = pg
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
                .await;
        }
        if let Some(mut con) = self.redis.take() {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("bull:{}:*", self.name))
                .query_async(&mut con)
                .await
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<()> =
                    redis::cmd("DEL").arg(keys).query_async(&mut con).await;
            }
        }
    }
}
