//! One language worker process and the two tasks that carry its frames.
//!
//! Requests append their `INVOKE` frame to a shared buffer and wake the writer
//! task, which sends everything queued in one `write`: under load one syscall
//! carries many requests, and the worker answers many with one `sendall`.
//! The reader task completes each request's oneshot by frame id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, oneshot};

use crate::protocol::{self, Frame, Invoke, Reply, Stream};

pub use super::spawn::{Running, StartError, WorkerSpec, start};

struct Pending {
    tx: oneshot::Sender<Delivery>,
    request_id: Box<str>,
    /// Position in the write order, to tell sent from unsent when the worker dies.
    seq: u64,
}

/// How an invocation ended on its worker.
#[derive(Debug)]
pub enum Delivery {
    /// The worker answered.
    Reply(Reply),
    /// The worker died before the request was written to it: safe to send elsewhere.
    NotSent,
    /// The worker died after the request was written: it may have run.
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
    out: Mutex<Outbox>,
    wake: Notify,
    pending: Mutex<HashMap<u32, Pending>>,
    /// Sequence number of the last frame fully written to the socket.
    written: AtomicU64,
    inflight: AtomicUsize,
    dead: AtomicBool,
    /// Signalled when the worker must be killed (timeout, broken pipe).
    pub(crate) kill: Notify,
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
        read: OwnedReadHalf,
        write: OwnedWriteHalf,
        buf: BytesMut,
    ) -> Arc<Self> {
        let worker = Arc::new(Worker {
            slot,
            pid,
            out: Mutex::new(Outbox {
                buf: Vec::with_capacity(64 * 1024),
                next_seq: 0,
            }),
            wake: Notify::new(),
            pending: Mutex::new(HashMap::new()),
            written: AtomicU64::new(0),
            inflight: AtomicUsize::new(0),
            dead: AtomicBool::new(false),
            kill: Notify::new(),
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

    /// Whether the worker's connection is gone.
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
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
            self.inflight.fetch_add(1, Ordering::Relaxed);
            lock(&self.pending).insert(
                id,
                Pending {
                    tx,
                    request_id: invoke.request_id.into(),
                    seq,
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
        if pending.is_some() {
            self.inflight.fetch_sub(1, Ordering::Relaxed);
        }
        pending
    }

    /// Asks the supervisor to kill and replace this worker.
    pub fn kill(&self, for_timeout: bool) {
        if for_timeout {
            self.killed_for_timeout.store(true, Ordering::Relaxed);
        }
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
            let _ = p.tx.send(if p.seq > written {
                Delivery::NotSent
            } else {
                Delivery::Lost
            });
        }
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
                    if let Some(p) = worker.take_pending(reply.id) {
                        let _ = p.tx.send(Delivery::Reply(reply));
                    }
                }
                Ok(Some(Frame::Log { id, stream, text })) => {
                    let request_id = lock(&worker.pending)
                        .get(&id)
                        .map(|p| p.request_id.clone())
                        .unwrap_or_default();
                    log_handler_line(worker.slot, &request_id, stream, &text);
                }
                Ok(Some(Frame::Ready | Frame::LoadFailed(_))) => {}
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
