//! The baseline: the same hello handler in the same worker processes, called
//! directly over the worker protocol from this process, with no HTTP and no
//! shim in between. The shim's added latency is measured against this.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use kipper_shim::config::Config;
use kipper_shim::pool::{self, worker};
use kipper_shim::protocol::{BodyKind, FLAG_EVENT, Invoke};

use super::wrk::BODY;
use super::{Lang, Setup};

/// What calling workers directly measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Direct {
    /// Median round trip of one invocation at a time.
    pub p50_us: f64,
    /// 99th percentile of the same.
    pub p99_us: f64,
    /// Invocations per second with `connections` in flight over `workers` workers.
    pub rps: f64,
}

const HEADERS: &[u8] = b"host:127.0.0.1\ncontent-type:application/json\ncontent-length:80";

fn invoke(request_id: &str) -> Invoke<'_> {
    Invoke {
        id: 0,
        flags: FLAG_EVENT,
        body_kind: BodyKind::Json,
        deadline_ms: u64::MAX / 2,
        method: "POST",
        path: "/event",
        query: "",
        headers: HEADERS,
        request_id,
        body: BODY.as_bytes(),
    }
}

/// Starts `workers` workers of `lang` and measures them.
pub async fn measure(
    setup: &Setup,
    lang: Lang,
    workers: usize,
    latency_for: Duration,
    throughput_for: Duration,
    connections: usize,
) -> Result<Direct> {
    let work = tempfile::tempdir()?;
    let mut config = Config::for_handler(lang.handler(&setup.repo)).map_err(|e| anyhow!("{e}"))?;
    config.python_bin = setup.python.clone();
    config.node_bin = setup.node.clone();
    config.work_dir = work.path().to_path_buf();
    let spec = pool::prepare(&config).await.map_err(|e| anyhow!("{e}"))?;
    let mut running = Vec::new();
    for slot in 0..workers {
        let r = worker::start(slot, slot as u64, &spec)
            .await
            .map_err(|e| anyhow!("starting a {} worker: {e:?}", lang.name()))?;
        running.push(r);
    }
    let first = running.first().context("no worker")?.worker.clone();

    // One request at a time, like wrk -c1.
    let mut samples = Vec::with_capacity(100_000);
    let end = Instant::now() + latency_for;
    while Instant::now() < end {
        let t0 = Instant::now();
        let mut ticket = first
            .invoke(invoke("direct-latency"))
            .context("worker died")?;
        match ticket.reply().await {
            worker::Delivery::Reply(r) if r.status == 200 => {}
            other => return Err(anyhow!("direct call failed: {other:?}")),
        }
        samples.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        samples
            .get(((samples.len() as f64 * p) as usize).min(samples.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let (p50_us, p99_us) = (pct(0.50), pct(0.99));

    // `connections` in flight, spread over the workers, like the shim's dispatch.
    let handles: Vec<_> = running.iter().map(|r| r.worker.clone()).collect();
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let w = handles[c % handles.len()].clone();
        let (done, stop) = (done.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Some(mut ticket) = w.invoke(invoke("direct-load")) else {
                    return;
                };
                if !matches!(ticket.reply().await, worker::Delivery::Reply(_)) {
                    return;
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(throughput_for).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let count = done.load(Ordering::Relaxed) as f64;
    for t in tasks {
        let _ = t.await;
    }
    for r in &running {
        r.worker.kill(false);
    }
    Ok(Direct {
        p50_us,
        p99_us,
        rps: count / elapsed,
    })
}
