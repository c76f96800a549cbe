//! The kipper-poll harness: seeds a source with N events, runs the sidecar
//! (and any other sidecar binary that reads the upstream `KIPPER_*`
//! environment) against a local no-op handler, and reports events/s,
//! delivery latency, CPU and peak RSS next to the ceilings measured in the
//! same run: the source's own claim + acknowledge rate without HTTP, and the
//! handler's direct request rate.
//!
//! A source is a [`Workload`]; `sql` holds PostgreSQL and MySQL, and each
//! further source (Redis, S3) is one more module implementing it and one more
//! subcommand of `bench-poll`. The job queues a user would deploy instead (`peer`:
//! graphile-worker, pg-boss, BullMQ) drain the same rows into the same handler in the same
//! run, measured by the same loop; each is one more [`Backlog`].

pub mod ceiling;
pub mod handler;
pub mod peer;
pub mod process;
pub mod redis;
pub mod s3;
pub mod sql;
pub mod summary;

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

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
    /// Deliveries in flight for kipper-poll, the peers and the handler ceiling.
    pub concurrency: usize,
    /// Events claimed per round trip (kipper-poll, and the peers that fetch in batches).
    pub batch_size: usize,
    /// The source's URL, for the peers.
    pub source_url: String,
    /// Run the peer queues of this source (installed on first use).
    pub peers: bool,
}

/// Something holding N pending events that a run drains: a [`Workload`]'s source, or a peer
/// queue on the same server.
#[allow(async_fn_in_trait)] // used with concrete types only, inside this binary
pub trait Backlog {
    /// Creates a fresh backlog of `rows` pending events.
    async fn seed(&mut self, rows: u64) -> anyhow::Result<()>;
    /// Events still pending.
    async fn remaining(&mut self) -> anyhow::Result<u64>;
    /// Drops what `seed` created.
    async fn cleanup(&mut self);
}

impl<W: Workload> Backlog for W {
    async fn seed(&mut self, rows: u64) -> anyhow::Result<()> {
        Workload::seed(self, rows).await
    }
    async fn remaining(&mut self) -> anyhow::Result<u64> {
        Workload::remaining(self).await
    }
    async fn cleanup(&mut self) {
        Workload::cleanup(self).await
    }
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

/// What one drain measured.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The row's label.
    pub label: String,
    /// Events settled.
    pub delivered: u64,
    /// From the start (spawn, or a peer's "ready") until the backlog was empty.
    pub seconds: f64,
    /// CPU seconds of the worker process over the same span.
    pub cpu_seconds: Option<f64>,
    /// Its peak RSS.
    pub peak_rss_mib: Option<f64>,
    /// CPU seconds of the whole machine over the same span (database and handler included).
    pub machine_cpu_seconds: Option<f64>,
    /// Median delivery attempt (POST round trip).
    pub p50_ms: Option<f64>,
    /// 99th percentile of the same.
    pub p99_ms: Option<f64>,
    /// The backlog emptied before the timeout.
    pub finished: bool,
}

impl Measured {
    /// Events per second.
    pub fn rate(&self) -> f64 {
        self.delivered as f64 / self.seconds
    }
}

/// Which kind of worker process a drain runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Worker {
    /// kipper-poll: gets the admin port, its histogram gives the quantiles.
    KipperPoll,
    /// Another sidecar reading the upstream environment.
    Sidecar,
    /// A peer adapter: prints "ready" when its worker runs, and on SIGTERM its POST quantiles.
    Peer { in_process: bool },
}

/// Seeds `backlog`, runs `command` until the backlog is empty (or the timeout), and measures.
async fn drain<B: Backlog>(
    backlog: &mut B,
    command: impl FnOnce(&B) -> Command,
    label: &str,
    worker: Worker,
    handler: &NoopHandler,
    options: &Options,
) -> anyhow::Result<Measured> {
    backlog.seed(options.rows).await?;
    let mut command = command(backlog);
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    if worker == Worker::KipperPoll {
        command
            .env("KIPPER_ADMIN_PORT", admin_port.to_string())
            .env("KIPPER_CONCURRENCY", options.concurrency.to_string())
            .env("KIPPER_LOG_FORMAT", "text")
            .env("RUST_LOG", "warn");
    }
    let peer = matches!(worker, Worker::Peer { .. });
    let before = handler.requests();
    let mut started = Instant::now();
    let mut child = command
        .stdout(if peer { Stdio::piped() } else { Stdio::null() })
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {label}"))?;
    let pid = child.id();
    // A peer's lines: "ready", then its figures at exit.
    let (lines_tx, lines) = mpsc::channel::<String>();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = lines_tx.send(line);
            }
        });
    }
    let mut cpu_at_start = 0.0;
    let mut machine_at_start = process::machine_busy_seconds();
    if peer {
        // The clock starts when the worker runs: Node's module loading is not the queue's cost.
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                anyhow::bail!("{label} exited before it was ready ({status})");
            }
            match lines.recv_timeout(Duration::from_millis(20)) {
                Ok(line) if line == "ready" => break,
                _ if started.elapsed() > Duration::from_secs(60) => {
                    process::stop(&mut child);
                    anyhow::bail!("{label} was not ready within 60 s");
                }
                _ => {}
            }
        }
        started = Instant::now();
        cpu_at_start = process::cpu_seconds(pid).unwrap_or(0.0);
        machine_at_start = process::machine_busy_seconds();
    }
    let counts_posts = worker != Worker::Peer { in_process: true };
    let mut finished = false;
    while started.elapsed() < options.timeout {
        if let Ok(Some(status)) = child.try_wait() {
            anyhow::bail!("{label} exited early with {status}");
        }
        // Count deliveries first (cheap); ask the source only near the end.
        let posted = !counts_posts || handler.requests() - before >= options.rows;
        if posted && backlog.remaining().await? == 0 {
            finished = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = process::cpu_seconds(pid).map(|c| c - cpu_at_start);
    let machine_cpu_seconds = process::machine_busy_seconds()
        .zip(machine_at_start)
        .map(|(end, start)| end - start);
    let peak_rss_mib = process::peak_rss_mib(pid);
    let (p50_ms, p99_ms) = match worker {
        Worker::KipperPoll => {
            let metrics = process::scrape(admin_port).await;
            let quantile = |q| {
                metrics
                    .as_deref()
                    .and_then(|m| {
                        process::histogram_quantile(m, "kipper_poll_delivery_duration_seconds", q)
                    })
                    .map(|s| s * 1000.0)
            };
            (quantile(0.5), quantile(0.99))
        }
        _ => (None, None),
    };
    process::stop(&mut child);
    let (p50_ms, p99_ms) = if worker == (Worker::Peer { in_process: false }) {
        peer_quantiles(&lines)
    } else {
        (p50_ms, p99_ms)
    };
    let delivered = options.rows - backlog.remaining().await?.min(options.rows);
    backlog.cleanup().await;
    Ok(Measured {
        label: label.into(),
        delivered,
        seconds,
        cpu_seconds,
        peak_rss_mib,
        machine_cpu_seconds,
        p50_ms,
        p99_ms,
        finished,
    })
}

/// The `{"p50_ms", "p99_ms"}` line a peer adapter prints when stopped.
fn peer_quantiles(lines: &mpsc::Receiver<String>) -> (Option<f64>, Option<f64>) {
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(2)) {
        if let Ok(figures) = serde_json::from_str::<serde_json::Value>(&line) {
            return (figures["p50_ms"].as_f64(), figures["p99_ms"].as_f64());
        }
    }
    (None, None)
}

fn sidecar_command(binary: &Path, env: Vec<(String, String)>) -> Command {
    let mut cmd = Command::new(binary);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env);
    cmd
}

/// Runs the whole benchmark of `workload` (and its peers) and prints its table.
pub async fn run<W: Workload>(mut workload: W, options: Options) -> anyhow::Result<()> {
    let (load_before, cpus) = process::load();
    let handler = NoopHandler::start().await?;
    let kipper_poll = match &options.kipper_poll {
        Some(path) => path.clone(),
        None => crate::build::release_binaries(&["kipper-poll"])?.remove(0),
    };
    let peers = peer::QueuePeer::of_source(workload.name());
    let node_modules = if options.peers && !peers.is_empty() {
        Some(crate::peers::PeerCache::new().node_modules()?)
    } else {
        None
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
    let target = handler.url();
    runs.push(
        drain(
            &mut workload,
            |w| sidecar_command(&kipper_poll, w.env(&target)),
            "kipper-poll",
            Worker::KipperPoll,
            &handler,
            &options,
        )
        .await?,
    );
    for other in &options.others {
        let label = other.file_name().map_or_else(
            || other.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        eprintln!("bench-poll: {label} ...");
        runs.push(
            drain(
                &mut workload,
                |w| sidecar_command(other, w.env(&target)),
                &label,
                Worker::Sidecar,
                &handler,
                &options,
            )
            .await?,
        );
    }
    for &queue in peers.iter().filter(|_| node_modules.is_some()) {
        let mut backlog = peer::PeerBacklog::new(
            queue,
            options.source_url.clone(),
            node_modules.clone().unwrap_or_default(),
            options.batch_size,
            options.concurrency,
        );
        for in_process in [false, true] {
            let label = if in_process {
                format!("{} (no-op in process, no HTTP)", queue.name())
            } else {
                queue.name().to_string()
            };
            eprintln!("bench-poll: {label} ...");
            let rows = options.rows;
            let measured = drain(
                &mut backlog,
                |b| b.command("work", (!in_process).then_some(target.as_str()), rows),
                &label,
                Worker::Peer { in_process },
                &handler,
                &options,
            )
            .await;
            // A peer that fails is reported, not fatal: the other rows still stand.
            match measured {
                Ok(m) => runs.push(m),
                Err(error) => {
                    eprintln!("bench-poll: {label} failed: {error:#}");
                    backlog.cleanup().await;
                }
            }
        }
    }

    eprintln!("bench-poll: source ceiling (claim + acknowledge, no HTTP) ...");
    Workload::seed(&mut workload, options.rows).await?;
    let machine_before = process::machine_busy_seconds();
    let source_rate = workload.source_ceiling(options.rows).await;
    let source_machine_us = process::machine_busy_seconds()
        .zip(machine_before)
        .map(|(end, start)| (end - start) * 1e6 / options.rows as f64);
    Workload::cleanup(&mut workload).await;
    let source_rate = source_rate?;
    eprintln!("bench-poll: further ceilings of the source ...");
    let extra = workload
        .extra_ceilings(options.rows, &handler.url(), options.concurrency)
        .await?;
    let (load_after, _) = process::load();

    let summary = summary::Summary {
        source: workload.name(),
        rows: options.rows,
        runs,
        source_rate,
        source_machine_us,
        handler_rate,
        extra,
    };
    print!("{}", summary.table().render());
    println!("  source: {}", workload.describe());
    if let Some(ours) = summary.runs.first() {
        let (name, ceiling) = if source_rate < handler_rate {
            ("source claim + ack", source_rate)
        } else {
            ("handler direct", handler_rate)
        };
        println!(
            "  kipper-poll = {:.2} of the lower ceiling ({name}, {ceiling:.0}/s)",
            ours.rate() / ceiling
        );
    }
    for queue in peers.iter().filter(|_| node_modules.is_some()) {
        println!("  {}: {}", queue.name(), queue.describe());
    }
    if node_modules.is_some() && !peers.is_empty() {
        println!(
            "  peers ({}): Node {} adapters in bench/peers/; their clock starts at the worker's \"ready\" \
             (module loading excluded), kipper-poll's at spawn; p50/p99 of a peer = its POSTs timed in the adapter",
            crate::peers::pinned(),
            node_version()
        );
    }
    println!(
        "  machine: {cpus} CPUs, load average {load_before:.2} before / {load_after:.2} after; \
         p50/p99 = one delivery attempt (kipper-poll's histogram), CPU % of one core; \
         machine µs/event = CPU time of every process on the machine (database, handler, sidecar) per event"
    );
    if let Some(bound) = summary.cpu_bound() {
        println!(
            "  CPU bound: the source ceiling costs {:.0} µs of machine CPU per event, kipper-poll {:.0} µs \
             (the HTTP hop: its client and the handler); at the same CPU use kipper-poll reaches \
             {:.2} of the source ceiling",
            bound.ceiling_us, bound.ours_us, bound.ratio
        );
    }
    let chart =
        crate::peers::target_dir("bench-results").join(format!("poll-{}.svg", workload.name()));
    match summary.write_chart(&chart) {
        Ok(()) => println!("  chart: {}", chart.display()),
        Err(error) => eprintln!("bench-poll: no chart: {error:#}"),
    }
    Ok(())
}

/// `node --version`, for the notes.
fn node_version() -> String {
    Command::new("node")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "?".into(), |v| v.trim().to_string())
}
