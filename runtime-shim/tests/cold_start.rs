//! Cold starts: the port accepts from the first milliseconds and holds
//! requests until the handler is ready; the hold is bounded in count and time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::time::{Duration, Instant};

use harness::{Shim, request_when_bound, write};

/// A node handler whose module takes `ms` to load (a big import, a slow config fetch).
fn slow_node(dir: &std::path::Path, ms: u64) -> std::path::PathBuf {
    write(
        dir,
        "index.js",
        &format!(
            "const end = Date.now() + {ms}; while (Date.now() < end) {{}}\nmodule.exports = async (event) => ({{ statusCode: 200, body: {{ got: event }} }});"
        ),
    )
}

fn fire(port: u16, n: usize) -> Vec<std::thread::JoinHandle<harness::Resp>> {
    (0..n)
        .map(|i| {
            std::thread::spawn(move || {
                let body = format!("{{\"n\":{i}}}");
                request_when_bound(
                    port,
                    "POST",
                    "/event",
                    &[],
                    body.as_bytes(),
                    Duration::from_secs(10),
                )
            })
        })
        .collect()
}

#[test]
fn requests_sent_before_ready_all_succeed() {
    for (file, code) in [
        ("index.js", None),
        (
            "handler.py",
            Some(
                "import time\ntime.sleep(1.0)\ndef handler(event, context):\n    return {'statusCode': 200, 'body': {'got': event}}",
            ),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let handler = match code {
            None => slow_node(dir.path(), 1000),
            Some(code) => write(dir.path(), file, code),
        };
        let started = Instant::now();
        let shim = Shim::spawn(&handler, &[("KIPPER_WORKERS", "2")]);
        let replies = fire(shim.port, 40);
        for (i, t) in replies.into_iter().enumerate() {
            let r = t.join().unwrap();
            assert_eq!(r.status, 200, "{file} request {i}: {}", r.text());
            assert_eq!(r.json()["got"]["n"], i, "{file}");
        }
        // They really were held: the handler needs a second to load.
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "{file}: {:?}",
            started.elapsed()
        );
        assert!(shim.logs().contains("listening"), "{}", shim.logs());
    }
}

#[test]
fn the_port_answers_health_while_the_handler_loads() {
    let dir = tempfile::tempdir().unwrap();
    let handler = slow_node(dir.path(), 1500);
    let shim = Shim::spawn(&handler, &[]);
    let r = request_when_bound(
        shim.port,
        "GET",
        "/health",
        &[],
        b"",
        Duration::from_secs(10),
    );
    assert_eq!(r.status, 200);
    let r = shim.get("/ready");
    assert_eq!(r.status, 503, "not ready while loading");
    shim.wait_ready();
}

#[test]
fn hold_overflow_gets_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let handler = slow_node(dir.path(), 2500);
    let shim = Shim::spawn(&handler, &[("KIPPER_HOLD_MAX", "3")]);
    shim.wait_listening();
    let replies = fire(shim.port, 10);
    let replies: Vec<_> = replies.into_iter().map(|t| t.join().unwrap()).collect();
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let refused: Vec<_> = replies.iter().filter(|r| r.status == 503).collect();
    assert_eq!((ok, refused.len()), (3, 7), "{replies:?}");
    for r in refused {
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(r.text().contains("too many requests"), "{}", r.text());
    }
    assert!(
        shim.metrics()
            .contains("kipper_shim_hold_rejected_total{reason=\"overflow\"} 7"),
        "{}",
        shim.metrics()
    );
}

#[test]
fn hold_expiry_gets_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let handler = slow_node(dir.path(), 2500);
    let shim = Shim::spawn(&handler, &[("KIPPER_HOLD_TIMEOUT", "0.3")]);
    let r = request_when_bound(shim.port, "GET", "/", &[], b"", Duration::from_secs(10));
    // A 503 (not the 200 of a loaded handler) means the hold expired first.
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    assert!(r.text().contains("did not start in time"), "{}", r.text());
    // Once loaded, the same function serves.
    shim.wait_ready();
    assert_eq!(shim.get("/").status, 200);
}

#[test]
fn sigterm_during_the_cold_start_still_serves_the_held_requests() {
    let dir = tempfile::tempdir().unwrap();
    let handler = slow_node(dir.path(), 1200);
    let mut shim = Shim::spawn(&handler, &[("KIPPER_GRACE", "10")]);
    let replies = fire(shim.port, 5);
    std::thread::sleep(Duration::from_millis(300));
    shim.sigterm();
    for t in replies {
        let r = t.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let status = shim.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}\n{}", shim.logs());
}
