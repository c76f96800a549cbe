//! `bench-shim`: throughput, added latency and cold starts of kipper-shim for
//! node and python, against the issue's targets and same-run baselines, and beside
//! the servers a user would deploy instead (uvicorn, granian; clustered node:http,
//! fastify), installed on first use into `target/bench-peers/` (`--no-peers` skips them).
//!
//! ```sh
//! cargo run --release -p kipper-bench --bin bench-shim
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use kipper_bench::peers::PeerCache;
use kipper_bench::report::{Table, svg_bars};
use kipper_bench::shim::peers::ServerPeer;
use kipper_bench::shim::{self, Lang, Setup, ShimProcess, cold, direct, ratio, reference};

#[derive(Debug, Parser)]
#[command(about = "Benchmarks kipper-shim (node and python) and prints tables")]
struct Args {
    /// Release kipper-shim binary; built with cargo when omitted.
    #[arg(long, env = "KIPPER_SHIM_BIN")]
    shim_bin: Option<PathBuf>,
    /// Seconds of each wrk throughput run.
    #[arg(long, env = "BENCH_SHIM_DURATION", default_value_t = 10)]
    duration: u64,
    /// wrk threads of the throughput run.
    #[arg(long, env = "BENCH_SHIM_THREADS", default_value_t = 2)]
    threads: u32,
    /// wrk connections of the throughput run.
    #[arg(long, env = "BENCH_SHIM_CONNECTIONS", default_value_t = 64)]
    connections: u32,
    /// Throughput runs per runtime (the median is reported).
    #[arg(long, env = "BENCH_SHIM_REPEATS", default_value_t = 3)]
    repeats: usize,
    /// Cold starts measured per runtime (the median is reported).
    #[arg(long, env = "BENCH_SHIM_COLD_RUNS", default_value_t = 5)]
    cold_runs: usize,
    /// Requests sent together while the shim starts.
    #[arg(long, env = "BENCH_SHIM_COLD_REQUESTS", default_value_t = 1000)]
    cold_requests: usize,
    /// Only these runtimes (node, python).
    #[arg(
        long,
        env = "BENCH_SHIM_RUNTIMES",
        value_delimiter = ',',
        default_value = "node,python"
    )]
    runtimes: Vec<String>,
    /// Only the cold-start measurements.
    #[arg(long, env = "BENCH_SHIM_COLD_ONLY")]
    cold_only: bool,
    /// Skip the peer servers (uvicorn, granian, clustered node:http, fastify).
    #[arg(long, env = "BENCH_SHIM_NO_PEERS")]
    no_peers: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let setup = Setup {
        repo: shim::repo_root(),
        shim: shim::shim_binary(args.shim_bin)?,
        python: shim::python_executable(),
        node: "node".into(),
        duration: Duration::from_secs(args.duration),
        threads: args.threads,
        connections: args.connections,
        cold_runs: args.cold_runs,
        cold_requests: args.cold_requests,
        repeats: args.repeats,
    };
    let langs = args
        .runtimes
        .iter()
        .map(|r| match r.as_str() {
            "node" => Ok(Lang::Node),
            "python" => Ok(Lang::Python),
            other => Err(anyhow::anyhow!(
                "--runtimes {other}: use node and/or python"
            )),
        })
        .collect::<Result<Vec<Lang>>>()?;
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let load_before = shim::loadavg();
    println!("kipper-shim benchmark: {cpus} CPUs, load average before: {load_before}");

    let mut throughput = Table::new(
        format!(
            "Throughput: POST /event hello handler, wrk -t{} -c{} -d{}s, median of {} runs (workers = {cpus})",
            setup.threads, setup.connections, args.duration, setup.repeats
        ),
        &[
            "runtime",
            "req/s",
            "target",
            "vs target",
            "direct workers req/s",
            "shim/direct",
            "upstream req/s",
            "vs upstream",
            "p50",
            "p99",
            "errors",
        ],
    );
    let mut references = Table::new(
        format!(
            "Same-run references: the hello handler behind each language's standard HTTP server, wrk -t{} -c{} -d{}s",
            setup.threads, setup.connections, args.duration
        ),
        &[
            "runtime",
            "reference server",
            "reference req/s",
            "shim req/s",
            "shim/reference",
            "p50",
            "p99",
            "errors",
        ],
    );
    let mut latency = Table::new(
        "Added latency at one connection: wrk -t1 -c1 through the shim vs the worker called directly",
        &[
            "runtime",
            "shim p50 us",
            "direct p50 us",
            "added p50 us",
            "limit us",
            "within",
            "shim p99 us",
            "direct p99 us",
        ],
    );
    let mut peers = Table::new(
        format!(
            "Peers: the same hello handler behind the servers a user would deploy, {cpus} worker processes each \
             (the shim's count); c=64: wrk -t{} -c{} -d{}s, median of {}; c=1: wrk -t1 -c1 -d5s",
            setup.threads, setup.connections, args.duration, setup.repeats
        ),
        &[
            "runtime",
            "server",
            "c=64 req/s",
            "p50",
            "p99",
            "c=1 req/s",
            "p50",
            "p99",
            "shim / this c=64",
            "shim / this c=1",
            "errors",
        ],
    );
    let cache = (!args.no_peers).then(PeerCache::new);
    let mut cold_table = Table::new(
        format!(
            "Cold start: requests sent at t = 0 while the shim starts ({} runs, median)",
            setup.cold_runs
        ),
        &[
            "runtime",
            "port bound ms",
            "first response ms",
            "interpreter start ms",
            "over interpreter ms",
            "burst",
            "ok",
            "failed",
            "p50 response ms",
            "last response ms",
            "refused connects",
        ],
    );

    for &lang in &langs {
        if !args.cold_only {
            measure_load(
                &setup,
                lang,
                cpus,
                args.duration,
                cache.as_ref(),
                Tables {
                    throughput: &mut throughput,
                    latency: &mut latency,
                    references: &mut references,
                    peers: &mut peers,
                },
            )
            .await?;
        }
        eprintln!("bench-shim: {} cold starts", lang.name());
        let interp = cold::interpreter_start_ms(&setup, lang);
        let first = cold::median(
            setup.cold_runs,
            || cold::first_response(&setup, lang),
            |f| f.first_ms,
        )?;
        let burst = cold::burst(&setup, lang, setup.cold_requests).await?;
        cold_table.row(vec![
            lang.name().into(),
            format!("{:.1}", first.bind_ms),
            format!("{:.0}", first.first_ms),
            format!("{interp:.0}"),
            format!("{:.0}", first.first_ms - interp),
            setup.cold_requests.to_string(),
            burst.ok.to_string(),
            burst.failed.to_string(),
            format!("{:.0}", burst.p50_ms),
            format!("{:.0}", burst.last_ms),
            burst.refused.to_string(),
        ]);
    }

    print!("{}", throughput.render());
    print!("{}", references.render());
    if cache.is_some() && !args.cold_only {
        print!("{}", peers.render());
        println!(
            "  peers: {} (bench/peers/); charts of the c=64 column: {}",
            kipper_bench::peers::pinned(),
            kipper_bench::peers::target_dir("bench-results").display()
        );
    }
    print!("{}", latency.render());
    print!("{}", cold_table.render());
    println!(
        "\nTargets (issue 4): node >= 21000 req/s, python >= 22000 req/s; added p50 <= 100 us; 0 failed of {} requests sent during start.\n\
         'direct workers' = the same worker processes driven over their socket protocol by this process (no HTTP, no shim): the ceiling.\n\
         'upstream' figures are quoted from the issue (Kipper's Express / http.server runtimes); the 'references' (bench/reference/) are measured here.\n\
         Load average before: {load_before}; after: {} (other engineers' builds share these {cpus} CPUs: figures are noisy).",
        setup.cold_requests,
        shim::loadavg()
    );
    Ok(())
}

/// The tables `measure_load` adds rows to.
struct Tables<'a> {
    throughput: &'a mut Table,
    latency: &'a mut Table,
    references: &'a mut Table,
    peers: &'a mut Table,
}

fn us(v: f64) -> String {
    format!("{v:.0} us")
}

async fn measure_load(
    setup: &Setup,
    lang: Lang,
    cpus: usize,
    duration: u64,
    cache: Option<&PeerCache>,
    tables: Tables<'_>,
) -> Result<()> {
    eprintln!("bench-shim: {} direct-worker baseline", lang.name());
    let base = direct::measure(
        setup,
        lang,
        cpus,
        Duration::from_secs(3),
        Duration::from_secs(duration.min(5)),
        setup.connections as usize,
    )
    .await?;

    eprintln!("bench-shim: {} through the shim", lang.name());
    let proc = ShimProcess::spawn(setup, lang, &[])?;
    proc.wait_ready()?;
    let url = format!("http://127.0.0.1:{}/event", proc.port);
    let (load, one) = shim::load_profile(setup, &url)?;
    drop(proc);

    eprintln!(
        "bench-shim: {} reference server ({})",
        lang.name(),
        reference::describe(lang)
    );
    let server = reference::start(setup, lang)?;
    let ref_url = format!("http://127.0.0.1:{}/event", server.port);
    kipper_bench::shim::wrk::run(
        &ref_url,
        setup.threads,
        setup.connections,
        Duration::from_secs(2),
    )?;
    let refr =
        kipper_bench::shim::wrk::run(&ref_url, setup.threads, setup.connections, setup.duration)?;
    drop(server);
    tables.references.row(vec![
        lang.name().into(),
        reference::describe(lang).into(),
        format!("{:.0}", refr.rps),
        format!("{:.0}", load.rps),
        ratio(load.rps, refr.rps),
        us(refr.p50_us),
        us(refr.p99_us),
        refr.errors.to_string(),
    ]);

    if let Some(cache) = cache {
        let mut bars = vec![("kipper-shim".to_string(), load.rps)];
        tables.peers.row(vec![
            lang.name().into(),
            "kipper-shim".into(),
            format!("{:.0}", load.rps),
            us(load.p50_us),
            us(load.p99_us),
            format!("{:.0}", one.rps),
            us(one.p50_us),
            us(one.p99_us),
            "1.00x".into(),
            "1.00x".into(),
            load.errors.to_string(),
        ]);
        for &peer in ServerPeer::of(lang) {
            eprintln!("bench-shim: {} peer {}", lang.name(), peer.name());
            let measured = peer
                .start(setup, cache, lang, cpus)
                .and_then(|(group, port)| {
                    let profile =
                        shim::load_profile(setup, &format!("http://127.0.0.1:{port}/event"));
                    drop(group);
                    profile
                });
            // A peer that fails is reported, not fatal: the other rows still stand.
            let (c64, c1) = match measured {
                Ok(m) => m,
                Err(error) => {
                    eprintln!("bench-shim: {} failed: {error:#}", peer.name());
                    tables.peers.row(vec![
                        lang.name().into(),
                        format!("{} (failed)", peer.name()),
                    ]);
                    continue;
                }
            };
            bars.push((peer.name().to_string(), c64.rps));
            tables.peers.row(vec![
                lang.name().into(),
                peer.name().into(),
                format!("{:.0}", c64.rps),
                us(c64.p50_us),
                us(c64.p99_us),
                format!("{:.0}", c1.rps),
                us(c1.p50_us),
                us(c1.p99_us),
                ratio(load.rps, c64.rps),
                ratio(one.rps, c1.rps),
                c64.errors.to_string(),
            ]);
        }
        bars.push((reference::describe(lang).to_string(), refr.rps));
        bars.push(("ceiling: direct workers, no HTTP".into(), base.rps));
        tables.peers.row(vec![
            lang.name().into(),
            "ceiling: direct workers, no HTTP".into(),
            format!("{:.0}", base.rps),
            String::new(),
            String::new(),
            String::new(),
            us(base.p50_us),
            us(base.p99_us),
            ratio(load.rps, base.rps),
        ]);
        let chart = kipper_bench::peers::target_dir("bench-results")
            .join(format!("shim-{}.svg", lang.name()));
        let title = format!(
            "kipper-shim vs {} servers: hello handler, {cpus} workers each, wrk -c{} (req/s, same run)",
            lang.name(),
            setup.connections
        );
        let written = chart
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&chart, svg_bars(&title, "req/s", &bars)));
        if let Err(error) = written {
            eprintln!("bench-shim: no chart at {}: {error}", chart.display());
        }
    }

    tables.throughput.row(vec![
        lang.name().into(),
        format!("{:.0}", load.rps),
        format!("{:.0}", lang.target_rps()),
        ratio(load.rps, lang.target_rps()),
        format!("{:.0}", base.rps),
        ratio(load.rps, base.rps),
        format!("{:.0}", lang.upstream_rps()),
        ratio(load.rps, lang.upstream_rps()),
        us(load.p50_us),
        us(load.p99_us),
        load.errors.to_string(),
    ]);
    let added = one.p50_us - base.p50_us;
    tables.latency.row(vec![
        lang.name().into(),
        format!("{:.0}", one.p50_us),
        format!("{:.0}", base.p50_us),
        format!("{added:.0}"),
        "100".into(),
        if added <= 100.0 {
            "yes".into()
        } else {
            "NO".into()
        },
        format!("{:.0}", one.p99_us),
        format!("{:.0}", base.p99_us),
    ]);

    Ok(())
}
