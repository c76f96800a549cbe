//! Shared pieces of the black-box tests: the real kipper-poll binary, the
//! real handler process (`tests/handler.py`), and the databases. A missing
//! service fails the test loudly; names are unique per test run.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod db;
pub mod scenarios;
pub mod servers;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A unique lowercase suffix for table names.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}_{}_{nanos:x}", std::process::id())
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` every 50 ms until it holds or `timeout` passes.
pub async fn wait_until(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One delivery as the handler recorded it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub key: String,
    pub attempt: u64,
    pub status: u64,
    pub start: f64,
    pub end: f64,
    pub body: Value,
    pub raw: String,
}

/// The handler process (`tests/handler.py`) with its behaviour arguments.
pub struct Handler {
    child: Child,
    pub port: u16,
    record: PathBuf,
    dir: Option<tempfile::TempDir>,
}

impl Handler {
    /// Starts the handler on `port` (0 picks one) with extra `args`.
    pub fn start(port: u16, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_recording(port, args, dir)
    }

    /// Starts a handler that appends to the same record as `previous`.
    pub fn start_after(previous: Handler, port: u16, args: &[&str]) -> Self {
        let mut previous = previous;
        previous.stop();
        let dir = previous.dir.take().unwrap();
        Self::start_recording(port, args, dir)
    }

    fn start_recording(port: u16, args: &[&str], dir: tempfile::TempDir) -> Self {
        let record = dir.path().join("deliveries.jsonl");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/handler.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(format!("--port={port}"))
            .arg(format!("--record={}", record.display()))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 must be installed to run the handler process");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening ")
            .expect("handler did not start")
            .parse()
            .unwrap();
        Self {
            child,
            port,
            record,
            dir: Some(dir),
        }
    }

    /// The target URL of this handler.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/event", self.port)
    }

    /// Every delivery recorded so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        let text = std::fs::read_to_string(&self.record).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| Delivery {
                key: v["key"].as_str().unwrap_or_default().to_string(),
                attempt: v["attempt"].as_u64().unwrap_or(0),
                status: v["status"].as_u64().unwrap_or(0),
                start: v["start"].as_f64().unwrap_or(0.0),
                end: v["end"].as_f64().unwrap_or(0.0),
                body: v["body"].clone(),
                raw: v["raw"].as_str().unwrap_or_default().to_string(),
            })
            .collect()
    }

    /// Stops the handler (the target is then down: connections refused).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running kipper-poll process.
pub struct Sidecar {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// Settings every test sidecar gets: fast retries, no admin port clash.
pub fn base_env(trigger: &str, source_url: &str, target: &str) -> Vec<(String, String)> {
    [
        ("KIPPER_TRIGGER", trigger),
        ("KIPPER_SOURCE_URL", source_url),
        ("KIPPER_TARGET_URL", target),
        ("KIPPER_POLL_INTERVAL", "200ms"),
        ("KIPPER_BACKOFF_INITIAL", "20ms"),
        ("KIPPER_BACKOFF_MAX", "100ms"),
        ("KIPPER_ADMIN_PORT", "0"),
        ("KIPPER_LOG_FORMAT", "text"),
        ("RUST_LOG", "info,kipper_poll=debug"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

impl Sidecar {
    /// Starts the kipper-poll binary with exactly `env` (nothing inherited
    /// but PATH, so no stray binding variable changes the test).
    pub fn start(env: &[(String, String)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sidecar.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kipper-poll"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap();
        Self {
            child,
            log,
            _dir: dir,
        }
    }

    /// The sidecar's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no drain, no release; the database frees the locks.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        // kill(1) rather than libc: unsafe code is forbidden in the workspace.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Whether the process has exited (and how).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- kipper-poll log ---\n{}", self.log());
        }
        self.kill();
    }
}

/// Runs the binary with `env` to its exit and returns (exit code, stderr).
pub fn run_to_exit(env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kipper-poll"))
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Deliveries grouped by idempotency key.
pub fn by_key(deliveries: &[Delivery]) -> HashMap<String, Vec<Delivery>> {
    let mut map: HashMap<String, Vec<Delivery>> = HashMap::new();
    for d in deliveries {
        map.entry(d.key.clone()).or_default().push(d.clone());
    }
    map
}

/// Keys delivered twice at overlapping times (which must never happen).
pub fn concurrent_duplicates(deliveries: &[Delivery]) -> Vec<String> {
    let mut bad = Vec::new();
    for (key, mut list) in by_key(deliveries) {
        list.sort_by(|a, b| a.start.total_cmp(&b.start));
        if list.windows(2).any(|w| w[1].start < w[0].end) {
            bad.push(key);
        }
    }
    bad
}

/// A plain HTTP/1.0 GET of `path` on 127.0.0.1:`port`: status line, headers and body.
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}
