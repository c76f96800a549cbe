//! The real `kip` binary against the in-memory HTTPS API server, through a kubeconfig:
//! `kip service`, `kip volume` and `kip tunnel` as a user runs them, typed confirmation on
//! standard input included. What needs a kubelet (pods that run, a port-forward stream) is
//! out of reach here; `kip_service_api.rs` and `cli/service/tunnel.rs` test the tunnel up to it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use cluster::{kip, text};
use kipper_fake_apiserver::ApiServer;
use serde_json::{Value, json};

const TEST: &str = "yourr-name-test";
const ACC: &str = "yourr-name-acc";

fn server() -> ApiServer {
    let api = ApiServer::start();
    api.namespace(TEST);
    api.namespace(ACC);
    api
}

/// `kip <args> --project yourr-name --environment <env>`.
fn run(api: &ApiServer, env: &str, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut full = args.to_vec();
    full.extend(["--project", "yourr-name", "--environment", env]);
    let out = kip(api, &full, stdin);
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// Runs and requires success; stdout.
fn ok(api: &ApiServer, env: &str, args: &[&str]) -> String {
    let (success, out, err) = run(api, env, args, None);
    assert!(success, "kip {args:?} failed: {out}{err}");
    out
}

/// Runs and requires failure with exactly one line on stderr; that line.
fn fails(api: &ApiServer, env: &str, args: &[&str], stdin: Option<&str>) -> String {
    let (success, out, err) = run(api, env, args, stdin);
    assert!(!success, "kip {args:?} succeeded: {out}");
    let last = err.lines().last().unwrap_or_default().to_owned();
    assert!(last.starts_with("error: "), "kip {args:?}: {err}");
    // The confirmation prompt may precede the error line; nothing else may.
    assert!(
        err.lines().count() == 1 || err.contains("to confirm:"),
        "kip {args:?}: {err}"
    );
    last
}

fn decoded(secret: &Value, key: &str) -> String {
    text(
        &base64::engine::general_purpose::STANDARD
            .decode(secret["data"][key].as_str().unwrap())
            .unwrap(),
    )
}

fn path(ns: &str, rest: &str) -> String {
    let (prefix, rest) = rest.split_once(' ').unwrap();
    format!("{prefix}/namespaces/{ns}/{rest}")
}

#[test]
fn add_list_info_bind_copy_delete_through_the_binary() {
    let api = server();
    let out = ok(
        &api,
        "test",
        &[
            "service",
            "add",
            "postgres",
            "--name",
            "db",
            "--storage",
            "1Gi",
        ],
    );
    let secret = api
        .get(&path(TEST, "/api/v1 secrets/db-credentials"))
        .expect("db-credentials");
    let password = decoded(&secret, "password");
    for line in [
        "Host: db.yourr-name-test.svc.cluster.local".to_owned(),
        "Port: 5432".to_owned(),
        "Username: kipper".to_owned(),
        format!("Password: {password}"),
        "Database: app".to_owned(),
    ] {
        assert!(out.lines().any(|l| l == line), "{line} in {out}");
    }
    let set = api
        .get(&path(TEST, "/apis/apps/v1 statefulsets/db"))
        .expect("the StatefulSet");
    assert_eq!(
        set["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
        "1Gi"
    );
    // Every write kip made is owned by the field manager kip.
    for s in api.log() {
        if s.method != http::Method::GET {
            assert!(s.query.contains("fieldManager=kip"), "{s:?}");
        }
    }
    let e = fails(
        &api,
        "test",
        &["service", "add", "postgres", "--name", "db"],
        None,
    );
    assert!(e.contains("already exists"), "{e}");

    let out = ok(&api, "test", &["service", "list"]);
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "TYPE", "STATUS", "READY", "STORAGE"]);
    assert_eq!(rows[1], ["db", "postgres", "starting", "0/1", "1Gi"]);

    let out = ok(&api, "test", &["service", "info", "db"]);
    assert!(!out.contains(&password), "{out}");
    let out = ok(&api, "test", &["service", "info", "db", "--show-password"]);
    assert!(out.contains(&format!("Password: {password}")), "{out}");

    // An app.
    api.insert(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "domain-service", "namespace": TEST},
        "spec": {"selector": {"matchLabels": {"app": "domain-service"}},
                 "template": {"metadata": {"labels": {"app": "domain-service"}},
                              "spec": {"containers": [{"name": "web", "image": "web:1"}]}}}}));
    let out = ok(&api, "test", &["service", "bind", "db", "domain-service"]);
    assert!(out.contains("database: domain_service_test"), "{out}");
    assert!(
        out.contains("injects: DB_HOST DB_PORT DB_USERNAME DB_USER DB_PASSWORD DB_NAME"),
        "{out}"
    );
    let app = api
        .get(&path(TEST, "/apis/apps/v1 deployments/domain-service"))
        .unwrap();
    let env = app["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
    assert!(
        env.contains("DB_PASSWORD") && env.contains("db-credentials"),
        "{env}"
    );
    assert!(!env.contains(&password));

    // copy-data: the typed confirmation, then the Job in the target namespace.
    ok(&api, "acc", &["service", "add", "postgres", "--name", "db"]);
    let copy = ["service", "copy-data", "db", "--from-environment", "test"];
    let e = fails(&api, "acc", &copy, Some("dbx\n"));
    assert!(e.contains("confirmation did not match"), "{e}");
    let e = fails(&api, "acc", &copy, None);
    assert!(e.contains("confirmation did not match"), "{e}");
    let jobs = |api: &ApiServer| -> Vec<String> {
        api.paths()
            .into_iter()
            .filter(|p| p.starts_with(&format!("/apis/batch/v1/namespaces/{ACC}/jobs/db-copy-")))
            .collect()
    };
    assert!(jobs(&api).is_empty());
    let (success, out, err) = run(&api, "acc", &copy, Some("db\n"));
    assert!(success, "{out}{err}");
    assert!(
        err.contains("Type the service name (db) to confirm"),
        "{err}"
    );
    let job = jobs(&api);
    assert_eq!(job.len(), 1, "{job:?}");
    let job = api.get(&job[0]).unwrap();
    let mirror = api
        .get(&path(
            ACC,
            &format!(
                "/api/v1 secrets/{}-source",
                job["metadata"]["name"].as_str().unwrap()
            ),
        ))
        .unwrap();
    assert_eq!(
        mirror["metadata"]["ownerReferences"][0]["uid"],
        job["metadata"]["uid"]
    );

    // Delete: refused, then unbinds and removes the data.
    let e = fails(&api, "test", &["service", "delete", "db"], None);
    assert!(e.contains("--delete-data"), "{e}");
    api.insert(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data-db-0", "namespace": TEST, "labels": {"kipper.run/service": "db"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}));
    let out = ok(&api, "test", &["service", "delete", "db", "--delete-data"]);
    assert!(out.contains("unbound db from app domain-service"), "{out}");
    assert!(out.contains("data-db-0"), "{out}");
    for gone in [
        "/api/v1 secrets/db-credentials",
        "/api/v1 services/db",
        "/apis/apps/v1 statefulsets/db",
        "/api/v1 persistentvolumeclaims/data-db-0",
    ] {
        assert!(api.get(&path(TEST, gone)).is_none(), "{gone}");
    }
    let app = api
        .get(&path(TEST, "/apis/apps/v1 deployments/domain-service"))
        .unwrap();
    assert!(
        !app["spec"]["template"]["spec"]["containers"][0]["env"]
            .to_string()
            .contains("DB_"),
        "{app}"
    );
    // The acc service is untouched.
    assert!(
        api.get(&path(ACC, "/api/v1 secrets/db-credentials"))
            .is_some()
    );
}

#[test]
fn volumes_and_errors_through_the_binary() {
    let api = server();
    let out = ok(
        &api,
        "test",
        &["volume", "create", "cache", "--size", "2Gi"],
    );
    assert!(out.contains("--volume cache:/path"), "{out}");
    assert!(
        api.get(&path(TEST, "/api/v1 persistentvolumeclaims/shared-cache"))
            .is_some()
    );
    let out = ok(&api, "test", &["volume", "list"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("cache ") && l.contains("2Gi")),
        "{out}"
    );
    // A function may mount it now.
    ok(
        &api,
        "test",
        &[
            "function",
            "create",
            "warmer",
            "--image",
            "i",
            "--volume",
            "cache:/data",
        ],
    );
    let e = fails(&api, "test", &["volume", "delete", "cache"], None);
    assert!(e.contains("mounted by warmer"), "{e}");
    ok(&api, "test", &["volume", "delete", "cache", "--force"]);
    let e = fails(
        &api,
        "test",
        &[
            "function",
            "create",
            "w2",
            "--image",
            "i",
            "--volume",
            "nope:/data",
        ],
        None,
    );
    assert!(e.contains("kip volume create nope"), "{e}");

    let e = fails(&api, "test", &["service", "info", "ghost"], None);
    assert!(e.contains("not found in yourr-name-test"), "{e}");
    let e = fails(
        &api,
        "prod",
        &["service", "add", "redis", "--name", "cache"],
        None,
    );
    assert!(
        e.contains("namespace yourr-name-prod does not exist"),
        "{e}"
    );
    ok(
        &api,
        "test",
        &["service", "add", "redis", "--name", "cache"],
    );
    let e = fails(&api, "test", &["tunnel", "cache"], None);
    assert!(e.contains("no running pod"), "{e}");
    let e = fails(
        &api,
        "test",
        &[
            "service",
            "copy-data",
            "cache",
            "--from-environment",
            "acc",
            "--yes",
        ],
        None,
    );
    assert!(e.contains("not found in yourr-name-acc"), "{e}");
}

/// `kip tunnel` as a user runs it: the page's line once the pod is found, a connection that
/// cannot reach a kubelet closed and reported, Ctrl+C (SIGINT) closes it with exit 0.
#[test]
fn tunnel_opens_and_closes_on_ctrl_c() {
    let api = server();
    ok(
        &api,
        "test",
        &["service", "add", "postgres", "--name", "mydb"],
    );
    api.insert(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "mydb-0", "namespace": TEST, "labels": {"kipper.run/service": "mydb"}},
        "spec": {"containers": [{"name": "postgres", "image": "postgres"}]},
        "status": {"phase": "Running"}}));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kip"))
        .args(["tunnel", "mydb", "--local-port", &port.to_string()])
        .args(["--project", "yourr-name", "--environment", "test"])
        .env("KUBECONFIG", api.kubeconfig_path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(
        first,
        format!("✔ Tunnel open: localhost:{port} → mydb (postgres)\n")
    );
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    // Closed: the in-memory server has no kubelet behind the port-forward.
    let _ = c.read_to_end(&mut buf);
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(
        out.status.success(),
        "{:?} {}",
        out.status,
        text(&out.stderr)
    );
    assert!(rest.contains("Press Ctrl+C to close"), "{rest}");
    assert!(rest.contains("Tunnel closed"), "{rest}");
    let err = text(&out.stderr);
    assert!(err.contains("connection from 127.0.0.1:"), "{err}");
}
