//! Failure handling with real workers: timeouts, killed workers, body limits,
//! the SIGTERM drain, and the metrics that report them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use harness::{Shim, request, write};

const SLOW_OR_FAST: &str = r#"
module.exports = async (event, context) => {
  if (context.path === '/slow') await new Promise((r) => setTimeout(r, 5000));
  if (context.path === '/spin') { const end = Date.now() + 5000; while (Date.now() < end) {} }
  return { pid: process.pid };
};
"#;

#[test]
fn a_slow_handler_gets_504_and_only_a_stuck_worker_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let handler = write(dir.path(), "index.js", SLOW_OR_FAST);
    let shim = Shim::start(&handler, &[("KIPPER_TIMEOUT", "0.5")]);
    let first_pid = shim.get("/").json()["pid"].as_u64().unwrap();
    // The handler takes 5 s: a 504 means the 0.5 s timeout cut it short.
    let r = shim.get("/slow");
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(r.text().contains("KIPPER_TIMEOUT"));
    // Awaiting blocks nothing: the same worker serves the next request.
    let r = shim.get("/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["pid"].as_u64().unwrap(), first_pid);
    // A busy loop blocks the worker's event loop: it is replaced, and the
    // next request waits for the new one and succeeds.
    let r = shim.get("/spin");
    assert_eq!(r.status, 504, "{}", r.text());
    let r = shim.get("/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_ne!(r.json()["pid"].as_u64().unwrap(), first_pid);
    assert!(
        shim.metrics()
            .contains("kipper_shim_worker_restarts_total{reason=\"timeout\"} 1"),
        "{}",
        shim.metrics()
    );
}

#[test]
fn a_python_slow_handler_gets_504_too() {
    let dir = tempfile::tempdir().unwrap();
    let handler = write(
        dir.path(),
        "handler.py",
        "import os, time\ndef handler(event, context):\n    if context['path'] == '/slow':\n        time.sleep(5)\n    return {'pid': os.getpid()}",
    );
    let shim = Shim::start(&handler, &[("KIPPER_TIMEOUT", "0.5")]);
    assert_eq!(shim.get("/slow").status, 504);
    assert_eq!(shim.get("/").status, 200);
}

#[test]
fn a_killed_worker_is_replaced_while_the_others_serve() {
    let dir = tempfile::tempdir().unwrap();
    let handler = write(dir.path(), "index.js", SLOW_OR_FAST);
    let shim = Shim::start(&handler, &[("KIPPER_WORKERS", "2")]);
    let mut pids = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.len() < 2 && Instant::now() < deadline {
        pids.insert(shim.get("/").json()["pid"].as_u64().unwrap());
    }
    assert_eq!(pids.len(), 2, "both workers answer");
    let victim = *pids.iter().next().unwrap();
    assert!(
        Command::new("kill")
            .args(["-KILL", &victim.to_string()])
            .status()
            .unwrap()
            .success()
    );
    // Once the shim has seen the death (a request racing the kill itself may
    // have been inside the dying process), every request succeeds: the
    // survivor serves while the victim is replaced.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !shim
        .metrics()
        .contains("kipper_shim_worker_restarts_total{reason=\"crash\"} 1")
    {
        assert!(
            Instant::now() < deadline,
            "the death was not noticed: {}",
            shim.metrics()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && seen.len() < 2 {
        let r = shim.get("/");
        assert_eq!(r.status, 200, "{}", r.text());
        seen.insert(r.json()["pid"].as_u64().unwrap());
        seen.remove(&victim);
    }
    assert_eq!(seen.len(), 2, "a new worker joined the pool: {seen:?}");
    assert!(
        shim.metrics()
            .contains("kipper_shim_worker_restarts_total{reason=\"crash\"} 1"),
        "{}",
        shim.metrics()
    );
    assert!(
        shim.metrics().contains("kipper_shim_workers_ready 2"),
        "{}",
        shim.metrics()
    );
}

#[test]
fn a_crash_during_an_invocation_answers_502_and_heals() {
    let dir = tempfile::tempdir().unwrap();
    let handler = write(
        dir.path(),
        "index.js",
        "module.exports = (e, c) => { if (c.path === '/exit') process.exit(3); return 'ok'; };",
    );
    let shim = Shim::start(&handler, &[]);
    let r = shim.get("/exit");
    // A failed attempt for kipper-poll, not "not ready": 502, no Retry-After.
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.header("retry-after").is_none());
    assert_eq!(
        r.json()["error"],
        "the worker running this invocation exited (exit status: 3); it was not retried"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = shim.get("/");
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "pool did not heal: {}", r.text());
    }
}

#[test]
fn bodies_over_the_limit_get_413() {
    let dir = tempfile::tempdir().unwrap();
    let handler = write(
        dir.path(),
        "handler.py",
        "def handler(event):\n    return len(event)",
    );
    let shim = Shim::start(&handler, &[("KIPPER_BODY_LIMIT", "1000")]);
    let r = request(
        shim.port,
        "POST",
        "/",
        &[("content-type", "text/plain")],
        &[b'a'; 1000],
    );
    assert_eq!((r.status, r.text().as_str()), (200, "1000"));
    let r = request(
        shim.port,
        "POST",
        "/",
        &[("content-type", "text/plain")],
        &[b'a'; 1001],
    );
    assert_eq!(r.status, 413);
    assert!(r.text().contains("KIPPER_BODY_LIMIT"));
}

#[test]
fn sigterm_finishes_in_flight_requests_then_exits() {
    let dir = tempfile::tempdir().unwrap();
    let handler = write(
        dir.path(),
        "index.js",
        "module.exports = async () => { await new Promise(r => setTimeout(r, 800)); return 'finished'; };",
    );
    let mut shim = Shim::start(&handler, &[("KIPPER_GRACE", "5")]);
    let port = shim.port;
    let in_flight = std::thread::spawn(move || request(port, "GET", "/", &[], b""));
    std::thread::sleep(Duration::from_millis(200));
    shim.sigterm();
    let r = in_flight.join().unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "finished"));
    let status = shim.wait_exit(Duration::from_secs(8));
    assert!(status.success(), "{status:?}\n{}", shim.logs());
    // The port is closed after the drain.
    assert!(harness::try_request(port, "GET", "/health", &[], b"").is_err());
}

#[test]
fn metrics_live_on_the_admin_port() {
    let dir = tempfile::tempdir().unwrap();
    let handler = write(
        dir.path(),
        "index.js",
        "module.exports = (e, c) => c.path === '/bad' ? { statusCode: 404 } : 'ok';",
    );
    let shim = Shim::start(&handler, &[]);
    shim.get("/");
    shim.get("/bad");
    // The function keeps every path of its port, /metrics included.
    assert_eq!(shim.get("/metrics").text(), "ok");
    let m = shim.metrics();
    for needle in [
        "kipper_shim_invocations_total{status=\"2xx\"} 2",
        "kipper_shim_invocations_total{status=\"4xx\"} 1",
        "kipper_shim_invocation_duration_seconds_count 3",
        "kipper_shim_held_requests 0",
        "kipper_shim_workers_ready 1",
    ] {
        assert!(m.contains(needle), "{needle} missing:\n{m}");
    }
    assert_eq!(request(shim.admin, "GET", "/ready", &[], b"").status, 200);
}

#[test]
fn requests_avoid_a_worker_busy_with_a_slow_invocation() {
    let dir = tempfile::tempdir().unwrap();
    // A sync python handler blocks its worker: dispatch must pick the idle one.
    let handler = write(
        dir.path(),
        "handler.py",
        "import os, time\ndef handler(event, context):\n    if context['path'] == '/slow':\n        time.sleep(1.5)\n    return {'pid': os.getpid()}",
    );
    let shim = Shim::start(&handler, &[("KIPPER_WORKERS", "2")]);
    let port = shim.port;
    let slow = std::thread::spawn(move || request(port, "GET", "/slow", &[], b""));
    std::thread::sleep(Duration::from_millis(200));
    let mut fast_pids = HashSet::new();
    for _ in 0..10 {
        let r = shim.get("/");
        assert_eq!(r.status, 200);
        fast_pids.insert(r.json()["pid"].as_u64().unwrap());
    }
    let slow = slow.join().unwrap();
    assert_eq!(slow.status, 200);
    let slow_pid = slow.json()["pid"].as_u64().unwrap();
    // Every fast request went to the idle worker, none queued behind the slow one.
    assert_eq!(fast_pids.len(), 1, "{fast_pids:?}");
    assert!(
        !fast_pids.contains(&slow_pid),
        "{fast_pids:?} vs {slow_pid}"
    );
}

#[test]
fn an_unusable_work_dir_answers_503_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let handler = write(dir.path(), "index.js", "module.exports = () => 'ok';");
    // Unix socket paths are limited to 108 bytes.
    let long = dir.path().join("w".repeat(120));
    let shim = Shim::spawn(&handler, &[("KIPPER_WORK_DIR", long.to_str().unwrap())]);
    let r = harness::request_when_bound(shim.port, "GET", "/", &[], b"", Duration::from_secs(10));
    // Callers get the private one-line answer; the setting at fault is in the log.
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("failed to load"), "{}", r.text());
    assert!(
        !r.text().contains(dir.path().to_str().unwrap()),
        "{}",
        r.text()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !shim.logs().contains("KIPPER_WORK_DIR") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(shim.logs().contains("KIPPER_WORK_DIR"), "{}", shim.logs());
}

#[test]
fn concurrent_requests_get_their_own_answers() {
    let dir = tempfile::tempdir().unwrap();
    let node = write(
        dir.path(),
        "index.js",
        "module.exports = async (event) => { await new Promise(r => setImmediate(r)); return { echo: event.n }; };",
    );
    let python = write(
        dir.path(),
        "handler.py",
        "def handler(event):\n    return {'echo': event['n']}",
    );
    for handler in [node, python] {
        let shim = Shim::start(&handler, &[("KIPPER_WORKERS", "2")]);
        let port = shim.port;
        let threads: Vec<_> = (0..16)
            .map(|t| {
                std::thread::spawn(move || {
                    for i in 0..40 {
                        let n = t * 1000 + i;
                        let body = format!("{{\"n\":{n}}}");
                        let r = request(port, "POST", "/event", &[], body.as_bytes());
                        assert_eq!(r.status, 200, "{}", r.text());
                        assert_eq!(r.json()["echo"], n, "request {n} got another's answer");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}
