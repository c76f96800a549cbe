//! Runs `wrk` against the shim and reads its summary.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// What one wrk run measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct WrkResult {
    /// Requests per second.
    pub rps: f64,
    /// Median latency.
    pub p50_us: f64,
    /// 99th percentile latency.
    pub p99_us: f64,
    /// Requests completed.
    pub requests: u64,
    /// Socket errors plus non-2xx/3xx answers.
    pub errors: u64,
}

/// The request of every benchmark: `POST /event` with a small JSON row, as kipper-poll sends it.
pub const BODY: &str =
    r#"{"id":42,"customer":"acme","amount":99.99,"status":"pending","name":"bench"}"#;

/// `wrk -t<threads> -c<connections> -d<duration> --latency` posting [`BODY`] to `url`.
pub fn run(url: &str, threads: u32, connections: u32, duration: Duration) -> Result<WrkResult> {
    let script = tempfile::Builder::new().suffix(".lua").tempfile()?;
    std::fs::write(
        script.path(),
        format!(
            "wrk.method = \"POST\"\nwrk.body = '{BODY}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
        ),
    )?;
    let out = Command::new("wrk")
        .arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("--latency")
        .arg("-s")
        .arg(script.path())
        .arg(url)
        .output()
        .context("running wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    parse(&text).with_context(|| format!("cannot read wrk's output:\n{text}"))
}

fn duration_us(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, factor) = if let Some(n) = s.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1_000.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1_000_000.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000_000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|n| n * factor)
}

/// Parses wrk's text summary.
pub fn parse(text: &str) -> Option<WrkResult> {
    let mut r = WrkResult::default();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", v] => r.rps = v.parse().ok()?,
            ["50%", v] => r.p50_us = duration_us(v)?,
            ["99%", v] => r.p99_us = duration_us(v)?,
            [n, "requests", "in", ..] => r.requests = n.parse().ok()?,
            ["Non-2xx", "or", "3xx", "responses:", n] => r.errors += n.parse::<u64>().ok()?,
            ["Socket", "errors:", rest @ ..] => {
                for pair in rest.chunks(2) {
                    if let [_, n] = pair {
                        r.errors += n.trim_end_matches(',').parse::<u64>().unwrap_or(0);
                    }
                }
            }
            _ => {}
        }
    }
    (r.rps > 0.0).then_some(r)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_wrk_summary() {
        let text = "Running 5s test @ http://127.0.0.1:1/event\n  2 threads and 64 connections\n  Latency Distribution\n     50%    1.02ms\n     75%    1.50ms\n     90%    2.00ms\n     99%   12.10ms\n  280302 requests in 5.00s, 57.61MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n  Non-2xx or 3xx responses: 3\nRequests/sec:  56032.29\n";
        let r = parse(text).unwrap();
        assert_eq!(r.rps, 56032.29);
        assert_eq!(r.p50_us, 1020.0);
        assert_eq!(r.p99_us, 12100.0);
        assert_eq!(r.requests, 280302);
        assert_eq!(r.errors, 6);
        assert_eq!(duration_us("85.00us"), Some(85.0));
    }
}
