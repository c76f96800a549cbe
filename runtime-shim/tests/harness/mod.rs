//! Black-box harness: starts the real `kipper-shim` binary with real node and
//! python workers on free loopback ports, and a tiny blocking HTTP/1.1 client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound then released; the shim binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes `text` to `dir/name`, creating parent directories.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

/// A running shim; killed on drop.
pub struct Shim {
    pub child: Child,
    pub port: u16,
    pub admin: u16,
    pub log: PathBuf,
    _work: tempfile::TempDir,
}

impl Shim {
    /// Starts the shim for `handler` with extra environment and waits only
    /// until its port is bound (the first milliseconds), not for the handler.
    /// The function port is chosen by the OS (`PORT=0`) and read from the log,
    /// so parallel tests never collide on it; an admin port taken meanwhile
    /// by another test is retried.
    pub fn spawn(handler: &Path, env: &[(&str, &str)]) -> Shim {
        for _ in 0..5 {
            if let Some(shim) = Shim::try_spawn(handler, env) {
                return shim;
            }
        }
        panic!("kipper-shim could not bind its ports in 5 attempts");
    }

    fn try_spawn(handler: &Path, env: &[(&str, &str)]) -> Option<Shim> {
        let work = tempfile::tempdir().unwrap();
        let admin = free_port();
        let log = work.path().join("shim.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kipper-shim"));
        cmd.arg(handler)
            .env_remove("KIPPER_TRIGGER")
            .env_remove("KIPPER_RUNTIME")
            .env_remove("KIPPER_MODE")
            .env("PORT", "0")
            .env("KIPPER_BIND", "127.0.0.1")
            .env("KIPPER_ADMIN_PORT", admin.to_string())
            .env("KIPPER_WORK_DIR", work.path().join("work"))
            .env("KIPPER_WORKERS", "1")
            .env("KIPPER_LOG_FORMAT", "text")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start kipper-shim");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains(" listening ")) {
                let port = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("addr=127.0.0.1:"))
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| panic!("no port in {line}"));
                return Some(Shim {
                    child,
                    port,
                    admin,
                    log,
                    _work: work,
                });
            }
            if let Some(status) = child.try_wait().unwrap() {
                if text.contains("cannot listen") {
                    return None;
                }
                panic!("kipper-shim exited ({status}) before listening:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "kipper-shim did not listen within 10 s:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Starts the shim and waits until `/ready` answers 200.
    pub fn start(handler: &Path, env: &[(&str, &str)]) -> Shim {
        let shim = Shim::spawn(handler, env);
        shim.wait_ready();
        shim
    }

    /// Waits until `/ready` is 200; panics with the log after 30 s.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = try_request(self.port, "GET", "/ready", &[], b"") {
                if r.status == 200 {
                    return;
                }
                assert!(
                    !r.text().contains("failed to load"),
                    "the handler failed to load: {}\n{}",
                    r.text(),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("shim not ready in 30 s; log:\n{}", self.logs());
    }

    /// Waits until `/health` answers (the port is bound), whatever `/ready` says.
    pub fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if try_request(self.port, "GET", "/health", &[], b"").is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("shim not listening in 30 s; log:\n{}", self.logs());
    }

    pub fn get(&self, path: &str) -> Resp {
        request(self.port, "GET", path, &[], b"")
    }

    pub fn post_json(&self, path: &str, body: &str) -> Resp {
        request(
            self.port,
            "POST",
            path,
            &[("content-type", "application/json")],
            body.as_bytes(),
        )
    }

    pub fn metrics(&self) -> String {
        request(self.admin, "GET", "/metrics", &[], b"").text()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM (through `kill`, as the workspace forbids unsafe code).
    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "shim did not exit within {within:?}; log:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One request on a fresh connection; panics on transport errors.
pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    try_request(port, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// One request on a fresh connection.
pub fn try_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Resp> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse(&raw).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad response: {:?}", String::from_utf8_lossy(&raw)),
        )
    })
}

/// Like [`try_request`], retrying refused connections until `within` (the port is not bound yet).
pub fn request_when_bound(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    within: Duration,
) -> Resp {
    let deadline = Instant::now() + within;
    loop {
        match try_request(port, method, path, headers, body) {
            Ok(r) => return r,
            Err(e)
                if e.kind() == std::io::ErrorKind::ConnectionRefused
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("{method} {path}: {e}"),
        }
    }
}

fn parse(raw: &[u8]) -> Option<Resp> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Resp {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

/// Runs the shim in batch mode to completion: (exit code, stdout, stderr).
pub fn batch(handler: &Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let work = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kipper-shim"));
    cmd.arg(handler)
        .env_remove("KIPPER_TRIGGER")
        .env("KIPPER_MODE", "batch")
        .env("KIPPER_WORK_DIR", work.path())
        .env("KIPPER_ADMIN_PORT", "0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The exact body of every answer while the handler has failed to load.
pub const LOAD_FAILED_BODY: &str =
    r#"{"error":"the handler failed to load; the reason is in the function's log"}"#;

/// A load failure's answer tells the caller one line, and the log holds the reason
/// (`needle`) beside the request's id.
pub fn assert_private_load_failure(shim: &Shim, r: &Resp, needle: &str) {
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.text(), LOAD_FAILED_BODY, "no stack, no paths, no reason");
    assert!(r.header("retry-after").is_some());
    let id = r
        .header("x-request-id")
        .expect("a request id to find the log line");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let logs = shim.logs();
        // The reason may span lines (a stack); it follows the request id.
        if logs.find(id).is_some_and(|at| logs[at..].contains(needle)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no log line with request id {id} and {needle:?}:\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
