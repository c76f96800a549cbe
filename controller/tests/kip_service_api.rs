//! `kip service`, `kip volume`, `kip tunnel` in-process against the in-memory HTTPS API
//! server: every cluster command, its objects and its field manager (`kip_service_bin.rs` runs
//! the binary there; `kip_service.rs` tests it offline).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use clap::Parser;
use http::Method;
use kipper_controller::cli::{Io, Kip, service};
use kipper_fake_apiserver::ApiServer;
use serde_json::{Value, json};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct Run {
    out: String,
    err: String,
    result: kipper_controller::Result<()>,
}

async fn run(client: &kube::Client, args: &[&str]) -> Run {
    let mut full = vec!["kip"];
    full.extend(args.iter());
    let command = Kip::try_parse_from(&full).unwrap().command;
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut reader = |_key: &str| -> kipper_controller::Result<String> { Ok(String::new()) };
    let mut io = Io {
        out: &mut out,
        err: &mut err,
        read_secret: &mut reader,
    };
    let result = service::run_with_client(&command, client.clone(), &mut io).await;
    Run {
        out: text(&out),
        err: text(&err),
        result,
    }
}

const NS: &str = "shop-test";

/// The server, with the namespaces of the tests (`shop-test`, `shop-acc`), and a client.
async fn start() -> (ApiServer, kube::Client) {
    let api = ApiServer::start();
    api.namespace(NS);
    api.namespace("shop-acc");
    let client = api.client().await;
    (api, client)
}

fn at(kind_path: &str, name: &str) -> String {
    format!("{kind_path}/namespaces/{NS}/{name}")
}

fn secret_text(v: &Value, key: &str) -> String {
    text(
        &base64::engine::general_purpose::STANDARD
            .decode(v["data"][key].as_str().unwrap())
            .unwrap(),
    )
}

/// Every write carried the field manager `kip`.
fn assert_field_manager(fake: &ApiServer) {
    for s in fake.log() {
        if matches!(s.method, Method::POST | Method::PUT | Method::PATCH) {
            assert!(
                s.query.contains("fieldManager=kip"),
                "{} {} without fieldManager=kip: {}",
                s.method,
                s.path,
                s.query
            );
        }
    }
}

fn scope() -> [&'static str; 4] {
    ["--project", "shop", "--environment", "test"]
}

async fn svc(client: &kube::Client, args: &[&str]) -> Run {
    let mut full = vec!["service"];
    full.extend(args);
    full.extend(scope());
    run(client, &full).await
}

#[tokio::test]
async fn add_list_info_and_refuse_a_second_add() {
    let (fake, client) = start().await;
    let r = svc(&client, &["add", "postgres", "--name", "mydb"]).await;
    r.result.unwrap();
    let secret = fake
        .get(&at("/api/v1", "secrets/mydb-credentials"))
        .expect("the credentials Secret");
    assert_eq!(
        secret["metadata"]["labels"]["kipper.run/service-type"],
        "postgres"
    );
    let password = secret_text(&secret, "password");
    // Shown once, as the page shows it.
    for line in [
        "Host: mydb.shop-test.svc.cluster.local".to_owned(),
        "Port: 5432".to_owned(),
        "Username: kipper".to_owned(),
        format!("Password: {password}"),
        "Database: app".to_owned(),
    ] {
        assert!(r.out.contains(&line), "{line} in {}", r.out);
    }
    assert!(fake.get(&at("/api/v1", "services/mydb")).is_some());
    assert!(
        fake.get(&at("/apis/apps/v1", "statefulsets/mydb"))
            .is_some()
    );

    let again = svc(&client, &["add", "postgres", "--name", "mydb"]).await;
    let e = again.result.unwrap_err().to_string();
    assert!(e.contains("already exists"), "{e}");
    assert_eq!(
        secret_text(
            &fake
                .get(&at("/api/v1", "secrets/mydb-credentials"))
                .unwrap(),
            "password"
        ),
        password,
        "the password must not change"
    );

    svc(&client, &["add", "redis", "--name", "cache"])
        .await
        .result
        .unwrap();
    // A name whose Service belongs to an app or a function is refused.
    fake.insert(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": NS, "labels": {"app": "web"}}}));
    let e = svc(&client, &["add", "postgres", "--name", "web"])
        .await
        .result
        .unwrap_err();
    assert!(e.to_string().contains("pick another --name"), "{e}");
    assert!(
        fake.get(&at("/api/v1", "secrets/web-credentials"))
            .is_none()
    );
    // The cluster reports the database ready.
    let mut set = fake.get(&at("/apis/apps/v1", "statefulsets/mydb")).unwrap();
    set["status"] = json!({"replicas": 1, "readyReplicas": 1});
    fake.insert(set);
    // A service kip did not create: only its credentials Secret.
    fake.insert(json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "legacy-credentials", "namespace": NS,
                     "labels": {"kipper.run/service-type": "mysql"}},
        "data": {}}));
    let r = svc(&client, &["list"]).await;
    r.result.unwrap();
    let lines: Vec<Vec<&str>> = r
        .out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["NAME", "TYPE", "STATUS", "READY", "STORAGE"]);
    assert!(
        lines.contains(&vec!["mydb", "postgres", "running", "1/1", "5Gi"]),
        "{}",
        r.out
    );
    assert!(
        lines.contains(&vec!["cache", "redis", "starting", "0/1", "1Gi"]),
        "{}",
        r.out
    );
    assert!(
        lines.contains(&vec!["legacy", "mysql", "external", "-", "-"]),
        "{}",
        r.out
    );

    let r = svc(&client, &["info", "mydb"]).await;
    r.result.unwrap();
    assert!(!r.out.contains(&password), "{}", r.out);
    assert!(r.out.contains("Host: mydb.shop-test.svc.cluster.local"));
    assert!(r.out.contains("--show-password"));
    let r = svc(&client, &["info", "mydb", "--show-password"]).await;
    assert!(
        r.out.contains(&format!("Password: {password}")),
        "{}",
        r.out
    );
    let e = svc(&client, &["info", "ghost"]).await.result.unwrap_err();
    assert!(e.to_string().contains("not found in shop-test"), "{e}");
    assert_field_manager(&fake);
}

#[tokio::test]
async fn minio_info_shows_endpoint_and_console() {
    let (_fake, client) = start().await;
    let r = svc(&client, &["add", "minio", "--name", "storage"]).await;
    r.result.unwrap();
    for out in [r.out, svc(&client, &["info", "storage"]).await.out] {
        assert!(
            out.contains("Endpoint: http://storage.shop-test.svc.cluster.local:9000"),
            "{out}"
        );
        assert!(
            out.contains("Console: http://storage.shop-test.svc.cluster.local:9001"),
            "{out}"
        );
    }
}

fn app(fake: &ApiServer, name: &str) {
    fake.insert(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "web", "image": "web:1",
                                                       "env": [{"name": "KEEP", "value": "1"}]}]}}}}));
}

fn function(fake: &ApiServer, name: &str, volumes: Value) {
    fake.insert(
        json!({"apiVersion": "kipper.run/v1alpha1", "kind": "Function",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"image": "i", "port": 8080, "volumes": volumes}}),
    );
}

fn env_names(fake: &ApiServer, app: &str) -> Vec<String> {
    let d = fake
        .get(&at("/apis/apps/v1", &format!("deployments/{app}")))
        .unwrap();
    d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn bind_to_apps_and_functions_then_delete_unbinds_everywhere() {
    let (fake, client) = start().await;
    svc(&client, &["add", "postgres", "--name", "db"])
        .await
        .result
        .unwrap();
    svc(&client, &["add", "minio", "--name", "storage"])
        .await
        .result
        .unwrap();
    app(&fake, "domain-service");
    function(&fake, "opensrs-sync", json!([]));

    // An app: the page's names and per-app database, created by a Job.
    let r = svc(&client, &["bind", "db", "domain-service"]).await;
    r.result.unwrap();
    assert!(r.out.contains("database: domain_service_test"), "{}", r.out);
    let names = env_names(&fake, "domain-service");
    for n in [
        "KEEP",
        "DB_HOST",
        "DB_PORT",
        "DB_USERNAME",
        "DB_PASSWORD",
        "DB_NAME",
    ] {
        assert!(names.contains(&n.to_owned()), "{n}: {names:?}");
    }
    let jobs: Vec<String> = fake
        .paths()
        .into_iter()
        .filter(|p| p.contains("/jobs/db-createdb-"))
        .collect();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let job = fake.get(&jobs[0]).unwrap();
    assert!(job.to_string().contains("domain_service_test"));
    svc(&client, &["bind", "storage", "domain-service"])
        .await
        .result
        .unwrap();
    let names = env_names(&fake, "domain-service");
    for n in ["S3_HOST", "S3_PORT", "S3_USERNAME", "S3_PASSWORD"] {
        assert!(names.contains(&n.to_owned()), "{n}: {names:?}");
    }

    // A function: `kip service bind <svc> <fn>` is `kip function bind <fn> <svc>`.
    let r = svc(&client, &["bind", "db", "opensrs-sync"]).await;
    r.result.unwrap();
    assert!(
        r.out.contains("database: db_opensrs_sync_test"),
        "{}",
        r.out
    );
    let f = fake
        .get(&at("/apis/kipper.run/v1alpha1", "functions/opensrs-sync"))
        .unwrap();
    assert_eq!(f["spec"]["serviceBindings"][0]["name"], "db");

    let e = svc(&client, &["bind", "db", "nobody"])
        .await
        .result
        .unwrap_err();
    assert!(e.to_string().contains("no app or function named"), "{e}");
    let e = svc(&client, &["bind", "ghost", "domain-service"])
        .await
        .result
        .unwrap_err();
    assert!(e.to_string().contains("not found"), "{e}");

    // Unbind an app: its variables go, the others stay.
    let r = svc(&client, &["unbind", "storage", "domain-service"]).await;
    r.result.unwrap();
    let names = env_names(&fake, "domain-service");
    assert!(names.iter().all(|n| !n.starts_with("S3_")), "{names:?}");
    assert!(names.contains(&"DB_HOST".to_owned()));

    // Delete: refused without --delete-data; with it, unbinds everywhere and removes the data.
    let e = svc(&client, &["delete", "db"]).await.result.unwrap_err();
    assert!(e.to_string().contains("--delete-data"), "{e}");
    fake.insert(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data-db-0", "namespace": NS,
                     "labels": {"kipper.run/service": "db"}}}));
    let r = svc(&client, &["delete", "db", "--delete-data"]).await;
    r.result.unwrap();
    assert!(
        r.out.contains("unbound db from function opensrs-sync"),
        "{}",
        r.out
    );
    assert!(
        r.out.contains("unbound db from app domain-service"),
        "{}",
        r.out
    );
    assert!(r.out.contains("data-db-0"), "{}", r.out);
    assert_eq!(env_names(&fake, "domain-service"), ["KEEP"]);
    let f = fake
        .get(&at("/apis/kipper.run/v1alpha1", "functions/opensrs-sync"))
        .unwrap();
    assert!(
        f["spec"]["serviceBindings"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{f}"
    );
    for gone in [
        at("/api/v1", "secrets/db-credentials"),
        at("/api/v1", "services/db"),
        at("/apis/apps/v1", "statefulsets/db"),
        at("/api/v1", "persistentvolumeclaims/data-db-0"),
    ] {
        assert!(fake.get(&gone).is_none(), "{gone} is still there");
    }
    // The other service is untouched.
    assert!(
        fake.get(&at("/api/v1", "secrets/storage-credentials"))
            .is_some()
    );
    let e = svc(&client, &["delete", "db", "--delete-data"])
        .await
        .result
        .unwrap_err();
    assert!(e.to_string().contains("not found"), "{e}");
    assert_field_manager(&fake);
}

fn vol<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut full = vec!["volume"];
    full.extend(args.iter().copied());
    full.extend(scope());
    full
}

#[tokio::test]
async fn volumes_create_list_and_delete() {
    let (fake, client) = start().await;
    run(&client, &vol(&["create", "cache", "--size", "2Gi"]))
        .await
        .result
        .unwrap();
    let pvc = fake
        .get(&at("/api/v1", "persistentvolumeclaims/shared-cache"))
        .unwrap();
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "2Gi");
    let e = run(&client, &vol(&["create", "cache"]))
        .await
        .result
        .unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
    function(
        &fake,
        "cache-warmer",
        json!([{"name": "cache", "mountPath": "/data"}]),
    );
    let r = run(&client, &vol(&["list"])).await;
    r.result.unwrap();
    assert!(r.out.contains("MOUNTED BY"), "{}", r.out);
    let row = r.out.lines().find(|l| l.starts_with("cache")).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells,
        ["cache", "2Gi", "ReadWriteOnce", "Pending", "cache-warmer"]
    );
    let e = run(&client, &vol(&["delete", "cache"]))
        .await
        .result
        .unwrap_err();
    assert!(e.to_string().contains("mounted by cache-warmer"), "{e}");
    run(&client, &vol(&["delete", "cache", "--force"]))
        .await
        .result
        .unwrap();
    assert!(
        fake.get(&at("/api/v1", "persistentvolumeclaims/shared-cache"))
            .is_none()
    );
    let e = run(&client, &vol(&["delete", "cache"]))
        .await
        .result
        .unwrap_err();
    assert!(e.to_string().contains("not found"), "{e}");
    assert_field_manager(&fake);
}

#[tokio::test]
async fn copy_data_starts_the_job_with_an_owned_mirror() {
    let (fake, client) = start().await;
    for env in ["test", "acc"] {
        let r = run(
            &client,
            &[
                "service",
                "add",
                "postgres",
                "--name",
                "db",
                "--project",
                "shop",
                "--environment",
                env,
            ],
        )
        .await;
        r.result.unwrap();
    }
    let r = run(
        &client,
        &[
            "service",
            "copy-data",
            "db",
            "--from-environment",
            "test",
            "--project",
            "shop",
            "--environment",
            "acc",
            "--yes",
        ],
    )
    .await;
    r.result.unwrap();
    let job_path = fake
        .paths()
        .into_iter()
        .find(|p| p.starts_with("/apis/batch/v1/namespaces/shop-acc/jobs/db-copy-"))
        .expect("the copy Job in the target namespace");
    let job = fake.get(&job_path).unwrap();
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 3600);
    let job_name = job["metadata"]["name"].as_str().unwrap();
    let mirror = fake
        .get(&format!(
            "/api/v1/namespaces/shop-acc/secrets/{job_name}-source"
        ))
        .expect("the mirror of the source credentials");
    assert_eq!(mirror["metadata"]["ownerReferences"][0]["kind"], "Job");
    assert_eq!(
        mirror["metadata"]["ownerReferences"][0]["uid"],
        job["metadata"]["uid"]
    );
    let source = fake
        .get("/api/v1/namespaces/shop-test/secrets/db-credentials")
        .unwrap();
    assert_eq!(
        secret_text(&mirror, "password"),
        secret_text(&source, "password")
    );
    assert_eq!(
        secret_text(&mirror, "host"),
        "db.shop-test.svc.cluster.local"
    );
    assert!(r.out.contains(job_name), "{}", r.out);
    assert_field_manager(&fake);

    // Postgres only, for now.
    for env in ["test", "acc"] {
        run(
            &client,
            &[
                "service",
                "add",
                "redis",
                "--name",
                "cache",
                "--project",
                "shop",
                "--environment",
                env,
            ],
        )
        .await
        .result
        .unwrap();
    }
    let e = run(
        &client,
        &[
            "service",
            "copy-data",
            "cache",
            "--from-environment",
            "test",
            "--project",
            "shop",
            "--to-environment",
            "acc",
            "--yes",
        ],
    )
    .await
    .result
    .unwrap_err();
    assert!(e.to_string().contains("postgres services only"), "{e}");
}

#[tokio::test]
async fn tunnel_needs_a_running_pod() {
    let (fake, client) = start().await;
    svc(&client, &["add", "postgres", "--name", "mydb"])
        .await
        .result
        .unwrap();
    let mut full = vec!["tunnel", "mydb"];
    full.extend(scope());
    let r = run(&client, &full).await;
    let e = r.result.unwrap_err().to_string();
    assert!(e.contains("no running pod"), "{e}");
    assert!(r.out.is_empty() && r.err.is_empty());
    let mut full = vec!["tunnel", "ghost"];
    full.extend(scope());
    let e = run(&client, &full).await.result.unwrap_err().to_string();
    assert!(e.contains("not found"), "{e}");
    let _ = fake;
}

/// A writer the test can read while the command still runs.
#[derive(Clone, Default)]
struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn text(&self) -> String {
        text(&self.0.lock().unwrap())
    }
}

/// What can be tested without a kubelet: the pod is found, the local port opens with the
/// page's line, a busy port is refused in one line, and a connection whose port-forward the
/// API server cannot upgrade is closed and reported (a real kubelet is needed past that).
#[tokio::test]
async fn tunnel_opens_locally_and_reports_an_upstream_it_cannot_reach() {
    use tokio::io::AsyncReadExt;

    let (fake, client) = start().await;
    svc(&client, &["add", "postgres", "--name", "mydb"])
        .await
        .result
        .unwrap();
    fake.insert(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "mydb-0", "namespace": NS, "labels": {"kipper.run/service": "mydb"}},
        "spec": {"containers": [{"name": "postgres", "image": "postgres"}]},
        "status": {"phase": "Running"}}));

    // A busy port: one line naming another.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let mut full = vec!["tunnel", "mydb", "--local-port", &port];
    full.extend(scope());
    let e = run(&client, &full).await.result.unwrap_err().to_string();
    assert!(
        e.contains("already in use") && e.contains("--local-port"),
        "{e}"
    );
    drop(busy);

    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let port_arg = port.to_string();
    let mut full = vec!["kip", "tunnel", "mydb", "--local-port", &port_arg];
    full.extend(scope());
    let command = Kip::try_parse_from(&full).unwrap().command;
    let (mut out, mut err) = (Shared::default(), Shared::default());
    let (out_view, err_view) = (out.clone(), err.clone());
    let mut reader = |_key: &str| -> kipper_controller::Result<String> { Ok(String::new()) };
    let mut io = Io {
        out: &mut out,
        err: &mut err,
        read_secret: &mut reader,
    };
    let tunnel = service::run_with_client(&command, client.clone(), &mut io);
    let probe = async {
        // Wait for the line, then connect as a database client would.
        for _ in 0..100 {
            if out_view.text().contains("Tunnel open") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut buf = Vec::new();
        // Closed, not hanging: the fake API server cannot upgrade to a port-forward stream.
        let _ = c.read_to_end(&mut buf).await;
        for _ in 0..100 {
            if !err_view.text().is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    // The tunnel runs until Ctrl+C; the test stops it by dropping it after the probe.
    tokio::select! {
        r = tunnel => panic!("the tunnel ended by itself: {r:?}"),
        () = probe => {}
    }
    assert_eq!(
        out_view.text(),
        format!("✔ Tunnel open: localhost:{port} → mydb (postgres)\nPress Ctrl+C to close\n")
    );
    let err = err_view.text();
    assert!(err.starts_with("connection from 127.0.0.1:"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let pf = fake
        .log()
        .into_iter()
        .find(|s| s.path.ends_with("/pods/mydb-0/portforward"))
        .expect("a port-forward request for the service's pod");
    assert!(pf.query.contains("ports=5432"), "{}", pf.query);
}

/// `kip function create --volume name:/path` needs the volume `kip volume create` made.
#[tokio::test]
async fn function_volumes_must_exist() {
    let (fake, client) = start().await;
    let create = |client: kube::Client| async move {
        let full = [
            "kip",
            "function",
            "create",
            "warmer",
            "--image",
            "i",
            "--volume",
            "cache:/data",
            "--project",
            "shop",
            "--environment",
            "test",
        ];
        let kipper_controller::cli::KipCommand::Function(fargs) =
            Kip::try_parse_from(full).unwrap().command
        else {
            panic!("not a function command");
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut reader = |_key: &str| -> kipper_controller::Result<String> { Ok(String::new()) };
        let mut io = Io {
            out: &mut out,
            err: &mut err,
            read_secret: &mut reader,
        };
        kipper_controller::cli::run(&fargs, client, &mut io).await
    };
    let e = create(client.clone()).await.unwrap_err().to_string();
    assert!(e.contains("kip volume create cache"), "{e}");
    run(&client, &vol(&["create", "cache"]))
        .await
        .result
        .unwrap();
    create(client.clone()).await.unwrap();
    assert!(
        fake.get(&at("/apis/kipper.run/v1alpha1", "functions/warmer"))
            .is_some()
    );
}

#[tokio::test]
async fn resources_change_only_what_the_flags_say() {
    let (fake, client) = start().await;
    svc(&client, &["add", "postgres", "--name", "mydb"])
        .await
        .result
        .unwrap();
    let e = svc(&client, &["resources", "mydb"])
        .await
        .result
        .unwrap_err();
    assert!(e.to_string().contains("--cpu-limit"), "{e}");
    let e = svc(&client, &["resources", "mydb", "--memory-limit", "lots"])
        .await
        .result
        .unwrap_err();
    assert!(e.to_string().contains("not a memory quantity"), "{e}");
    let r = svc(
        &client,
        &[
            "resources",
            "mydb",
            "--cpu-limit",
            "2",
            "--memory-request",
            "512Mi",
        ],
    )
    .await;
    r.result.unwrap();
    assert!(r.out.contains("restarts"), "{}", r.out);
    let set = fake.get(&at("/apis/apps/v1", "statefulsets/mydb")).unwrap();
    let c = &set["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["resources"]["limits"]["cpu"], "2");
    assert_eq!(c["resources"]["requests"]["memory"], "512Mi");
    // The rest is as it was.
    assert_eq!(c["resources"]["limits"]["memory"], "1Gi");
    assert_eq!(c["resources"]["requests"]["cpu"], "100m");
    assert_eq!(c["image"], "docker.io/library/postgres:16.4");
    let e = svc(&client, &["resources", "ghost", "--cpu-limit", "1"])
        .await
        .result
        .unwrap_err();
    assert!(e.to_string().contains("not found"), "{e}");
    assert_field_manager(&fake);
}
