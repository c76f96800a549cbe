//! A request whose handler kills or hangs its worker fails alone (issue 13):
//! it gets 502 (worker died) or 504 (timed out), never a 503, never a replay;
//! the requests beside it keep getting their 200s, and worker restarts stay
//! bounded. Run with `--nocapture` to see the measured shares.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::{Shim, request, write};

/// `/crash` exits the worker; anything else answers after a short wait.
const NODE: &str = r#"
module.exports = async (event, context) => {
  if (context.path === '/crash') process.exit(1);
  await new Promise((r) => setTimeout(r, 5));
  return { pid: process.pid };
};
"#;

const PYTHON: &str = "import os, time\n\
def handler(event, context):\n    \
    if context['path'] == '/crash':\n        os._exit(1)\n    \
    time.sleep(0.005)\n    \
    return {'pid': os.getpid()}\n";

fn handlers(dir: &Path) -> [(&'static str, std::path::PathBuf); 2] {
    [
        ("node", write(dir, "index.js", NODE)),
        ("python", write(dir, "handler.py", PYTHON)),
    ]
}

fn metric(shim: &Shim, name: &str) -> u64 {
    let m = shim.metrics();
    m.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

#[derive(Default, Debug)]
struct Tally {
    healthy: usize,
    healthy_ok: usize,
    healthy_other: Vec<u16>,
    crashing: usize,
    crashing_502: usize,
    crashing_other: Vec<u16>,
}

/// `clients` threads each send `per_client` requests; every tenth is `/crash`.
fn load(port: u16, clients: usize, per_client: usize) -> Tally {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let tally = tally.clone();
            std::thread::spawn(move || {
                for i in 0..per_client {
                    let crash = (c + i) % 10 == 0;
                    let path = if crash { "/crash" } else { "/ok" };
                    let r = request(port, "POST", path, &[], b"{}");
                    let mut t = tally.lock().unwrap();
                    if crash {
                        t.crashing += 1;
                        if r.status == 502 {
                            t.crashing_502 += 1;
                        } else {
                            t.crashing_other.push(r.status);
                        }
                    } else {
                        t.healthy += 1;
                        if r.status == 200 {
                            t.healthy_ok += 1;
                        } else {
                            t.healthy_other.push(r.status);
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    Arc::try_unwrap(tally).unwrap().into_inner().unwrap()
}

#[test]
fn one_request_in_ten_crashing_its_worker_leaves_the_others_served() {
    let dir = tempfile::tempdir().unwrap();
    for (runtime, handler) in handlers(dir.path()) {
        let shim = Shim::start(&handler, &[("KIPPER_WORKERS", "2")]);
        let started = Instant::now();
        let t = load(shim.port, 16, 25);
        let restarts = metric(&shim, "kipper_shim_worker_restarts_total{reason=\"crash\"}");
        println!(
            "{runtime}: healthy 200 {}/{} ({:.1}%), crashing 502 {}/{}, worker restarts {restarts}, {:.1} s",
            t.healthy_ok,
            t.healthy,
            100.0 * t.healthy_ok as f64 / t.healthy as f64,
            t.crashing_502,
            t.crashing,
            started.elapsed().as_secs_f64(),
        );
        assert_eq!(t.crashing_502, t.crashing, "{runtime}: {t:?}");
        // Only requests already in flight on a worker when the first crash
        // switched the pool to one invocation per worker can be lost with it:
        // at most one per client thread, bounded here by the 16 clients.
        assert!(t.healthy_ok + 16 >= t.healthy, "{runtime}: {t:?}");
        assert!(
            t.healthy_other.iter().all(|s| *s == 502),
            "{runtime}: a healthy request got a status other than 200 or 502: {t:?}"
        );
        // Every restart was caused by a crashing request (and none of them replayed).
        assert!(
            restarts <= t.crashing as u64,
            "{runtime}: {restarts} restarts"
        );
    }
}

/// A poison event, as kipper-poll would send it: the same row, attempt after
/// attempt, while other events keep flowing.
#[test]
fn a_poison_event_gets_502_on_every_attempt_while_other_events_get_200() {
    let dir = tempfile::tempdir().unwrap();
    let node = write(
        dir.path(),
        "index.js",
        "module.exports = async (row) => { if (row.poison) process.exit(1); await new Promise((r) => setTimeout(r, 2)); return { id: row.id }; };",
    );
    let python = write(
        dir.path(),
        "handler.py",
        "import os\ndef handler(row):\n    if row.get('poison'):\n        os._exit(1)\n    return {'id': row['id']}\n",
    );
    for handler in [node, python] {
        let shim = Shim::start(
            &handler,
            &[("KIPPER_WORKERS", "2"), ("KIPPER_TRIGGER", "postgres")],
        );
        let port = shim.port;
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Set once the first poison attempt was answered: from then on the
        // pool runs one invocation per worker, and no other event may fail.
        let first_answered: Arc<Mutex<Option<Instant>>> = Arc::default();
        let flowing: Vec<_> = (0..6)
            .map(|c| {
                let done = done.clone();
                let first_answered = first_answered.clone();
                std::thread::spawn(move || {
                    let mut results = Vec::new();
                    let mut id = c * 100_000;
                    while !done.load(std::sync::atomic::Ordering::Relaxed) {
                        id += 1;
                        let sent = Instant::now();
                        let body = format!("{{\"id\":{id}}}");
                        let r = request(port, "POST", "/event", &[], body.as_bytes());
                        let after_first = first_answered.lock().unwrap().is_some_and(|t| sent > t);
                        if r.status == 200 {
                            assert_eq!(r.json()["id"], id);
                        }
                        results.push((r.status, after_first));
                    }
                    results
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let attempts = 5;
        for attempt in 1..=attempts {
            let r = request(port, "POST", "/event", &[], br#"{"id":0,"poison":true}"#);
            assert_eq!(r.status, 502, "attempt {attempt}: {}", r.text());
            assert!(r.header("retry-after").is_none());
            assert!(r.text().contains("exit status: 1"), "{}", r.text());
            first_answered
                .lock()
                .unwrap()
                .get_or_insert_with(Instant::now);
            std::thread::sleep(Duration::from_millis(100));
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let results: Vec<(u16, bool)> = flowing
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let ok = results.iter().filter(|(s, _)| *s == 200).count();
        let failed_after_first: Vec<_> = results
            .iter()
            .filter(|(s, after)| *after && *s != 200)
            .collect();
        println!(
            "{}: poison 502 x{attempts}; other events 200 {ok}/{}",
            handler.display(),
            results.len()
        );
        assert!(failed_after_first.is_empty(), "{failed_after_first:?}");
        // Before the first crash, only events in flight beside it may be lost (502).
        assert!(
            results.iter().all(|(s, _)| *s == 200 || *s == 502),
            "{results:?}"
        );
        assert!(
            results.len() - ok <= 6,
            "{} of {} failed",
            results.len() - ok,
            results.len()
        );
        // One restart per poison attempt: never replayed onto another worker.
        let deadline = Instant::now() + Duration::from_secs(5);
        while metric(&shim, "kipper_shim_worker_restarts_total{reason=\"crash\"}") < attempts {
            assert!(Instant::now() < deadline, "{}", shim.metrics());
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            metric(&shim, "kipper_shim_worker_restarts_total{reason=\"crash\"}"),
            attempts
        );
    }
}

/// Many invocations timing out together on a node worker: each gets its own
/// 504, the fast requests beside them their 200, and no worker is killed
/// (an awaiting handler blocks nothing).
#[test]
fn node_timeouts_under_load_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let handler = write(
        dir.path(),
        "index.js",
        "module.exports = async (e, c) => { if (c.path === '/slow') await new Promise((r) => setTimeout(r, 3000)); return 'ok'; };",
    );
    let shim = Shim::start(
        &handler,
        &[("KIPPER_WORKERS", "2"), ("KIPPER_TIMEOUT", "1")],
    );
    let port = shim.port;
    let threads: Vec<_> = (0..200)
        .map(|i| {
            std::thread::spawn(move || {
                let path = if i % 2 == 0 { "/slow" } else { "/" };
                (path, request(port, "GET", path, &[], b"").status)
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let slow_504 = results
        .iter()
        .filter(|(p, s)| *p == "/slow" && *s == 504)
        .count();
    let fast_200 = results
        .iter()
        .filter(|(p, s)| *p == "/" && *s == 200)
        .count();
    println!("node: slow 504 {slow_504}/100, fast 200 {fast_200}/100");
    assert_eq!((slow_504, fast_200), (100, 100), "{results:?}");
    assert_eq!(
        metric(
            &shim,
            "kipper_shim_worker_restarts_total{reason=\"timeout\"}"
        ),
        0
    );
    assert_eq!(
        metric(&shim, "kipper_shim_worker_restarts_total{reason=\"crash\"}"),
        0
    );
}

/// A sync python handler blocked past the timeout: it gets 504, its worker is
/// replaced once found stuck, and the requests sent beside it get 200.
#[test]
fn a_blocked_python_worker_takes_no_neighbour_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let handler = write(
        dir.path(),
        "handler.py",
        "import time\ndef handler(event, context):\n    if context['path'] == '/hang':\n        time.sleep(30)\n    time.sleep(0.01)\n    return 'ok'\n",
    );
    let shim = Shim::start(
        &handler,
        &[("KIPPER_WORKERS", "2"), ("KIPPER_TIMEOUT", "1")],
    );
    let port = shim.port;
    let hang = std::thread::spawn(move || request(port, "GET", "/hang", &[], b"").status);
    std::thread::sleep(Duration::from_millis(50));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                (0..20)
                    .map(|_| request(port, "GET", "/", &[], b"").status)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let statuses: Vec<u16> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(hang.join().unwrap(), 504);
    let ok = statuses.iter().filter(|s| **s == 200).count();
    println!("python: fast 200 {ok}/{}", statuses.len());
    assert_eq!(ok, statuses.len(), "{statuses:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(
        &shim,
        "kipper_shim_worker_restarts_total{reason=\"timeout\"}",
    ) != 1
    {
        assert!(Instant::now() < deadline, "{}", shim.metrics());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One python worker, five concurrent 1 s synchronous requests: the answers
/// come one per second, each written when it is finished.
#[test]
fn a_python_worker_writes_each_answer_when_it_is_finished() {
    let dir = tempfile::tempdir().unwrap();
    let handler = write(
        dir.path(),
        "handler.py",
        "import time\ndef handler():\n    time.sleep(1)\n    return 'ok'\n",
    );
    let shim = Shim::start(&handler, &[]);
    let port = shim.port;
    let started = Instant::now();
    let threads: Vec<_> = (0..5)
        .map(|_| {
            std::thread::spawn(move || {
                let r = request(port, "GET", "/", &[], b"");
                (r.status, started.elapsed().as_secs_f64())
            })
        })
        .collect();
    let mut answers: Vec<(u16, f64)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    answers.sort_by(|a, b| a.1.total_cmp(&b.1));
    println!("python answers at {answers:?}");
    for (i, (status, at)) in answers.iter().enumerate() {
        assert_eq!(*status, 200);
        let expected = (i + 1) as f64;
        assert!(
            (*at - expected).abs() < 0.5,
            "answer {} at {at:.2} s, expected about {expected} s: {answers:?}",
            i + 1
        );
    }
}

/// A handler that ends its process (`process.exit`, `os._exit`, `sys.exit`)
/// in the middle of a pipelined batch: the invocations that finished before
/// it are still answered, those it never started go to the new worker, and
/// only the exiting one fails.
#[test]
fn a_handler_exiting_its_process_fails_only_its_own_invocation() {
    let dir = tempfile::tempdir().unwrap();
    let handlers = [
        write(
            dir.path(),
            "index.js",
            "module.exports = (e, c) => { if (c.path === '/crash') process.exit(1); return 'ok'; };",
        ),
        write(
            dir.path(),
            "os_exit/handler.py",
            "import os\ndef handler(event, context):\n    if context['path'] == '/crash':\n        os._exit(1)\n    return 'ok'\n",
        ),
        write(
            dir.path(),
            "sys_exit/handler.py",
            "import sys\ndef handler(event, context):\n    if context['path'] == '/crash':\n        sys.exit(1)\n    return 'ok'\n",
        ),
    ];
    for handler in handlers {
        let shim = Shim::start(&handler, &[]);
        let port = shim.port;
        let threads: Vec<_> = (0..32)
            .map(|t| {
                std::thread::spawn(move || {
                    (0..30)
                        .map(|i| {
                            let path = if t == 7 && i == 15 { "/crash" } else { "/" };
                            (path, request(port, "GET", path, &[], b"").status)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let results: Vec<_> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let failed: Vec<_> = results
            .iter()
            .filter(|(p, s)| *p == "/" && *s != 200)
            .collect();
        let name = handler.display();
        assert!(results.contains(&("/crash", 502)), "{name}: {results:?}");
        assert!(
            failed.is_empty(),
            "{name}: {} failed: {failed:?}",
            failed.len()
        );
        assert!(
            shim.metrics()
                .contains("kipper_shim_worker_restarts_total{reason=\"crash\"} 1"),
            "{name}: {}",
            shim.metrics()
        );
    }
}

/// An invocation abandoned after its timeout (a promise that never settles)
/// does not keep its worker from serving while the pool takes one
/// invocation per worker after a crash.
#[test]
fn a_promise_that_never_settles_does_not_block_its_worker_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let handler = write(
        dir.path(),
        "index.js",
        "module.exports = (e, c) => { if (c.path === '/crash') process.exit(1); if (c.path === '/never') return new Promise(() => {}); return 'ok'; };",
    );
    let shim = Shim::start(
        &handler,
        &[("KIPPER_TIMEOUT", "0.5"), ("KIPPER_HOLD_TIMEOUT", "3")],
    );
    assert_eq!(shim.get("/crash").status, 502);
    assert!(shim.metrics().contains("kipper_shim_isolations_total 1"));
    assert_eq!(shim.get("/never").status, 504);
    for _ in 0..5 {
        let r = shim.get("/");
        assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    }
    assert!(
        shim.metrics()
            .contains("kipper_shim_worker_restarts_total{reason=\"timeout\"} 0")
    );
}
