//! Cold starts: the shim is started at t = 0 together with the requests, as
//! when KEDA scales a function from zero and the interceptor forwards at once.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::wrk::BODY;
use super::{Lang, Setup, ShimProcess};

fn request_bytes(path: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    )
    .into_bytes()
}

fn status_of(raw: &[u8]) -> Option<u16> {
    let line = raw.split(|b| *b == b'\r').next()?;
    std::str::from_utf8(line)
        .ok()?
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

/// `GET path` on a fresh connection; the status code.
pub fn get_status(port: u16, path: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    status_of(&raw).ok_or_else(|| std::io::Error::other("bad response"))
}

/// One cold start with one request sent at t = 0.
#[derive(Debug, Clone, Copy)]
pub struct FirstResponse {
    /// Process start to the first accepted connection.
    pub bind_ms: f64,
    /// Process start to the first (successful) response.
    pub first_ms: f64,
}

/// Starts the shim and sends one request at once, retrying only refused connects.
pub fn first_response(setup: &Setup, lang: Lang) -> Result<FirstResponse> {
    let shim = ShimProcess::spawn(setup, lang, &[])?;
    let deadline = shim.started + Duration::from_secs(30);
    let mut stream = loop {
        match TcpStream::connect(("127.0.0.1", shim.port)) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_micros(200)),
            Err(e) => bail!("the shim never accepted a connection: {e}"),
        }
    };
    let bind_ms = shim.started.elapsed().as_secs_f64() * 1e3;
    stream.set_nodelay(true)?;
    stream.write_all(&request_bytes("/event"))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let first_ms = shim.started.elapsed().as_secs_f64() * 1e3;
    match status_of(&raw) {
        Some(200) => Ok(FirstResponse { bind_ms, first_ms }),
        other => bail!(
            "the first request got {other:?}: {}",
            String::from_utf8_lossy(&raw)
        ),
    }
}

/// `n` requests sent together while the shim starts.
#[derive(Debug, Clone, Copy)]
pub struct Burst {
    /// Answered 200.
    pub ok: usize,
    /// Anything else, or no answer.
    pub failed: usize,
    /// Process start to the last response.
    pub last_ms: f64,
    /// Connection attempts refused before the port was bound (retried).
    pub refused: u64,
    /// Median time from process start to a response.
    pub p50_ms: f64,
}

/// Starts the shim and, at the same instant, `n` concurrent requests.
pub async fn burst(setup: &Setup, lang: Lang, n: usize) -> Result<Burst> {
    let shim = ShimProcess::spawn(setup, lang, &[])?;
    let port = shim.port;
    let started = shim.started;
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        tasks.push(tokio::spawn(async move {
            let mut refused = 0u64;
            let deadline = started + Duration::from_secs(30);
            let mut stream = loop {
                match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    Ok(s) => break s,
                    Err(e)
                        if e.kind() == std::io::ErrorKind::ConnectionRefused
                            && Instant::now() < deadline =>
                    {
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err(_) => return (false, refused, 0.0),
                }
            };
            if stream.write_all(&request_bytes("/event")).await.is_err() {
                return (false, refused, 0.0);
            }
            let mut raw = Vec::new();
            let ok = stream.read_to_end(&mut raw).await.is_ok() && status_of(&raw) == Some(200);
            (ok, refused, started.elapsed().as_secs_f64() * 1e3)
        }));
    }
    let (mut ok, mut failed, mut refused) = (0, 0, 0);
    let mut times = Vec::with_capacity(n);
    for t in tasks {
        match t.await {
            Ok((true, r, ms)) => {
                ok += 1;
                refused += r;
                times.push(ms);
            }
            Ok((false, r, _)) => {
                failed += 1;
                refused += r;
            }
            Err(_) => failed += 1,
        }
    }
    times.sort_by(f64::total_cmp);
    let last_ms = times.last().copied().unwrap_or(0.0);
    let p50_ms = times.get(times.len() / 2).copied().unwrap_or(0.0);
    drop(shim);
    Ok(Burst {
        ok,
        failed,
        last_ms,
        refused,
        p50_ms,
    })
}

/// The floor of any cold start: the interpreter starting and exiting, in ms (median of 5).
pub fn interpreter_start_ms(setup: &Setup, lang: Lang) -> f64 {
    let (program, args): (&str, &[&str]) = match lang {
        Lang::Node => (&setup.node, &["-e", "0"]),
        Lang::Python => (&setup.python, &["-c", "pass"]),
    };
    let mut samples: Vec<f64> = (0..5)
        .filter_map(|_| {
            let t0 = Instant::now();
            let status = Command::new(program)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .ok()?;
            status.success().then(|| t0.elapsed().as_secs_f64() * 1e3)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(0.0)
}

/// The median of `f` over `runs` runs.
pub fn median<T: Copy>(
    runs: usize,
    mut f: impl FnMut() -> Result<T>,
    key: impl Fn(&T) -> f64,
) -> Result<T> {
    let mut all = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        all.push(f()?);
    }
    all.sort_by(|a, b| key(a).total_cmp(&key(b)));
    Ok(all[all.len() / 2])
}
