//! The kipper-poll harness: seeds a source with N events, runs the sidecar
//! (and any other sidecar binary that reads the upstream `KIPPER_*`
//! environment) against a local no-op handler, and reports events/s,
//! delivery latency, CPU and peak RSS next to the ceilings measured in the
//! same run: the source's own claim + acknowledge rate without HTTP, and the
//! handler's direct request rate.
//!
//! A source is a [`Workload`]; `sql` holds PostgreSQL and MySQL, and each
//! further source (Redis, S3) is one more module implementing it and one more
//! subcommand of `bench-poll`.

pub mod handler;
pub mod process;
pub mod redis;
pub mod s3;
pub mod sql;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::report::{Table, bar};
use handler::NoopHandler;

/// Settings shared by every poll benchmark.
#[derive(Debug, Clone)]
pub struct Options {
    /// Events seeded per run.
    pub rows: u64,
    /// kipper-poll binary; built with `cargo build --release` when absent.
    pub kipper_poll: Option<PathBuf>,
    /// Other sidecar binaries to run side by side (upstream environment only).
    pub others: Vec<PathBuf>,
    /// Give up on a sidecar after this long.
    pub timeout: Duration,
    /// Deliveries in flight for kipper-poll and for the handler ceiling.
    pub concurrency: usize,
}

/// One event source under benchmark.
#[allow(async_fn_in_trait)] // used with concrete types only, inside this binary
pub trait Workload {
    /// Trigger name, e.g. `postgres`.
    fn name(&self) -> &'static str;
    /// A one-line description of what is seeded (printed under the table).
    fn describe(&self) -> String;
    /// Creates a fresh source holding `rows` pending events.
    async fn seed(&mut self, rows: u64) -> anyhow::Result<()>;
    /// The upstream `KIPPER_*` environment pointing at the seeded source.
    fn env(&self, target_url: &str) -> Vec<(String, String)>;
    /// Events still pending in the source.
    async fn remaining(&mut self) -> anyhow::Result<u64>;
    /// Claims and acknowledges every seeded event with kipper-poll's own
    /// source code, no HTTP: events per second.
    async fn source_ceiling(&mut self, rows: u64) -> anyhow::Result<f64>;
    /// Drops what `seed` created.
    async fn cleanup(&mut self);
    /// Further ceilings of this source against the same handler (label, events/s); each seeds
    /// and cleans up for itself. Redis: raw pop + direct POST.
    async fn extra_ceilings(
        &mut self,
        _rows: u64,
        _target_url: &str,
        _concurrency: usize,
    ) -> anyhow::Result<Vec<(String, f64)>> {
        Ok(Vec::new())
    }
}

/// What one sidecar run measured.
#[derive(Debug, Clone)]
struct Measured {
    label: String,
    delivered: u64,
    seconds: f64,
    cpu_seconds: Option<f64>,
    peak_rss_mib: Option<f64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    finished: bool,
}

/// Builds kipper-poll in release mode and returns the binary's path.
///
/// `--workspace` (with `--bin`, so only kipper-poll is built) resolves
/// dependency features as `cargo run -p kipper-bench` did, which depends on
/// every member: the dependencies and the kipper-poll library the bench was
/// just built with are reused, and only kipper-poll's `main.rs` is compiled
/// and linked. `-p kipper-poll` alone selects fewer features of shared
/// dependencies (serde, tracing, tokio-util, ...) and rebuilt them, minutes
/// per run.
pub fn build_kipper_poll() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!(
        "bench-poll: cargo build --release --workspace --bin kipper-poll (reuses the bench's build)"
    );
    let out = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--workspace",
            "--bin",
            "kipper-poll",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build")?;
    anyhow::ensure!(
        out.status.success(),
        "cargo build --release --workspace --bin kipper-poll failed"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|m| m["executable"].as_str().map(PathBuf::from))
        .find(|p| p.file_name().is_some_and(|n| n == "kipper-poll"))
        .context("cargo did not report the kipper-poll executable")
}

async fn run_sidecar<W: Workload>(
    workload: &mut W,
    binary: &Path,
    label: &str,
    handler: &NoopHandler,
    options: &Options,
    ours: bool,
) -> anyhow::Result<Measured> {
    workload.seed(options.rows).await?;
    let mut env = workload.env(&handler.url());
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    if ours {
        env.push(("KIPPER_ADMIN_PORT".into(), admin_port.to_string()));
        env.push(("KIPPER_CONCURRENCY".into(), options.concurrency.to_string()));
        env.push(("KIPPER_LOG_FORMAT".into(), "text".into()));
        env.push(("RUST_LOG".into(), "warn".into()));
    }
    let before = handler.requests();
    let started = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let pid = child.id();
    let mut finished = false;
    while started.elapsed() < options.timeout {
        if let Ok(Some(status)) = child.try_wait() {
            anyhow::bail!("{label} exited early with {status}");
        }
        // Count deliveries first (cheap); ask the source only near the end.
        if handler.requests() - before >= options.rows && workload.remaining().await? == 0 {
            finished = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = process::cpu_seconds(pid);
    let peak_rss_mib = process::peak_rss_mib(pid);
    let metrics = if ours {
        process::scrape(admin_port).await
    } else {
        None
    };
    let quantile = |q| {
        metrics
            .as_deref()
            .and_then(|m| {
                process::histogram_quantile(m, "kipper_poll_delivery_duration_seconds", q)
            })
            .map(|s| s * 1000.0)
    };
    let (p50_ms, p99_ms) = (quantile(0.5), quantile(0.99));
    process::stop(&mut child);
    let delivered = options.rows - workload.remaining().await?.min(options.rows);
    workload.cleanup().await;
    Ok(Measured {
        label: label.into(),
        delivered,
        seconds,
        cpu_seconds,
        peak_rss_mib,
        p50_ms,
        p99_ms,
        finished,
    })
}

fn fmt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "n/a".into(), |v| format!("{v:.decimals$}"))
}

/// Runs the whole benchmark of `workload` and prints its table.
pub async fn run<W: Workload>(mut workload: W, options: Options) -> anyhow::Result<()> {
    let (load_before, cpus) = process::load();
    let handler = NoopHandler::start().await?;
    let kipper_poll = match &options.kipper_poll {
        Some(path) => path.clone(),
        None => build_kipper_poll()?,
    };

    eprintln!("bench-poll: handler ceiling (direct requests) ...");
    let handler_rate =
        handler::direct_rate(&handler, options.rows.min(100_000), options.concurrency).await?;

    let mut runs = Vec::new();
    eprintln!(
        "bench-poll: kipper-poll, {} {} events ...",
        options.rows,
        workload.name()
    );
    runs.push(
        run_sidecar(
            &mut workload,
            &kipper_poll,
            "kipper-poll",
            &handler,
            &options,
            true,
        )
        .await?,
    );
    for other in &options.others {
        let label = other.file_name().map_or_else(
            || other.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        eprintln!("bench-poll: {label} ...");
        runs.push(run_sidecar(&mut workload, other, &label, &handler, &options, false).await?);
    }

    eprintln!("bench-poll: source ceiling (claim + acknowledge, no HTTP) ...");
    workload.seed(options.rows).await?;
    let source_rate = workload.source_ceiling(options.rows).await;
    workload.cleanup().await;
    let source_rate = source_rate?;
    eprintln!("bench-poll: further ceilings of the source ...");
    let extra = workload
        .extra_ceilings(options.rows, &handler.url(), options.concurrency)
        .await?;
    let (load_after, _) = process::load();

    let mut table = Table::new(
        format!(
            "kipper-poll {} benchmark: {} events, no-op handler",
            workload.name(),
            options.rows
        ),
        &[
            "run",
            "events/s",
            "p50 ms",
            "p99 ms",
            "CPU %",
            "peak RSS MiB",
            "vs source ceiling",
            "vs handler ceiling",
            "",
        ],
    );
    let best = source_rate.max(handler_rate);
    for m in &runs {
        let rate = m.delivered as f64 / m.seconds;
        let label = if m.finished {
            m.label.clone()
        } else {
            format!("{} (timed out, {} done)", m.label, m.delivered)
        };
        table.row(vec![
            label,
            format!("{rate:.0}"),
            fmt(m.p50_ms, 2),
            fmt(m.p99_ms, 2),
            fmt(m.cpu_seconds.map(|c| 100.0 * c / m.seconds), 0),
            fmt(m.peak_rss_mib, 1),
            format!("{:.2}", rate / source_rate),
            format!("{:.2}", rate / handler_rate),
            bar(rate, best, 30),
        ]);
    }
    table.row(vec![
        "ceiling: source claim + ack, no HTTP".into(),
        format!("{source_rate:.0}"),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        "1.00".into(),
        String::new(),
        bar(source_rate, best, 30),
    ]);
    table.row(vec![
        "ceiling: handler, direct requests".into(),
        format!("{handler_rate:.0}"),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        "1.00".into(),
        bar(handler_rate, best, 30),
    ]);
    for (label, rate) in &extra {
        let blank = String::new;
        table.row(vec![
            label.clone(),
            format!("{rate:.0}"),
            blank(),
            blank(),
            blank(),
            blank(),
            blank(),
            blank(),
            bar(*rate, best, 30),
        ]);
    }
    print!("{}", table.render());
    println!("  source: {}", workload.describe());
    if let Some(ours) = runs.first() {
        for (label, rate) in &extra {
            let ours = ours.delivered as f64 / ours.seconds;
            println!(
                "  kipper-poll / {}: {:.2}",
                label.trim_start_matches("ceiling: "),
                ours / rate
            );
        }
    }
    println!(
        "  machine: {cpus} CPUs, load average {load_before:.2} before / {load_after:.2} after; \
         p50/p99 = one delivery attempt (kipper-poll's histogram), CPU % of one core"
    );
    Ok(())
}
