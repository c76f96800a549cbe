//! The Redis workload: a fresh list of N small JSON items (`RPUSH`ed, as producers do), drained
//! by kipper-poll's reliable queue. Two ceilings are measured in the same run: the queue's own
//! claim + acknowledge rate without HTTP, and "raw pop + direct POST" — `LPOP` batches POSTed
//! straight to the handler with no processing list and no acknowledgement, the fastest a
//! lossy consumer (upstream's design) could go on this machine.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kipper_poll::config::RedisConfig;
use kipper_poll::source::redis::RedisSource;
use redis::aio::MultiplexedConnection;

use super::{Workload, ceiling};

/// Items pushed per command while seeding.
const SEED_CHUNK: u64 = 10_000;

/// A Redis list source.
#[derive(Debug)]
pub struct RedisWorkload {
    url: String,
    list: String,
    batch_size: usize,
}

impl RedisWorkload {
    /// A workload on the Redis at `url`.
    pub fn new(url: String, batch_size: usize) -> Self {
        Self {
            url,
            list: String::new(),
            batch_size,
        }
    }

    async fn con(&self) -> anyhow::Result<MultiplexedConnection> {
        let client = redis::Client::open(self.url.as_str())
            .with_context(|| format!("Redis URL {}", self.url))?;
        client
            .get_multiplexed_async_connection()
            .await
            .with_context(|| format!("Redis at {}", self.url))
    }

    fn config(&self) -> anyhow::Result<RedisConfig> {
        use clap::Parser as _;
        let argv = [
            "kipper-poll".to_owned(),
            "--trigger=redis".to_owned(),
            format!("--redis-list={}", self.list),
            format!("--source-url={}", self.url),
        ];
        match kipper_poll::config::Args::try_parse_from(argv)?
            .into_config(&|_| None)?
            .source
        {
            kipper_poll::config::SourceConfig::Redis(config) => Ok(config),
            _ => anyhow::bail!("not a Redis config"),
        }
    }

    /// Raw pop + direct POST: `LPOP <batch>` and POST each item to `target` from `concurrency`
    /// workers sharing one buffer; nothing is kept, nothing acknowledged. Events per second.
    pub async fn raw_ceiling(
        &mut self,
        rows: u64,
        target: &str,
        concurrency: usize,
    ) -> anyhow::Result<f64> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(concurrency)
            .build(connector);
        let uri: http::Uri = target.parse()?;
        let shared = Arc::new(tokio::sync::Mutex::new((
            VecDeque::<Bytes>::new(),
            self.con().await?,
        )));
        let delivered = Arc::new(AtomicU64::new(0));
        let (list, batch) = (self.list.clone(), self.batch_size);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (client, uri, shared, delivered, list) = (
                client.clone(),
                uri.clone(),
                shared.clone(),
                delivered.clone(),
                list.clone(),
            );
            tasks.push(tokio::spawn(async move {
                loop {
                    let item = {
                        let mut guard = shared.lock().await;
                        if guard.0.is_empty() {
                            let items: Option<Vec<Vec<u8>>> = redis::cmd("LPOP")
                                .arg(&list)
                                .arg(batch)
                                .query_async(&mut guard.1)
                                .await?;
                            guard
                                .0
                                .extend(items.unwrap_or_default().into_iter().map(Bytes::from));
                        }
                        guard.0.pop_front()
                    };
                    let Some(item) = item else {
                        return anyhow::Ok(());
                    };
                    let request = http::Request::post(uri.clone())
                        .header("content-type", "application/json")
                        .body(Full::new(item))?;
                    let answer = client.request(request).await?;
                    let _ = answer.into_body().collect().await;
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for task in tasks {
            task.await??;
        }
        let done = delivered.load(Ordering::Relaxed);
        anyhow::ensure!(
            done == rows,
            "the raw ceiling delivered {done} of {rows} items"
        );
        Ok(done as f64
            / started
                .elapsed()
                .max(Duration::from_micros(1))
                .as_secs_f64())
    }
}

impl Workload for RedisWorkload {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn describe(&self) -> String {
        format!(
            "fresh list of small JSON items (~70 bytes, RPUSHed); reliable queue: Lua claim into a processing \
             list, pipelined LREM acks; kipper-poll batch {}",
            self.batch_size
        )
    }

    async fn seed(&mut self, rows: u64) -> anyhow::Result<()> {
        self.list = format!("bench-redis-{}-{:08x}", std::process::id(), rand_suffix());
        let mut con = self.con().await?;
        let mut start = 1;
        while start <= rows {
            let end = (start + SEED_CHUNK - 1).min(rows);
            let items: Vec<String> = (start..=end)
                .map(|i| {
                    format!(
                        r#"{{"id":{i},"customer":"c{i}","amount":{}.{:02},"status":"pending"}}"#,
                        i % 10_000,
                        i % 100
                    )
                })
                .collect();
            let _: u64 = redis::cmd("RPUSH")
                .arg(&self.list)
                .arg(items)
                .query_async(&mut con)
                .await?;
            start = end + 1;
        }
        Ok(())
    }

    fn env(&self, target_url: &str) -> Vec<(String, String)> {
        vec![
            ("KIPPER_TRIGGER".into(), "redis".into()),
            ("KIPPER_SOURCE_URL".into(), self.url.clone()),
            ("KIPPER_TARGET_URL".into(), target_url.into()),
            ("KIPPER_REDIS_LIST".into(), self.list.clone()),
            ("KIPPER_POLL_INTERVAL".into(), "1s".into()),
            ("KIPPER_BATCH_SIZE".into(), self.batch_size.to_string()),
        ]
    }

    async fn remaining(&mut self) -> anyhow::Result<u64> {
        let mut con = self.con().await?;
        let mut total: u64 = redis::cmd("LLEN")
            .arg(&self.list)
            .query_async(&mut con)
            .await?;
        let consumers: Vec<String> = redis::cmd("SMEMBERS")
            .arg(format!("{}:consumers", self.list))
            .query_async(&mut con)
            .await?;
        for id in consumers {
            let held: u64 = redis::cmd("LLEN")
                .arg(format!("{}:processing:{id}", self.list))
                .query_async(&mut con)
                .await?;
            total += held;
        }
        Ok(total)
    }

    async fn source_ceiling(&mut self, rows: u64) -> anyhow::Result<f64> {
        let mut source = RedisSource::connect(&self.config()?).await?;
        let rate = ceiling::measure(&mut source, self.batch_size, rows, "items").await;
        source.queue().leave().await?;
        rate
    }

    async fn extra_ceilings(
        &mut self,
        rows: u64,
        target_url: &str,
        concurrency: usize,
    ) -> anyhow::Result<Vec<(String, f64)>> {
        self.seed(rows).await?;
        let rate = self.raw_ceiling(rows, target_url, concurrency).await;
        self.cleanup().await;
        Ok(vec![(
            "ceiling: raw LPOP + direct POST (lossy, no ack)".into(),
            rate?,
        )])
    }

    async fn cleanup(&mut self) {
        if self.list.is_empty() {
            return;
        }
        let Ok(mut con) = self.con().await else {
            return;
        };
        let pattern = format!("{}*", self.list);
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(&pattern)
            .query_async(&mut con)
            .await
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query_async(&mut con).await;
        }
    }
}

/// A random-enough suffix for key names: the clock's nanoseconds.
fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}
