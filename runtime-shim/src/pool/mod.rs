//! The pool of language workers: boots them (after installing dependencies),
//! dispatches each invocation to the least-busy open worker, replaces a worker
//! that crashed or got stuck while the others keep serving, and publishes the
//! pool's [`State`] that the hold gate and `/ready` read.
//!
//! **Isolation.** A worker runs many invocations at once (node's event loop,
//! python's asyncio, and frames pipelined to a sync python loop), so a handler
//! that kills or blocks its process takes its neighbours down with it. Once
//! that has happened (an invocation lost to a dying worker, or a worker stuck
//! past `KIPPER_TIMEOUT`), the pool gives each worker one invocation at a time
//! for [`ISOLATION`]: the other requests wait in the shim, where nothing is
//! lost when a worker dies, and go to whichever worker frees first. Healthy
//! traffic never pays for it: the limit applies only after a failure.

pub mod spawn;
pub mod watchdog;
pub mod worker;

use std::os::unix::fs::DirBuilderExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use crate::bootstrap;
use crate::config::{Config, Runtime};
use crate::deps::{self, Installed};
use crate::metrics::Metrics;
use crate::{Error, Result, WorkerFailure};
use worker::{StartError, Worker, WorkerSpec};

/// Where the pool is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Installing dependencies or loading the handler: requests are held.
    Starting,
    /// At least one worker has loaded the handler.
    Ready,
    /// The handler (or its dependencies) failed to load: every request gets 503.
    Failed(Arc<str>),
}

/// How long the pool keeps one invocation per worker after the last
/// invocation lost to a dying worker or the last stuck worker.
pub const ISOLATION: Duration = Duration::from_secs(30);

/// A worker that runs one invocation at a time gets more queued behind the
/// one it is running only while that one started less than this ago: fast
/// handlers keep many frames per write, and a request never waits behind a
/// slow or blocked one; it waits in the shim for the first free worker.
pub const QUEUE_BEHIND: Duration = Duration::from_millis(5);

/// Longest wait between two looks for a free worker: a wake-up can be lost
/// when the request it was meant for is cancelled, so waiters also poll.
const RECHECK: Duration = Duration::from_millis(50);

const STARTING: u8 = 0;
const READY: u8 = 1;
const FAILED: u8 = 2;

/// The workers and their readiness.
#[derive(Debug)]
pub struct Pool {
    slots: RwLock<Vec<Option<Arc<Worker>>>>,
    next: AtomicUsize,
    generation: AtomicU64,
    /// Woken when a worker joins or frees capacity.
    available: Notify,
    /// Requests waiting for a worker with free capacity.
    waiting: AtomicUsize,
    /// Since when the pool counts time (for `isolated_until`).
    epoch: Instant,
    /// Milliseconds since `epoch` until which each worker takes one invocation at a time.
    isolated_until: AtomicU64,
    state_fast: AtomicU8,
    state: watch::Sender<State>,
    stopping: watch::Sender<bool>,
    metrics: Arc<Metrics>,
}

impl Pool {
    /// An empty pool in the `Starting` state.
    pub fn new(workers: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            slots: RwLock::new(vec![None; workers]),
            next: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            available: Notify::new(),
            waiting: AtomicUsize::new(0),
            epoch: Instant::now(),
            isolated_until: AtomicU64::new(0),
            state_fast: AtomicU8::new(STARTING),
            state: watch::Sender::new(State::Starting),
            stopping: watch::Sender::new(false),
            metrics,
        })
    }

    /// Whether the pool can serve right now (cheap: one atomic load).
    pub fn is_ready(&self) -> bool {
        self.state_fast.load(Ordering::Acquire) == READY
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state.borrow().clone()
    }

    /// Waits until the pool leaves `Starting`; returns the state it reached.
    pub async fn settled(&self) -> State {
        let mut rx = self.state.subscribe();
        match rx.wait_for(|s| *s != State::Starting).await {
            Ok(state) => state.clone(),
            Err(_) => State::Failed("the worker pool stopped".into()),
        }
    }

    fn fail(&self, message: String) {
        tracing::error!(message = "the handler failed to load; every request will get 503", error = %message);
        self.state_fast.store(FAILED, Ordering::Release);
        self.state.send_replace(State::Failed(message.into()));
    }

    fn register(&self, slot: usize, worker: Arc<Worker>) {
        write(&self.slots)[slot] = Some(worker);
        self.metrics.workers_ready.inc();
        if self.state_fast.load(Ordering::Acquire) == STARTING {
            self.state_fast.store(READY, Ordering::Release);
            self.state.send_replace(State::Ready);
        }
        self.available.notify_waiters();
    }

    fn unregister(&self, slot: usize) {
        write(&self.slots)[slot] = None;
        self.metrics.workers_ready.dec();
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether each worker takes one invocation at a time (see the module docs).
    pub fn is_isolated(&self) -> bool {
        let until = self.isolated_until.load(Ordering::Relaxed);
        until != 0 && self.now_ms() < until
    }

    /// Gives each worker one invocation at a time for [`ISOLATION`] from now:
    /// a worker died under an invocation, or got stuck in one.
    pub fn isolate(&self, why: &'static str) {
        let was = self.is_isolated();
        let until = self.now_ms() + ISOLATION.as_millis() as u64;
        self.isolated_until.fetch_max(until, Ordering::Relaxed);
        if !was {
            self.metrics.isolations.inc();
            tracing::warn!(
                message = "one invocation per worker until the failures stop",
                reason = why,
                for_s = ISOLATION.as_secs()
            );
        }
    }

    /// A request finished with its worker: wake one request waiting for capacity.
    pub fn freed(&self) {
        if self.waiting.load(Ordering::Relaxed) > 0 {
            self.available.notify_one();
        }
    }

    fn pick(&self) -> Option<Arc<Worker>> {
        let isolated = self.is_isolated();
        let slots = read(&self.slots);
        let n = slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut best: Option<&Arc<Worker>> = None;
        for i in 0..n {
            if let Some(w) = &slots[(start + i) % n] {
                if !w.is_open() {
                    continue;
                }
                let load = w.inflight();
                if load == 0 {
                    return Some(w.clone());
                }
                let takes_more = if isolated {
                    // Abandoned invocations of a worker that answered its
                    // ping (a promise that never settles) block nothing.
                    w.live() == 0
                } else if w.serial {
                    // In order, one at a time: queue behind a worker only
                    // while it keeps answering, never behind a blocked handler.
                    w.head_age() < QUEUE_BEHIND
                } else {
                    true
                };
                if takes_more && best.is_none_or(|b| load < b.inflight()) {
                    best = Some(w);
                }
            }
        }
        best.cloned()
    }

    /// The least-busy open worker with free capacity, waiting up to `wait`
    /// for one; `None` when none came, the pool failed or it is stopping.
    pub async fn worker(&self, wait: Duration) -> Option<Arc<Worker>> {
        if let Some(worker) = self.pick() {
            return Some(worker);
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let worker = self.wait_for_worker(wait).await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        worker
    }

    async fn wait_for_worker(&self, wait: Duration) -> Option<Arc<Worker>> {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.available.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(worker) = self.pick() {
                return Some(worker);
            }
            let now = Instant::now();
            if self.state_fast.load(Ordering::Acquire) == FAILED
                || *self.stopping.borrow()
                || now >= deadline
            {
                return None;
            }
            let _ = tokio::time::timeout(RECHECK.min(deadline - now), notified).await;
        }
    }

    /// An invocation on `worker` timed out (and was answered 504): finds out,
    /// in the background, whether the worker is stuck, and replaces it if so.
    pub fn timed_out(self: &Arc<Self>, worker: Arc<Worker>) {
        tokio::spawn(watchdog::check(self.clone(), worker));
    }

    /// Installs dependencies and starts the supervisors of every worker slot.
    pub async fn boot(self: &Arc<Self>, config: &Config) -> Result<()> {
        let spec = match prepare(config).await {
            Ok(spec) => Arc::new(spec),
            Err(e) => {
                self.fail(e.to_string());
                return Err(e);
            }
        };
        let slots = read(&self.slots).len();
        for slot in 0..slots {
            tokio::spawn(supervise(self.clone(), slot, spec.clone()));
        }
        Ok(())
    }

    /// Stops every worker: closes their sockets (they exit on EOF), kills stragglers.
    pub async fn stop(&self) {
        self.stopping.send_replace(true);
        self.available.notify_waiters();
        let deadline = Instant::now() + Duration::from_secs(3);
        while read(&self.slots).iter().any(Option::is_some) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes the bootstrap, installs dependencies, and builds the worker command.
pub async fn prepare(config: &Config) -> Result<WorkerSpec> {
    let socket_dir = config.work_dir.join("run");
    // Only this user may connect to the worker sockets.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&socket_dir)
        .map_err(|source| Error::Io {
            what: "cannot create the work directory (set KIPPER_WORK_DIR to a writable path)",
            path: socket_dir.clone(),
            source,
        })?;
    let handler = std::path::absolute(&config.handler).map_err(|source| Error::Io {
        what: "cannot resolve",
        path: config.handler.clone(),
        source,
    })?;
    if !handler.is_file() {
        return Err(Error::Worker(WorkerFailure::HandlerMissing {
            path: handler,
        }));
    }
    let boot = bootstrap::write(&config.work_dir, config.runtime)?;
    let installed = deps::install(config).await?;
    let cwd = handler.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut env = vec![
        (
            "KIPPER_FUNCTION_PATH".to_string(),
            handler.display().to_string(),
        ),
        (
            "KIPPER_RUNTIME".to_string(),
            config.runtime.name().to_string(),
        ),
    ];
    if let Some(trigger) = &config.trigger {
        env.push(("KIPPER_TRIGGER".into(), trigger.clone()));
    }
    let prepend = |var: &str, dir: &Path| {
        let mut value = dir.display().to_string();
        if let Ok(old) = std::env::var(var)
            && !old.is_empty()
        {
            value = format!("{value}:{old}");
        }
        (var.to_string(), value)
    };
    let (program, args) = match config.runtime {
        Runtime::Node => {
            if let Installed::NodeModules(dir) = &installed {
                env.push(prepend("NODE_PATH", dir));
                // For ESM imports, which ignore NODE_PATH (see the bootstrap).
                env.push(("KIPPER_NODE_MODULES".into(), dir.display().to_string()));
            }
            (config.node_bin.clone(), vec![boot.display().to_string()])
        }
        Runtime::Python => {
            if let Installed::PythonTarget(dir) = &installed {
                env.push(prepend("PYTHONPATH", dir));
            }
            (
                config.python_bin.clone(),
                vec!["-u".into(), boot.display().to_string()],
            )
        }
    };
    Ok(WorkerSpec {
        program,
        args,
        env,
        cwd,
        socket_dir,
        load_timeout: config.hold_timeout.max(Duration::from_secs(60)),
    })
}

/// Keeps one worker slot filled until the pool stops.
async fn supervise(pool: Arc<Pool>, slot: usize, spec: Arc<WorkerSpec>) {
    let mut stopping = pool.stopping.subscribe();
    let mut backoff = Duration::from_millis(100);
    while !*stopping.borrow() {
        let generation = pool.generation.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let mut running = match worker::start(slot, generation, &spec).await {
            Ok(running) => running,
            Err(StartError::LoadFailed(message)) => {
                pool.fail(message);
                return;
            }
            Err(StartError::Other(error)) => {
                tracing::warn!(message = "worker failed to start; retrying", worker = slot, %error, backoff_ms = backoff.as_millis() as u64);
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stopping.changed() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let worker = running.worker.clone();
        tracing::info!(
            message = "worker ready",
            worker = slot,
            pid = worker.pid,
            ms = started.elapsed().as_millis() as u64
        );
        pool.register(slot, worker.clone());
        let status = tokio::select! {
            status = running.child.wait() => status,
            () = worker.kill.notified() => {
                if !worker.kill_requested.load(Ordering::Relaxed) {
                    // It closed its socket by itself: it is exiting; read how.
                    if let Ok(status) = tokio::time::timeout(Duration::from_secs(1), running.child.wait()).await {
                        status
                    } else {
                        let _ = running.child.kill().await;
                        running.child.wait().await
                    }
                } else {
                    let _ = running.child.kill().await;
                    running.child.wait().await
                }
            }
            _ = stopping.changed() => {
                pool.unregister(slot);
                // Closing the socket lets the worker finish and exit by itself.
                worker.kill(false);
                if tokio::time::timeout(Duration::from_secs(2), running.child.wait()).await.is_err() {
                    let _ = running.child.kill().await;
                }
                return;
            }
        };
        pool.unregister(slot);
        let status = match status {
            Ok(status) if worker.kill_requested.load(Ordering::Relaxed) => {
                format!("killed by the shim, {status}")
            }
            Ok(status) => status.to_string(),
            Err(e) => e.to_string(),
        };
        worker.exited(&status);
        let timed_out = worker.killed_for_timeout.load(Ordering::Relaxed);
        if timed_out {
            pool.metrics.restarts_timeout.inc();
            tracing::warn!(
                message = "stuck worker replaced",
                worker = slot,
                pid = worker.pid,
                answered = worker.answered()
            );
        } else {
            pool.metrics.restarts_crash.inc();
            if worker.lost() > 0 {
                pool.isolate("a worker exited during an invocation");
            }
            tracing::warn!(message = "worker exited; replacing it", worker = slot, pid = worker.pid, %status, lost = worker.lost(), answered = worker.answered());
        }
        // A worker that answered something, or lived a while, loaded and
        // served: its death was one request's doing, and its slot is refilled
        // at once. One that died before answering anything may be a handler
        // that kills every process it starts in: back off, so the pool does
        // not spend its time starting workers; the other slots keep serving.
        if worker.answered() > 0 || started.elapsed() > Duration::from_secs(10) || timed_out {
            backoff = Duration::from_millis(100);
        } else {
            tracing::info!(
                message = "worker died before answering anything; backing off",
                worker = slot,
                backoff_ms = backoff.as_millis() as u64
            );
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = stopping.changed() => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}
