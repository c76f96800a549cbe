//! One language worker process and the two tasks that carry its frames.
//!
//! Requests append their `INVOKE` frame to a shared buffer and wake the writer
//! task, which sends everything queued in one `write`: under load one syscall
//! carries many requests, and the worker answers many with one `sendall`.
//! The reader task completes each request's oneshot by frame id.
//!
//! An invocation that timed out is *abandoned*, not killed: its answer, if it
//! ever comes, is dropped, and it still counts as in flight until then, so a
//! worker blocked by it is not sent more work than it can take. Whether the
//! worker is stuck or merely slow on that one invocation is asked with a
//! `PING` (see [`super::watchdog`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, oneshot, watch};

use crate::protocol::{self, Frame, Invoke, Reply, Stream};

pub use super::spawn::{Running, StartError, WorkerSpec, start};

struct Pending {
    tx: oneshot::Sender<Delivery>,
    request_id: Box<str>,
    /// Position in the write order, to tell sent from unsent when the worker dies.
    seq: u64,
    /// Timed out and answered 504: a late answer is dropped.
    abandoned: bool,
}

/// How an invocation ended on its worker.
#[derive(Debug)]
pub enum Delivery {
    /// The worker answered.
    Reply(Reply),
    /// The worker died before the request was written to it: safe to send elsewhere.
    NotSent,
    /// The worker died after the request was written: it may have run, so
    /// it must not be replayed.
    Lost,
}

/// The queue of frames not yet written, in id order.
struct Outbox {
    buf: Vec<u8>,
    next_seq: u64,
}

/// A worker the pool dispatches to.
pub struct Worker {
    /// Its slot in the pool (stable across replacements).
    pub slot: usize,
    /// The process id, for logs.
    pub pid: Option<u32>,
    /// It runs one invocation at a time, in order (a sync python handler).
    pub serial: bool,
    born: Instant,
    /// Serial workers: when the invocation they are running started
    /// (microseconds since `born`).
    head_since: AtomicU64,
    out: Mutex<Outbox>,
    wake: Notify,
    pending: Mutex<HashMap<u32, Pending>>,
    /// Sequence number of the last frame fully written to the socket.
    written: AtomicU64,
    inflight: AtomicUsize,
    /// Of `inflight`, the invocations that timed out and were answered 504.
    abandoned: AtomicUsize,
    /// Replies received: a worker that answered something is not crash-looping.
    answered: AtomicU64,
    /// Requests that were written to it when it died (answered 502).
    lost: AtomicUsize,
    dead: AtomicBool,
    /// No new invocations: it is stuck, and replaced once its others end.
    draining: AtomicBool,
    /// A stuck-check is running (one at a time).
    pub(crate) checking: AtomicBool,
    next_ping: AtomicU32,
    last_pong: AtomicU32,
    pong: Notify,
    /// How the process ended, once the supervisor has reaped it.
    exit: watch::Sender<Option<Arc<str>>>,
    /// Signalled when the worker died or must be killed.
    pub(crate) kill: Notify,
    /// The shim decided to kill it (stuck), as opposed to it dying by itself.
    pub(crate) kill_requested: AtomicBool,
    pub(crate) killed_for_timeout: AtomicBool,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("slot", &self.slot)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

/// A request in flight on a worker; dropping it forgets the request.
pub struct Ticket {
    worker: Arc<Worker>,
    id: u32,
    rx: Option<oneshot::Receiver<Delivery>>,
}

impl Ticket {
    /// Gives up on the answer (the invocation timed out): the worker keeps
    /// counting it as in flight until its answer comes, which is then dropped.
    pub fn abandon(mut self) {
        if self.rx.take().is_some() {
            self.worker.abandon(self.id);
        }
    }

    /// Waits for the worker's answer.
    pub async fn reply(&mut self) -> Delivery {
        let Some(rx) = self.rx.as_mut() else {
            return Delivery::Lost;
        };
        let delivery = rx.await.unwrap_or(Delivery::Lost);
        self.rx = None;
        delivery
    }

    /// The worker serving this request.
    pub fn worker(&self) -> &Arc<Worker> {
        &self.worker
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.rx.is_some() {
            self.worker.take_pending(self.id);
        }
    }
}

impl Worker {
    /// Wraps a connected worker whose handler loaded, and starts its reader and writer tasks.
    pub(crate) fn serve(
        slot: usize,
        pid: Option<u32>,
        serial: bool,
        read: OwnedReadHalf,
        write: OwnedWriteHalf,
        buf: BytesMut,
    ) -> Arc<Self> {
        let worker = Arc::new(Worker {
            slot,
            pid,
            serial,
            born: Instant::now(),
            head_since: AtomicU64::new(0),
            out: Mutex::new(Outbox {
                buf: Vec::with_capacity(64 * 1024),
                next_seq: 0,
            }),
            wake: Notify::new(),
            pending: Mutex::new(HashMap::new()),
            written: AtomicU64::new(0),
            inflight: AtomicUsize::new(0),
            abandoned: AtomicUsize::new(0),
            answered: AtomicU64::new(0),
            lost: AtomicUsize::new(0),
            dead: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            checking: AtomicBool::new(false),
            next_ping: AtomicU32::new(0),
            last_pong: AtomicU32::new(0),
            pong: Notify::new(),
            exit: watch::Sender::new(None),
            kill: Notify::new(),
            kill_requested: AtomicBool::new(false),
            killed_for_timeout: AtomicBool::new(false),
        });
        tokio::spawn(read_loop(worker.clone(), read, buf));
        tokio::spawn(write_loop(worker.clone(), write));
        worker
    }

    /// Requests currently on this worker.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    fn mark_head(&self) {
        let us = self.born.elapsed().as_micros() as u64;
        self.head_since.store(us, Ordering::Relaxed);
    }

    /// Serial workers: how long the invocation they are running has run.
    pub fn head_age(&self) -> Duration {
        let since = self.head_since.load(Ordering::Relaxed);
        self.born
            .elapsed()
            .saturating_sub(Duration::from_micros(since))
    }

    /// Requests on this worker that are still waited for (not abandoned).
    pub fn live(&self) -> usize {
        self.inflight()
            .saturating_sub(self.abandoned.load(Ordering::Relaxed))
    }

    /// Replies this worker sent.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// Requests that were written to it when it died.
    pub fn lost(&self) -> usize {
        self.lost.load(Ordering::Relaxed)
    }

    /// Whether the worker's connection is gone.
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
    }

    /// Whether it takes new invocations (alive and not draining).
    pub fn is_open(&self) -> bool {
        !self.is_dead() && !self.draining.load(Ordering::Relaxed)
    }

    /// Stops (or resumes) sending it new invocations.
    pub(crate) fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::Relaxed);
    }

    /// Queues a `PING`; returns its id, or `None` when the worker is dead.
    pub(crate) fn ping(&self) -> Option<u32> {
        let id = self
            .next_ping
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1);
        let was_empty = {
            let mut out = lock(&self.out);
            if self.is_dead() {
                return None;
            }
            let was_empty = out.buf.is_empty();
            protocol::encode_ping(id, &mut out.buf);
            was_empty
        };
        if was_empty {
            self.wake.notify_one();
        }
        Some(id)
    }

    /// Whether the `PONG` of ping `id` (or a later one) arrives within `within`.
    pub(crate) async fn pong(&self, id: u32, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.pong.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.last_pong.load(Ordering::Acquire) >= id {
                return true;
            }
            if self.is_dead() || tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.last_pong.load(Ordering::Acquire) >= id;
            }
        }
    }

    /// Records how the process ended (set by the supervisor once reaped).
    pub(crate) fn exited(&self, status: &str) {
        self.exit.send_replace(Some(status.into()));
    }

    /// How the process ended, waiting up to `within` for it to be reaped.
    pub async fn exit_status(&self, within: Duration) -> Option<Arc<str>> {
        let mut rx = self.exit.subscribe();
        let waited = tokio::time::timeout(within, rx.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(status)) => status.clone(),
            _ => None,
        }
    }

    /// Queues one invocation; the frame id is assigned here, under the outbox
    /// lock, so frames sit in the outbox in sequence order.
    pub fn invoke(self: &Arc<Self>, mut invoke: Invoke<'_>) -> Option<Ticket> {
        if self.is_dead() {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        let (id, was_empty) = {
            let mut out = lock(&self.out);
            // Checked under the outbox lock: `die` sets the flag under it too,
            // so a request is either refused here or drained by `die`.
            if self.is_dead() {
                return None;
            }
            out.next_seq += 1;
            let seq = out.next_seq;
            // The wire id is the low half of the sequence; 0 means "no invocation".
            let id = (seq as u32).max(1);
            invoke.id = id;
            if self.inflight.fetch_add(1, Ordering::Relaxed) == 0 && self.serial {
                self.mark_head();
            }
            lock(&self.pending).insert(
                id,
                Pending {
                    tx,
                    request_id: invoke.request_id.into(),
                    seq,
                    abandoned: false,
                },
            );
            let was_empty = out.buf.is_empty();
            invoke.encode(&mut out.buf);
            (id, was_empty)
        };
        if was_empty {
            self.wake.notify_one();
        }
        Some(Ticket {
            worker: self.clone(),
            id,
            rx: Some(rx),
        })
    }

    fn take_pending(&self, id: u32) -> Option<Pending> {
        let pending = lock(&self.pending).remove(&id);
        if let Some(p) = &pending {
            if p.abandoned {
                self.abandoned.fetch_sub(1, Ordering::Relaxed);
            }
            self.inflight.fetch_sub(1, Ordering::Relaxed);
        }
        pending
    }

    fn abandon(&self, id: u32) {
        let mut pending = lock(&self.pending);
        if let Some(p) = pending.get_mut(&id)
            && !p.abandoned
        {
            p.abandoned = true;
            self.abandoned.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Asks the supervisor to kill and replace this worker.
    pub fn kill(&self, for_timeout: bool) {
        if for_timeout {
            self.killed_for_timeout.store(true, Ordering::Relaxed);
        }
        self.kill_requested.store(true, Ordering::Relaxed);
        self.mark_dead();
        self.wake.notify_one();
        self.kill.notify_one();
    }

    fn mark_dead(&self) {
        let _out = lock(&self.out);
        self.dead.store(true, Ordering::Relaxed);
    }

    /// Marks the worker dead and fails every request still on it.
    fn die(&self) {
        self.mark_dead();
        let drained: Vec<Pending> = lock(&self.pending).drain().map(|(_, p)| p).collect();
        self.inflight.fetch_sub(drained.len(), Ordering::Relaxed);
        let written = self.written.load(Ordering::Acquire);
        for p in drained {
            if p.abandoned {
                self.abandoned.fetch_sub(1, Ordering::Relaxed);
                continue;
            }
            let _ = p.tx.send(if p.seq > written {
                Delivery::NotSent
            } else {
                self.lost.fetch_add(1, Ordering::Relaxed);
                Delivery::Lost
            });
        }
        self.pong.notify_waiters();
        self.wake.notify_one();
        self.kill.notify_one();
    }
}

/// Locks a mutex, recovering from a poisoned lock: the data (a buffer or a
/// map of senders) stays consistent even if a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn read_loop(worker: Arc<Worker>, mut read: OwnedReadHalf, mut buf: BytesMut) {
    'outer: loop {
        loop {
            match protocol::decode(&mut buf) {
                Ok(Some(Frame::Result(reply))) => {
                    worker.answered.fetch_add(1, Ordering::Relaxed);
                    if worker.serial {
                        // In order: the next queued invocation starts now.
                        worker.mark_head();
                    }
                    if let Some(p) = worker.take_pending(reply.id) {
                        let _ = p.tx.send(Delivery::Reply(reply));
                    }
                }
                Ok(Some(Frame::Unstarted(id))) => {
                    // The worker is exiting (id 0 says only that): nothing
                    // more may be written to it, or a request handed back
                    // would come back to it.
                    worker.mark_dead();
                    // Never run: as safe to send elsewhere as an unwritten one.
                    if let Some(p) = worker.take_pending(id) {
                        let _ = p.tx.send(Delivery::NotSent);
                    }
                }
                Ok(Some(Frame::Pong(id))) => {
                    worker.last_pong.fetch_max(id, Ordering::AcqRel);
                    worker.pong.notify_waiters();
                }
                Ok(Some(Frame::Log { id, stream, text })) => {
                    let request_id = lock(&worker.pending)
                        .get(&id)
                        .map(|p| p.request_id.clone())
                        .unwrap_or_default();
                    log_handler_line(worker.slot, &request_id, stream, &text);
                }
                Ok(Some(Frame::Ready { .. } | Frame::LoadFailed(_))) => {}
                Ok(None) => break,
                Err(error) => {
                    tracing::error!(message = "worker sent a malformed frame; replacing it", worker = worker.slot, %error);
                    break 'outer;
                }
            }
        }
        match read.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    worker.die();
}

async fn write_loop(worker: Arc<Worker>, mut write: OwnedWriteHalf) {
    let mut spare = Vec::with_capacity(64 * 1024);
    loop {
        worker.wake.notified().await;
        if worker.is_dead() {
            break;
        }
        let upto = {
            let mut out = lock(&worker.out);
            std::mem::swap(&mut out.buf, &mut spare);
            out.next_seq
        };
        if spare.is_empty() {
            continue;
        }
        if write.write_all(&spare).await.is_err() {
            worker.die();
            break;
        }
        worker.written.store(upto, Ordering::Release);
        spare.clear();
        if spare.capacity() > 4 * 1024 * 1024 {
            spare.shrink_to(64 * 1024);
        }
    }
    // Dropping the write half closes the socket: the worker sees EOF and exits.
}

pub(crate) fn log_handler_line(slot: usize, request_id: &str, stream: Stream, text: &[u8]) {
    let text = String::from_utf8_lossy(text);
    let text = text.trim_end();
    match stream {
        // A thrown exception failed the request: ERROR, with its stack.
        Stream::Thrown => {
            tracing::error!(target: "handler", request_id, worker = slot, stream = "stderr", "handler threw: {text}")
        }
        Stream::Stdout | Stream::Stderr => {
            let stream = if stream == Stream::Stdout {
                "stdout"
            } else {
                "stderr"
            };
            if request_id.is_empty() {
                tracing::info!(target: "handler", worker = slot, stream, "{text}");
            } else {
                tracing::info!(target: "handler", request_id, worker = slot, stream, "{text}");
            }
        }
    }
}
