//! The binary tier's cluster: the in-memory API server over HTTPS (or, with
//! `KIPPER_TEST_CLUSTER=envtest`, see `scripts/test-envtest.sh`), the real `kip` and
//! `kipper-controller` binaries started with its kubeconfig, and helpers that read the
//! cluster back through kube's real client.
#![allow(dead_code)] // each test binary uses part of it

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use kipper_fake_apiserver::ApiServer;

/// The project and environment of every test function: namespace `shop-prod`.
pub const PROJECT: &str = "shop";
pub const ENVIRONMENT: &str = "prod";
pub const NS: &str = "shop-prod";
/// The cluster domain the controller and kip are given.
pub const DOMAIN: &str = "46-225-91-12.kipper.run";

/// How long a test waits for the controller to converge.
pub const CONVERGE: Duration = Duration::from_secs(30);

/// `kip` with the cluster's kubeconfig; `stdin` is written to its standard input.
pub fn kip(api: &ApiServer, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kip"))
        .args(args)
        .env("KUBECONFIG", api.kubeconfig_path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KIP_PROJECT")
        .env_remove("KIP_ENVIRONMENT")
        .env("KIPPER_CLUSTER_DOMAIN", DOMAIN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kip");
    let mut input = child.stdin.take().expect("kip's stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write kip's stdin");
    }
    drop(input);
    child.wait_with_output().expect("wait for kip")
}

/// `kip function <args> --project shop --environment prod`, which must succeed; its stdout.
pub fn kip_fn(api: &ApiServer, args: &[&str]) -> String {
    kip_fn_stdin(api, args, None)
}

/// [`kip_fn`] with standard input.
pub fn kip_fn_stdin(api: &ApiServer, args: &[&str], stdin: Option<&str>) -> String {
    let mut full = vec!["function"];
    full.extend_from_slice(args);
    full.extend(["--project", PROJECT, "--environment", ENVIRONMENT]);
    let out = kip(api, &full, stdin);
    assert!(
        out.status.success(),
        "kip {full:?} failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A running `kipper-controller` binary; killed on drop, its log printed when a test fails.
pub struct ControllerProcess {
    child: Child,
    /// Its /health, /ready, /metrics address.
    pub listen: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl ControllerProcess {
    /// Starts the controller against `api` and waits until it serves `/health`.
    pub fn start(api: &ApiServer) -> Self {
        let dir = tempfile::tempdir().expect("a directory for the controller's log");
        let log = dir.path().join("controller.log");
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("an address");
        let child = Command::new(env!("CARGO_BIN_EXE_kipper-controller"))
            .env("KUBECONFIG", api.kubeconfig_path())
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("KIPPER_CLUSTER_DOMAIN", DOMAIN)
            .env("KIPPER_LISTEN", listen.to_string())
            .env(
                "RUST_LOG",
                std::env::var("KIPPER_TEST_CONTROLLER_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the controller's log"))
            .spawn()
            .expect("start kipper-controller");
        let controller = Self {
            child,
            listen,
            log,
            _dir: dir,
        };
        controller.wait_status("/health", 200, Duration::from_secs(10));
        controller
    }

    /// The controller's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The HTTP status of `GET path` on the controller's port (`None`: no answer).
    pub fn status_of(&self, path: &str) -> Option<u16> {
        let mut stream = TcpStream::connect_timeout(&self.listen, Duration::from_secs(1)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: controller\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        response.split_whitespace().nth(1)?.parse().ok()
    }

    /// Waits until `GET path` answers `code`; panics with the log after `timeout`.
    pub fn wait_status(&self, path: &str, code: u16, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.status_of(path);
            if got == Some(code) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{path} answered {got:?}, not {code}, for {timeout:?}; controller log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- kipper-controller log ---\n{}", self.log());
        }
    }
}

/// `/apis/kipper.run/v1alpha1/namespaces/shop-prod/functions/<name>`
pub fn function_path(name: &str) -> String {
    format!("/apis/kipper.run/v1alpha1/namespaces/{NS}/functions/{name}")
}

/// `/apis/apps/v1/namespaces/shop-prod/deployments/<name>`
pub fn deployment_path(name: &str) -> String {
    format!("/apis/apps/v1/namespaces/{NS}/deployments/{name}")
}

/// The condition `type_` of a Function's status, as (status, reason, message).
pub fn condition(function: &Value, type_: &str) -> Option<(String, String, String)> {
    function["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_owned(),
                c["reason"].as_str().unwrap_or_default().to_owned(),
                c["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
}

/// True when the Function's status describes its current generation and says `Ready`.
pub fn reconciled_ready(function: &Value) -> bool {
    function["status"]["observedGeneration"] == function["metadata"]["generation"]
        && condition(function, "Ready").is_some_and(|c| c.0 == "True")
}

/// Waits for the controller to have reconciled the current generation of `name` as Ready.
pub fn wait_ready(api: &ApiServer, name: &str) -> Value {
    api.wait_for_blocking(&function_path(name), reconciled_ready, CONVERGE)
}

/// A `<service>-credentials` Secret of type `kind` that points at a server on this machine
/// (`host` and `port` keys: the server is outside the cluster).
pub fn credentials(service: &str, kind: &str, port: u16, user: &str, password: &str) -> Value {
    let b64 = |s: &str| base64_encode(s.as_bytes());
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": format!("{service}-credentials"), "namespace": NS,
                     "labels": {"kipper.run/service-type": kind}},
        "data": {"username": b64(user), "password": b64(password), "database": b64("test"),
                 "host": b64("127.0.0.1"), "port": b64(&port.to_string())}
    })
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The namespace and the four services the tests use (PostgreSQL and MariaDB are the real
/// local servers, so per-function databases are really created).
pub fn seed_services(api: &ApiServer) {
    api.namespace(NS);
    api.insert(credentials("eventdb", "postgres", 5432, "postgres", ""));
    api.insert(credentials("shopdb", "mysql", 3306, "root", ""));
    api.insert(credentials("cache", "redis", 6379, "", ""));
    api.insert(credentials(
        "storage",
        "minio",
        8333,
        "kipper",
        "kipper-secret",
    ));
}

/// A handler file in `dir`.
pub fn code_file(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).expect("write a handler");
    path.display().to_string()
}

/// The paths of the objects `kip function create <args> --dry-run -o json` renders (the
/// Function first).
pub fn dry_run_paths(api: &ApiServer, args: &[&str]) -> Vec<String> {
    let mut full = args.to_vec();
    full.extend(["--dry-run", "-o", "json"]);
    let out = kip_fn(api, &full);
    let objects: Vec<Value> = serde_json::from_str(&out).expect("dry-run JSON");
    objects.iter().map(kipper_fake_apiserver::path_of).collect()
}
