//! bench-poll: kipper-poll end to end against a local no-op handler, with
//! the source and handler ceilings measured in the same run.
//!
//! `cargo run --release -p kipper-bench --bin bench-poll -- postgres`
//! (or `mysql`, `redis`, `s3`); `--sidecar PATH` adds any other sidecar binary that reads
//! the upstream `KIPPER_*` environment, side by side. PostgreSQL and Redis also run the job
//! queues a user would deploy instead (graphile-worker and pg-boss; BullMQ), installed on first
//! use into `target/bench-peers/`; `--no-peers` skips them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kipper_bench::poll::redis::RedisWorkload;
use kipper_bench::poll::s3::S3Workload;
use kipper_bench::poll::sql::{Dialect, SqlWorkload};
use kipper_bench::poll::{self, Options};

#[derive(Debug, Parser)]
#[command(
    name = "bench-poll",
    about = "Benchmark kipper-poll against a no-op handler, with ceilings."
)]
struct Cli {
    #[command(subcommand)]
    source: SourceCmd,
    /// Events seeded per run.
    #[arg(long, global = true, default_value_t = 200_000)]
    rows: u64,
    /// A kipper-poll binary to use instead of building one in release mode.
    #[arg(long, global = true)]
    kipper_poll: Option<PathBuf>,
    /// Another sidecar binary (upstream KIPPER_* environment) to run side by side; repeatable.
    #[arg(long = "sidecar", global = true)]
    sidecars: Vec<PathBuf>,
    /// Give up on one sidecar run after this many seconds.
    #[arg(long, global = true, default_value_t = 300)]
    timeout_secs: u64,
    /// Deliveries in flight (kipper-poll and the handler ceiling).
    #[arg(long, global = true, default_value_t = 64)]
    concurrency: usize,
    /// Events claimed per round trip.
    #[arg(long, global = true, default_value_t = 500)]
    batch_size: usize,
    /// Skip the peer job queues (graphile-worker, pg-boss, BullMQ).
    #[arg(long, global = true)]
    no_peers: bool,
}

#[derive(Debug, Subcommand)]
enum SourceCmd {
    /// PostgreSQL: the orders table of the Functions page.
    Postgres {
        #[arg(
            long,
            env = "KIPPER_BENCH_POSTGRES_URL",
            default_value = "postgres://postgres@127.0.0.1:5432/test"
        )]
        url: String,
    },
    /// MySQL / MariaDB: the same table.
    Mysql {
        #[arg(
            long,
            env = "KIPPER_BENCH_MYSQL_URL",
            default_value = "mysql://root@127.0.0.1:3306/test"
        )]
        url: String,
    },
    /// Redis: a list of small JSON items through the reliable queue (plus raw pop + POST).
    Redis {
        #[arg(
            long,
            env = "KIPPER_BENCH_REDIS_URL",
            default_value = "redis://127.0.0.1:6379"
        )]
        url: String,
    },
    /// MinIO / S3 poll mode: a bucket of small objects (SeaweedFS of scripts/services.sh).
    S3 {
        #[arg(
            long,
            env = "KIPPER_BENCH_S3_URL",
            default_value = "http://kipper-test-access:kipper-test-secret-only-for-local-tests@127.0.0.1:8333"
        )]
        url: String,
        /// Objects per run (replaces --rows: listing a bucket is not a 200k-row query).
        #[arg(long, default_value_t = 10_000)]
        objects: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kipper_tls::install_crypto_provider();
    let cli = Cli::parse();
    let source_url = match &cli.source {
        SourceCmd::Postgres { url }
        | SourceCmd::Mysql { url }
        | SourceCmd::Redis { url }
        | SourceCmd::S3 { url, .. } => url.clone(),
    };
    let options = Options {
        rows: cli.rows,
        kipper_poll: cli.kipper_poll,
        others: cli.sidecars,
        timeout: Duration::from_secs(cli.timeout_secs),
        concurrency: cli.concurrency,
        batch_size: cli.batch_size,
        source_url,
        peers: !cli.no_peers,
    };
    match cli.source {
        SourceCmd::Postgres { url } => {
            poll::run(
                SqlWorkload::new(Dialect::Postgres, url, cli.batch_size),
                options,
            )
            .await
        }
        SourceCmd::Mysql { url } => {
            poll::run(
                SqlWorkload::new(Dialect::Mysql, url, cli.batch_size),
                options,
            )
            .await
        }
        SourceCmd::Redis { url } => {
            poll::run(RedisWorkload::new(url, cli.batch_size), options).await
        }
        SourceCmd::S3 { url, objects } => {
            poll::run(
                S3Workload::new(url, cli.batch_size),
                Options {
                    rows: objects,
                    ..options
                },
            )
            .await
        }
    }
}
