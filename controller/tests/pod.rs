//! One pod, end to end, with no cluster: the Deployment that `kip function create --dry-run`
//! renders for a postgres trigger (with a dependency, so with the `deps` init step) and a
//! redis trigger, its containers run as local processes
//! (the real `kipper-poll` and `kipper-shim` binaries) with exactly the rendered environment,
//! the code from the rendered ConfigMap, against the real local PostgreSQL and Redis. Rows and
//! items reach the handler and are marked done / removed: the renderer and the binaries agree
//! on every variable name.
//!
//! What a cluster would supply is supplied the same way here, and nothing else changes:
//! - `secretKeyRef`s are resolved from local "Secrets" holding the local credentials (an
//!   `optional` reference to a missing key leaves the variable unset, as the kubelet does);
//! - the service host (`<svc>.<ns>.svc.cluster.local`, a plain value) resolves to 127.0.0.1,
//!   as the cluster's DNS would resolve it to the service;
//! - the image's own `ENV` (read from `images/kipper-runtime-*.Dockerfile`) comes first, with
//!   the paths the pod mounts (`/app/function`, `/tmp`) mapped to temporary directories and
//!   an interpreter path the machine lacks (`/usr/local/bin/python3`) to the one on `PATH`;
//! - the admin ports, which the renderer leaves at their defaults (9091, 9092) and which in a
//!   pod are private to its network namespace, are set to 0 so parallel tests cannot collide.
//!
//! Needs PostgreSQL (127.0.0.1:5432, user postgres, db test), Redis (127.0.0.1:6379), node and
//! python3; a missing one fails the test. The binaries are those `cargo test --workspace`
//! builds (built first when missing).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

const NAMESPACE_PROJECT: &str = "e2e";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}_{}_{nanos:x}", std::process::id())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The kipper-shim and kipper-poll binaries of this workspace, built once per test run (a
/// no-op when fresh).
fn binaries() -> (PathBuf, PathBuf) {
    static BUILT: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();
    BUILT.get_or_init(build).clone()
}

fn build() -> (PathBuf, PathBuf) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The same selection as the README's `cargo test --workspace`, so this is a no-op after it
    // (`cargo build -p ...` resolves other dependency features and rebuilt them, minutes).
    let out = Command::new(cargo)
        .args(["test", "--workspace", "--locked", "--no-run"])
        .current_dir(repo())
        .output()
        .expect("cargo must be runnable to build kipper-shim and kipper-poll");
    assert!(
        out.status.success(),
        "cargo test --workspace --no-run failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // target/debug/deps/pod-<hash> -> target/debug
    let dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let (shim, poll) = (dir.join("kipper-shim"), dir.join("kipper-poll"));
    assert!(
        shim.exists() && poll.exists(),
        "no binaries in {}",
        dir.display()
    );
    (shim, poll)
}

/// `kip function create ... --dry-run -o yaml`, parsed.
fn dry_run(args: &[&str]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_kip"))
        .args(["function", "create"])
        .args(args)
        .args(["--project", NAMESPACE_PROJECT, "--dry-run", "-o", "yaml"])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kip: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_yaml::Deserializer::from_str(&String::from_utf8_lossy(&out.stdout))
        .map(|d| serde_yaml::from_value(serde_yaml::Value::deserialize(d).unwrap()).unwrap())
        .collect()
}

fn object<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

/// `ENV` of a Dockerfile's final stage, as (name, value) pairs.
fn image_env(dockerfile: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("images").join(dockerfile)).unwrap();
    let joined = text.replace("\\\n", " ");
    let last_stage = joined.rfind("\nFROM ").unwrap();
    joined[last_stage..]
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ENV "))
        .flat_map(|rest| {
            rest.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Local stand-ins of what the pod gets from the cluster.
struct Cluster {
    /// Secret name -> key -> value.
    secrets: BTreeMap<String, BTreeMap<String, String>>,
    /// Where the pod's mount paths are on this machine (longest prefix first).
    mounts: Vec<(String, PathBuf)>,
}

impl Cluster {
    /// One container's environment: the image's `ENV`, then the rendered `env` with every
    /// `secretKeyRef` resolved and every service host resolved to 127.0.0.1.
    fn env_of(&self, image_env: &[(String, String)], container: &Value) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = image_env
            .iter()
            .map(|(k, v)| (k.clone(), self.local_path(v)))
            .collect();
        for e in container["env"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().unwrap().to_owned();
            let value = if let Some(v) = e["value"].as_str() {
                if v.ends_with(".svc.cluster.local") {
                    "127.0.0.1".to_owned()
                } else {
                    self.local_path(v)
                }
            } else {
                let r = &e["valueFrom"]["secretKeyRef"];
                assert!(
                    r.is_object(),
                    "{name}: only values and secretKeyRefs are rendered"
                );
                let found = self
                    .secrets
                    .get(r["name"].as_str().unwrap())
                    .and_then(|s| s.get(r["key"].as_str().unwrap()));
                match found {
                    Some(v) => v.clone(),
                    None if r["optional"] == true => continue,
                    None => panic!("{name}: the Secret {r} is not there and not optional"),
                }
            };
            vars.retain(|(k, _)| *k != name);
            vars.push((name, value));
        }
        vars
    }

    fn local_path(&self, value: &str) -> String {
        // The image's interpreter is this machine's (the python image's KIPPER_PYTHON_BIN
        // is /usr/local/bin/python3, which a pyenv machine does not have).
        if value.starts_with("/usr/local/bin/") && !Path::new(value).exists() {
            return Path::new(value)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
        }
        for (pod, local) in &self.mounts {
            if let Some(rest) = value.strip_prefix(pod.as_str()) {
                return format!("{}{rest}", local.display());
            }
        }
        value.to_owned()
    }
}

/// A container run as a local process; killed on drop (its output shown on failure).
struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Process {
    fn start(name: &'static str, binary: &Path, env: &[(String, String)], dir: &Path) -> Self {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(binary)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k, v)))
            // Isolation on a shared machine only: in a pod these ports are private.
            .env("KIPPER_ADMIN_PORT", "0")
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap();
        Self { name, child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.name, self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The rendered pod, running: the `deps` init step (run to completion), the sidecar (an init
/// container with `restartPolicy: Always`) and the runtime container, in the pod's order.
struct Pod {
    _dir: tempfile::TempDir,
    handled: PathBuf,
    processes: Vec<Process>,
}

impl Pod {
    /// Runs the pod of `docs` (a dry run) with `runtime_dockerfile`'s ENV. `handled` is where
    /// the handler code (written by the test) records each event.
    fn run(
        docs: &[Value],
        runtime_dockerfile: &str,
        cluster_secrets: Cluster,
        dir: tempfile::TempDir,
    ) -> Self {
        let (shim, poll) = binaries();
        let mut cluster = cluster_secrets;
        // The code ConfigMap, as its volume would show it at /app/function.
        let code_dir = dir.path().join("app-function");
        std::fs::create_dir_all(&code_dir).unwrap();
        for (file, text) in object(docs, "ConfigMap")["data"].as_object().unwrap() {
            std::fs::write(code_dir.join(file), text.as_str().unwrap()).unwrap();
        }
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        // The dependency cache claim, when the pod mounts one.
        let deps_cache = dir.path().join("deps-cache");
        std::fs::create_dir_all(&deps_cache).unwrap();
        cluster.mounts = vec![
            ("/app/function".to_owned(), code_dir),
            ("/var/cache/kipper/deps".to_owned(), deps_cache),
            ("/tmp".to_owned(), tmp),
        ];
        let image = image_env(runtime_dockerfile);
        let pod = &object(docs, "Deployment")["spec"]["template"]["spec"];
        let runtime = &pod["containers"][0];
        assert_eq!(runtime["name"], "function");
        // Init containers in order: one that runs to completion must exit 0 before the next
        // starts; a native sidecar (restartPolicy: Always) starts and keeps running.
        let mut processes = Vec::new();
        for init in pod["initContainers"].as_array().unwrap() {
            match init["name"].as_str().unwrap() {
                "kipper-poll" => {
                    assert_eq!(init["restartPolicy"], "Always");
                    let env = cluster.env_of(&[], init);
                    processes.push(Process::start("kipper-poll", &poll, &env, dir.path()));
                }
                "deps" => {
                    assert_eq!(init["image"], runtime["image"]);
                    let env = cluster.env_of(&image, init);
                    let mut install = Process::start("deps", &shim, &env, dir.path());
                    let status = install.child.wait().unwrap();
                    assert!(status.success(), "deps init step:\n{}", install.log());
                    assert!(
                        install.log().contains("dependencies installed"),
                        "{}",
                        install.log()
                    );
                }
                other => panic!("unexpected init container {other}"),
            }
        }
        let runtime_env = cluster.env_of(&image, runtime);
        processes.push(Process::start(
            "kipper-shim",
            &shim,
            &runtime_env,
            dir.path(),
        ));
        Pod {
            handled: dir.path().join("handled.jsonl"),
            _dir: dir,
            processes,
        }
    }

    fn handled(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.handled)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn wait_until(&self, what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !check() {
            for p in &self.processes {
                assert!(
                    Instant::now() < deadline,
                    "timed out waiting for {what}; {} log:\n{}",
                    p.name,
                    p.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rendered_postgres_pod_delivers_rows_and_marks_them_done() {
    let (client, connection) = tokio_postgres::connect(
        "postgres://postgres@127.0.0.1:5432/test",
        tokio_postgres::NoTls,
    )
    .await
    .expect("PostgreSQL is required at 127.0.0.1:5432 (scripts/services.sh)");
    tokio::spawn(connection);
    let table = unique("kp_pod_orders");
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id serial PRIMARY KEY, customer text, amount numeric(10,2), \
             status text NOT NULL DEFAULT 'pending');
             INSERT INTO {table} (customer, amount) SELECT 'acme-' || i, 99.99 FROM generate_series(1, 12) i;"
        ))
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let handled = dir.path().join("handled.jsonl");
    let code = dir.path().join("process-orders.js");
    std::fs::write(
        &code,
        format!(
            "const fs = require('fs');\n\
             const ms = require('ms');\n\
             module.exports = async (event, context) => {{\n\
               fs.appendFileSync({:?}, JSON.stringify({{event, trigger: context.trigger, env: process.env.KIPPER_TRIGGER, dep: ms('2h')}}) + '\\n');\n\
               return {{ ok: true }};\n\
             }};\n",
            handled.display()
        ),
    )
    .unwrap();
    let port = free_port().to_string();
    let query = format!("SELECT * FROM {table} WHERE status = 'pending'");
    let mark_done = format!("UPDATE {table} SET status = 'done' WHERE id = {{{{id}}}}");
    let docs = dry_run(&[
        "process-orders",
        "--code-file",
        code.to_str().unwrap(),
        "--runtime",
        "node",
        "--trigger",
        "postgres",
        "--source",
        "eventdb",
        "--query",
        &query,
        "--mark-done",
        &mark_done,
        "--port",
        &port,
        // A real (tiny) package: the rendered `deps` init step installs it into the cache
        // claim, and the runtime container loads it from there.
        "--dependency",
        "ms@2.1.3",
    ]);
    let cluster = Cluster {
        secrets: BTreeMap::from([(
            "eventdb-credentials".to_owned(),
            BTreeMap::from([
                ("username".to_owned(), "postgres".to_owned()),
                ("password".to_owned(), String::new()),
                ("database".to_owned(), "test".to_owned()),
            ]),
        )]),
        mounts: Vec::new(),
    };
    let pod = Pod::run(&docs, "kipper-runtime-node.Dockerfile", cluster, dir);

    let count = |status: &'static str| {
        let client = &client;
        let table = table.clone();
        async move {
            client
                .query_one(
                    &format!("SELECT count(*) FROM {table} WHERE status = $1"),
                    &[&status],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while count("done").await < 12 {
        assert!(
            Instant::now() < deadline,
            "rows not marked done; kipper-poll:\n{}\nkipper-shim:\n{}",
            pod.processes[0].log(),
            pod.processes[1].log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = pod.handled();
    let mut customers: Vec<&str> = events
        .iter()
        .map(|e| e["event"]["customer"].as_str().unwrap())
        .collect();
    customers.sort_unstable();
    customers.dedup();
    assert_eq!(customers.len(), 12, "{events:?}");
    assert_eq!(events[0]["event"]["amount"], 99.99);
    assert_eq!(events[0]["event"]["status"], "pending");
    assert_eq!(events[0]["trigger"], "postgres");
    assert_eq!(events[0]["env"], "postgres");
    assert_eq!(
        events[0]["dep"], 7_200_000,
        "the dependency from the cache loaded"
    );
    let shim_log = pod.processes.last().unwrap().log();
    assert!(
        shim_log.contains("found in the cache") && !shim_log.contains("installing dependencies"),
        "the runtime container installs nothing:\n{shim_log}"
    );
    assert_eq!(count("pending").await, 0);
    client
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}

#[test]
fn a_rendered_redis_pod_delivers_items_and_removes_them() {
    let url = "redis://127.0.0.1:6379";
    let mut con = redis::Client::open(url)
        .unwrap()
        .get_connection()
        .unwrap_or_else(|e| panic!("Redis is required at {url} (scripts/services.sh): {e}"));
    let list = unique("kp_pod_jobs");
    let items: Vec<String> = (0..15)
        .map(|i| serde_json::json!({"job": i}).to_string())
        .chain(["not json".to_owned()])
        .collect();
    let _: () = redis::cmd("RPUSH")
        .arg(&list)
        .arg(&items)
        .query(&mut con)
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let handled = dir.path().join("handled.jsonl");
    let code = dir.path().join("mailer.py");
    std::fs::write(
        &code,
        format!(
            "import json, os\n\
             def handler(event, context):\n\
             \x20   with open({:?}, 'a') as f:\n\
             \x20       f.write(json.dumps({{'event': event, 'trigger': context['trigger'], 'env': os.environ.get('KIPPER_TRIGGER')}}) + '\\n')\n\
             \x20   return {{'ok': True}}\n",
            handled.display().to_string()
        ),
    )
    .unwrap();
    let port = free_port().to_string();
    let docs = dry_run(&[
        "mailer",
        "--code-file",
        code.to_str().unwrap(),
        "--runtime",
        "python",
        "--trigger",
        "redis",
        "--source",
        "cache",
        "--list",
        &list,
        "--port",
        &port,
    ]);
    // The local Redis has no password: the Secret has no `password` key, which the
    // rendered reference marks optional.
    let cluster = Cluster {
        secrets: BTreeMap::from([("cache-credentials".to_owned(), BTreeMap::new())]),
        mounts: Vec::new(),
    };
    let pod = Pod::run(&docs, "kipper-runtime-python.Dockerfile", cluster, dir);

    pod.wait_until("every item handled", || pod.handled().len() >= 16);
    let pending = |con: &mut redis::Connection| -> usize {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{list}*"))
            .query(con)
            .unwrap();
        keys.iter()
            .filter(|k| **k == list || k.contains(":processing:"))
            .map(|k| redis::cmd("LLEN").arg(k).query::<usize>(con).unwrap())
            .sum()
    };
    pod.wait_until("every item removed from the queue", || {
        pending(&mut con) == 0
    });
    let events = pod.handled();
    let mut jobs: Vec<i64> = events
        .iter()
        .filter_map(|e| e["event"]["job"].as_i64())
        .collect();
    jobs.sort_unstable();
    assert_eq!(jobs, (0..15).collect::<Vec<_>>(), "{events:?}");
    assert!(
        events.iter().any(|e| e["event"]["data"] == "not json"),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .all(|e| e["trigger"] == "redis" && e["env"] == "redis")
    );
    drop(pod);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{list}*"))
        .query(&mut con)
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(keys).query(&mut con).unwrap();
    }
}
