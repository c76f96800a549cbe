//! The pool of language workers: boots them (after installing dependencies),
//! dispatches each invocation to the least-busy live worker, replaces a worker
//! that crashed or timed out while the others keep serving, and publishes the
//! pool's [`State`] that the hold gate and `/ready` read.

pub mod spawn;
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
use crate::{Error, Result};
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

const STARTING: u8 = 0;
const READY: u8 = 1;
const FAILED: u8 = 2;

/// The workers and their readiness.
#[derive(Debug)]
pub struct Pool {
    slots: RwLock<Vec<Option<Arc<Worker>>>>,
    next: AtomicUsize,
    generation: AtomicU64,
    available: Notify,
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

    fn pick(&self) -> Option<Arc<Worker>> {
        let slots = self
            .slots
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut best: Option<&Arc<Worker>> = None;
        for i in 0..n {
            if let Some(w) = &slots[(start + i) % n] {
                if w.is_dead() {
                    continue;
                }
                let load = w.inflight();
                if load == 0 {
                    return Some(w.clone());
                }
                if best.is_none_or(|b| load < b.inflight()) {
                    best = Some(w);
                }
            }
        }
        best.cloned()
    }

    /// The least-busy live worker, waiting up to `wait` for one when all
    /// are being replaced; `None` when none came or the pool failed.
    pub async fn worker(&self, wait: Duration) -> Option<Arc<Worker>> {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.available.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(worker) = self.pick() {
                return Some(worker);
            }
            if self.state_fast.load(Ordering::Acquire) == FAILED || *self.stopping.borrow() {
                return None;
            }
            if tokio::time::timeout_at(deadline.into(), notified)
                .await
                .is_err()
            {
                return None;
            }
        }
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
        return Err(Error::Worker(format!(
            "handler file {} does not exist (set KIPPER_FUNCTION_PATH or pass the file)",
            handler.display()
        )));
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
            status = running.child.wait() => Some(status),
            () = worker.kill.notified() => None,
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
            Some(status) => status
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e.to_string()),
            None => {
                let _ = running.child.kill().await;
                "killed by the shim".to_string()
            }
        };
        if worker.killed_for_timeout.load(Ordering::Relaxed) {
            pool.metrics.restarts_timeout.inc();
            tracing::warn!(
                message = "worker replaced after an invocation timed out",
                worker = slot,
                pid = worker.pid
            );
        } else {
            pool.metrics.restarts_crash.inc();
            tracing::warn!(message = "worker exited; replacing it", worker = slot, pid = worker.pid, %status);
        }
        // A worker that dies right after starting is crash-looping: back off.
        if started.elapsed() > Duration::from_secs(10)
            || worker.killed_for_timeout.load(Ordering::Relaxed)
        {
            backoff = Duration::from_millis(100);
        } else {
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = stopping.changed() => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}
