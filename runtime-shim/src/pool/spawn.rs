//! Starting a worker process: the per-worker unix socket, the interpreter
//! running the bootstrap, its stdout/stderr forwarded to the log, and the wait
//! until it reports its handler loaded (or why it did not).

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::UnixListener;
use tokio::process::{Child, Command};

use super::worker::{Worker, lock, log_handler_line};
use crate::protocol::{self, Frame};
use crate::{Error, ProtocolViolation, Result, WorkerFailure};

const CLOSED_EARLY: &str = "the worker closed its connection before the handler loaded";

/// How waiting for the handler to load ended without it loading.
enum LoadStop {
    /// The worker closed its connection without a word: if it also exited, its
    /// exit status and stderr say more.
    ClosedEarly,
    /// The worker said why, or broke the protocol.
    Failed(StartError),
}

impl From<LoadStop> for StartError {
    fn from(stop: LoadStop) -> Self {
        match stop {
            LoadStop::ClosedEarly => StartError::LoadFailed(CLOSED_EARLY.into()),
            LoadStop::Failed(error) => error,
        }
    }
}

/// How to start a worker process.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// The interpreter.
    pub program: String,
    /// Its arguments: the bootstrap file.
    pub args: Vec<String>,
    /// Added environment: handler path, runtime, trigger, module paths.
    pub env: Vec<(String, String)>,
    /// The handler's folder.
    pub cwd: PathBuf,
    /// Where the per-worker unix sockets are created.
    pub socket_dir: PathBuf,
    /// Longest wait for the handler to load.
    pub load_timeout: Duration,
}

/// Why a worker could not be started.
#[derive(Debug)]
pub enum StartError {
    /// The handler failed to load: every request gets 503 until it is fixed.
    LoadFailed(String),
    /// The process could not be started or died early for another reason.
    Other(Error),
}

/// A started worker: the handle the pool shares, and what the supervisor owns.
pub struct Running {
    /// The handle requests are dispatched to.
    pub worker: Arc<Worker>,
    /// The process, owned by the supervisor.
    pub child: Child,
}

/// Starts a worker process and waits until its handler is loaded.
pub async fn start(slot: usize, generation: u64, spec: &WorkerSpec) -> Result<Running, StartError> {
    let socket = spec.socket_dir.join(format!("w{slot}-{generation}.sock"));
    let _ = std::fs::remove_file(&socket);
    // A socket that cannot be created (read-only dir, path over 108 bytes)
    // will not be creatable on a retry either: a failure of the whole start.
    let listener = UnixListener::bind(&socket).map_err(|e| {
        StartError::LoadFailed(format!(
            "cannot create the worker socket {} ({e}); set KIPPER_WORK_DIR to a short writable path",
            socket.display()
        ))
    })?;
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("KIPPER_SHIM_SOCKET", &socket)
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own: Ctrl-C in a terminal signals the foreground
        // group, which would make every worker die mid-shutdown (Python
        // printing a KeyboardInterrupt traceback, node workers "replaced").
        // The shim stops workers itself, by closing their socket.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| {
        StartError::LoadFailed(format!(
            "cannot start `{}` ({e}); install it or set KIPPER_NODE_BIN / KIPPER_PYTHON_BIN",
            spec.program
        ))
    })?;
    let pid = child.id();
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(forward_lines(stdout, slot, "stdout"));
    }
    let stderr_tail = Arc::new(Mutex::new(Vec::<String>::new()));
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(forward_stderr(stderr, slot, stderr_tail.clone()));
    }
    let accepted = {
        let accept = tokio::time::timeout(spec.load_timeout, listener.accept());
        tokio::pin!(accept);
        tokio::select! {
        biased;
        accepted = &mut accept => accepted,
        status = child.wait() => {
            // It may have connected (to report a load failure) just before exiting.
            match tokio::time::timeout(Duration::from_millis(200), &mut accept).await {
                Ok(accepted) => accepted,
                Err(_) => return Err(exited_early(status, &stderr_tail).await),
            }
        }
        }
    };
    let connected = match accepted {
        Ok(Ok((stream, _))) => Ok(stream),
        Ok(Err(e)) => Err(StartError::Other(Error::Worker(WorkerFailure::Accept(e)))),
        Err(_) => Err(StartError::LoadFailed(format!(
            "the {} worker did not connect within {:?}",
            spec.program, spec.load_timeout
        ))),
    };
    drop(listener);
    let _ = std::fs::remove_file(&socket);
    let stream = connected?;
    let (mut read, write) = stream.into_split();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let load = async {
        loop {
            while let Some(frame) =
                protocol::decode(&mut buf).map_err(|e| LoadStop::Failed(StartError::Other(e)))?
            {
                match frame {
                    Frame::Ready { serial } => return Ok(serial),
                    Frame::LoadFailed(msg) => {
                        return Err(LoadStop::Failed(StartError::LoadFailed(msg)));
                    }
                    Frame::Log { stream, text, .. } => log_handler_line(slot, "", stream, &text),
                    Frame::Pong(_) | Frame::Unstarted(_) => {}
                    Frame::Result(_) => {
                        return Err(LoadStop::Failed(StartError::Other(Error::Protocol(
                            ProtocolViolation::ResultBeforeReady,
                        ))));
                    }
                }
            }
            match read.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return Err(LoadStop::ClosedEarly),
                Ok(_) => {}
            }
        }
    };
    let load = tokio::time::timeout(spec.load_timeout, load);
    tokio::pin!(load);
    let loaded = tokio::select! {
        biased;
        r = &mut load => match r {
            Ok(loaded) => loaded.map_err(StartError::from),
            Err(_) => Err(StartError::LoadFailed(format!("the handler did not load within {:?}", spec.load_timeout))),
        },
        status = child.wait() => {
            // A worker that exits on a load failure says why first: read it.
            match tokio::time::timeout(Duration::from_millis(500), &mut load).await {
                Ok(Ok(Err(LoadStop::Failed(StartError::LoadFailed(m))))) => Err(StartError::LoadFailed(m)),
                _ => Err(exited_early(status, &stderr_tail).await),
            }
        }
    };
    let serial = loaded?;
    let worker = Worker::serve(slot, pid, serial, read, write, buf);
    Ok(Running { worker, child })
}

async fn exited_early(
    status: std::io::Result<ExitStatus>,
    tail: &Mutex<Vec<String>>,
) -> StartError {
    // Let the stderr forwarder catch the last lines.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let tail = lock(tail).join(" | ");
    let status = status
        .map(|s| s.to_string())
        .unwrap_or_else(|e| e.to_string());
    StartError::LoadFailed(format!(
        "the worker exited ({status}) before the handler loaded: {tail}"
    ))
}

async fn forward_lines(stream: impl tokio::io::AsyncRead + Unpin, slot: usize, name: &'static str) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(target: "handler", worker = slot, stream = name, "{line}");
    }
}

async fn forward_stderr(
    stream: impl tokio::io::AsyncRead + Unpin,
    slot: usize,
    tail: Arc<Mutex<Vec<String>>>,
) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        {
            let mut tail = lock(&tail);
            if tail.len() >= 10 {
                tail.remove(0);
            }
            tail.push(line.clone());
        }
        tracing::info!(target: "handler", worker = slot, stream = "stderr", "{line}");
    }
}
