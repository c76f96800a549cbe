//! Shared pieces of the Redis and S3 black-box tests: a real handler process (`handler.py`),
//! the real `kipper-poll` binary, and waiting with a deadline. Everything is killed on drop.
// Test support: a failed step here is the test failure, reported by the panic.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The python handler of `tests/handler.py`, recording every delivery.
pub struct Handler {
    child: Child,
    pub port: u16,
    record: PathBuf,
    _dir: tempfile::TempDir,
}

impl Handler {
    /// Starts the handler with extra arguments (e.g. `--fail-percent 10`).
    pub fn start(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("deliveries.jsonl");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/handler.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg("--record")
            .arg(&record)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 must be installed to run the handler fixture");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("handler did not start: {line:?}"));
        Self {
            child,
            port,
            record,
            _dir: dir,
        }
    }

    /// The target URL of this handler.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/event", self.port)
    }

    /// Every delivery so far: `{"key", "attempt", "status", "start", "end", "body"}`.
    pub fn deliveries(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.record).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Deliveries answered 2xx.
    pub fn accepted(&self) -> Vec<Value> {
        self.deliveries()
            .into_iter()
            .filter(|d| d["status"].as_u64().is_some_and(|s| s < 300))
            .collect()
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `kipper-poll` process.
pub struct Sidecar {
    pub child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sidecar {
    /// Starts kipper-poll with `env` (plus quiet defaults: no admin port, text logs).
    pub fn start(env: &[(&str, String)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sidecar.log");
        let file = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_kipper-poll"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KIPPER_ADMIN_PORT", "0")
            .env("KIPPER_LOG_FORMAT", "text")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().unwrap();
        Self {
            child,
            log,
            _dir: dir,
        }
    }

    /// What the sidecar logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no drain, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
        self.child.wait().unwrap()
    }

    /// Waits for the process to exit by itself within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` until it returns true, panicking with `what` and `context()` after `timeout`.
pub async fn wait_until<F, Fut>(
    timeout: Duration,
    what: &str,
    mut check: F,
    context: impl Fn() -> String,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                context()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}
