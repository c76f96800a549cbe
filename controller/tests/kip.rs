//! `kip function` black-box tests: the binary offline (`--dry-run`, errors, schedule preview)
//! and every cluster command against the fake API server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fixtures;

use std::path::Path;
use std::process::{Command, Output};

use clap::Parser;
use http::Method;
use kipper_controller::cli::{self, FunctionArgs, Io, Kip, KipCommand};
use kipper_fake_apiserver::ApiServer;
use serde_json::{Value, json};

fn kip(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kip"))
        .args(args)
        // Offline means offline: no kubeconfig to find.
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn code_file(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.display().to_string()
}

#[test]
fn dry_run_renders_every_trigger_offline_and_valid() {
    let dir = tempfile::tempdir().unwrap();
    let js = code_file(
        dir.path(),
        "h.js",
        "module.exports = async () => ({ok: true})\n",
    );
    let py = code_file(dir.path(), "h.py", "def main():\n    return {}\n");
    let cases: Vec<Vec<&str>> = vec![
        vec![
            "web",
            "--code-file",
            &js,
            "--runtime",
            "node",
            "--dependency",
            "axios@1.6.7",
            "--volume",
            "cache:/data",
        ],
        vec![
            "nightly",
            "--code-file",
            &py,
            "--runtime",
            "python",
            "--trigger",
            "cron",
            "--schedule",
            "0 2 * * *",
        ],
        vec![
            "orders",
            "--image",
            "reg/o:1",
            "--trigger",
            "postgres",
            "--source",
            "mydb",
            "--query",
            "SELECT * FROM orders WHERE status = 'pending'",
            "--mark-done",
            "UPDATE orders SET status = 'done' WHERE id = {{id}}",
            "--port",
            "9000",
        ],
        vec![
            "users",
            "--image",
            "reg/u:1",
            "--trigger",
            "mysql",
            "--source",
            "shopdb",
            "--query",
            "SELECT * FROM users",
        ],
        vec![
            "mailer",
            "--code-file",
            &js,
            "--runtime",
            "node",
            "--trigger",
            "redis",
            "--source",
            "cache",
            "--list",
            "emails",
            "--idle-timeout",
            "60",
        ],
        vec![
            "thumbs",
            "--code-file",
            &py,
            "--runtime",
            "python",
            "--trigger",
            "minio",
            "--source",
            "storage",
            "--bucket",
            "uploads",
        ],
    ];
    let mut builtin = String::new();
    let mut custom = String::new();
    for case in cases {
        let mut args = vec!["function", "create"];
        args.extend(case.iter());
        args.extend([
            "--project",
            "shop",
            "--environment",
            "prod",
            "--dry-run",
            "-o",
            "yaml",
        ]);
        let out = kip(&args);
        assert!(out.status.success(), "{case:?}: {}", text(&out.stderr));
        let yaml = text(&out.stdout);
        let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&yaml)
            .map(|d| {
                serde_yaml::from_value::<Value>(serde_yaml::Value::deserialize(d).unwrap()).unwrap()
            })
            .collect();
        assert_eq!(docs[0]["kind"], "Function", "{case:?}");
        assert_eq!(docs[0]["metadata"]["namespace"], "shop-prod");
        assert!(docs.len() >= 2, "{case:?}");
        for d in docs {
            let target = match d["apiVersion"].as_str().unwrap() {
                v if v.contains("keda.sh")
                    || v.contains("traefik.io")
                    || v.contains("kipper.run") =>
                {
                    &mut custom
                }
                _ => &mut builtin,
            };
            target.push_str("---\n");
            target.push_str(&serde_yaml::to_string(&d).unwrap());
        }
    }
    let b = dir.path().join("builtin.yaml");
    let c = dir.path().join("custom.yaml");
    std::fs::write(&b, builtin).unwrap();
    std::fs::write(&c, custom).unwrap();
    fixtures::kubernetes_validate(&b);
    fixtures::crd_validate(&c, &fixtures::all_crds());
}

use serde::Deserialize as _;

#[test]
fn dry_run_json_and_the_schedule_preview() {
    let out = kip(&[
        "function",
        "create",
        "rep",
        "--image",
        "i",
        "--trigger",
        "cron",
        "--schedule",
        "0 9 * * 1",
        "--dry-run",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["Function", "CronJob"]);
    let err = text(&out.stderr);
    assert!(err.contains("Every Monday at 09:00 UTC"), "{err}");
    let runs: Vec<&str> = err.lines().filter(|l| l.starts_with("  ")).collect();
    assert_eq!(runs.len(), 5, "{err}");
    assert!(runs.iter().all(|l| l.contains("09:00 UTC (Mon)")), "{err}");
}

#[test]
fn bad_flags_fail_with_the_flag_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let js = code_file(dir.path(), "h.js", "module.exports = () => 1\n");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["f", "--code-file", &js], "--code-file needs --runtime"),
        (
            vec![
                "f",
                "--image",
                "i",
                "--trigger",
                "postgres",
                "--source",
                "db",
            ],
            "needs --query",
        ),
        (
            vec![
                "f",
                "--image",
                "i",
                "--trigger",
                "cron",
                "--schedule",
                "every day",
            ],
            "--schedule",
        ),
        (
            vec!["f", "--image", "i", "--trigger", "cron"],
            "needs --schedule",
        ),
        (
            vec!["f", "--code-file", "/nonexistent/x.js", "--runtime", "node"],
            "--code-file /nonexistent/x.js",
        ),
        (vec!["Bad_Name", "--image", "i"], "function name"),
        (
            vec!["f", "--image", "i", "--dependency", "axios"],
            "name@version",
        ),
        (
            vec!["f", "--image", "i", "--volume", "cache"],
            "name:/absolute/path",
        ),
        (vec!["f", "--image", "i", "--trigger", "kafka"], "--trigger"),
    ];
    for (case, want) in cases {
        let mut args = vec!["function", "create"];
        args.extend(case.iter());
        args.push("--dry-run");
        let out = kip(&args);
        assert!(!out.status.success(), "{case:?} succeeded");
        let err = text(&out.stderr);
        assert!(err.contains(want), "{case:?}: {err}");
        assert!(out.stdout.is_empty(), "{case:?}: printed objects on error");
    }
    // Without --dry-run and no cluster: a clear hint.
    let out = kip(&["function", "list"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--dry-run"),
        "{}",
        text(&out.stderr)
    );
}

struct Run {
    out: String,
    err: String,
    result: kipper_controller::Result<()>,
}

async fn run(client: &kube::Client, args: &[&str], secret: Option<&str>) -> Run {
    let mut full = vec!["kip", "function"];
    full.extend(args.iter());
    full.extend(["--project", "shop", "--environment", "prod"]);
    let KipCommand::Function(fargs) = Kip::try_parse_from(&full).unwrap().command else {
        panic!("{full:?} is not a kip function command");
    };
    let fargs: FunctionArgs = fargs;
    let mut out = Vec::new();
    let mut err = Vec::new();
    let value = secret.map(str::to_owned);
    let mut reader = move |_key: &str| -> kipper_controller::Result<String> {
        Ok(value.clone().unwrap_or_default())
    };
    let mut io = Io {
        out: &mut out,
        err: &mut err,
        read_secret: &mut reader,
    };
    let result = cli::run(&fargs, client.clone(), &mut io).await;
    Run {
        out: text(&out),
        err: text(&err),
        result,
    }
}

const NS: &str = "shop-prod";

fn service(fake: &ApiServer, name: &str, kind: &str) {
    fake.insert(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": format!("{name}-credentials"), "namespace": NS,
                     "labels": {"kipper.run/service-type": kind}},
        "data": {"username": "a2lwcGVy", "password": "c2VjcmV0"}
    }));
}

fn function(fake: &ApiServer, name: &str) -> Value {
    fake.get(&format!(
        "/apis/kipper.run/v1alpha1/namespaces/{NS}/functions/{name}"
    ))
    .unwrap()
}

#[tokio::test]
async fn create_update_list_and_delete() {
    let fake = ApiServer::start();
    fake.namespace("shop-prod");
    let client = fake.client().await;
    service(&fake, "mydb", "postgres");
    let r = run(
        &client,
        &[
            "create",
            "orders",
            "--image",
            "reg/o:1",
            "--trigger",
            "postgres",
            "--source",
            "mydb",
            "--query",
            "SELECT 1",
        ],
        None,
    )
    .await;
    r.result.unwrap();
    assert!(
        r.out.contains("function orders created in shop-prod"),
        "{}",
        r.out
    );
    let f = function(&fake, "orders");
    assert_eq!(f["metadata"]["labels"]["kipper.run/environment"], "prod");
    assert_eq!(f["spec"]["triggers"][0]["config"]["query"], "SELECT 1");

    // Bindings and env survive a second create that only changes the query.
    run(&client, &["bind", "orders", "mydb"], None)
        .await
        .result
        .unwrap();
    run(&client, &["env", "set", "orders", "A=1"], None)
        .await
        .result
        .unwrap();
    let r = run(&client, &["create", "orders", "--query", "SELECT 2"], None).await;
    r.result.unwrap();
    assert!(r.out.contains("updated"), "{}", r.out);
    let f = function(&fake, "orders");
    assert_eq!(f["spec"]["triggers"][0]["config"]["query"], "SELECT 2");
    assert_eq!(f["spec"]["triggers"][0]["config"]["source"], "mydb");
    assert_eq!(
        f["spec"]["serviceBindings"][0]["database"],
        "mydb_orders_prod"
    );
    assert_eq!(f["spec"]["env"]["A"], "1");
    assert_eq!(f["spec"]["image"], "reg/o:1");

    let e = run(
        &client,
        &[
            "create",
            "x",
            "--image",
            "i",
            "--trigger",
            "redis",
            "--source",
            "ghost",
            "--list",
            "q",
        ],
        None,
    )
    .await;
    let msg = e.result.unwrap_err().to_string();
    assert!(msg.contains("--source \"ghost\": unknown service"), "{msg}");

    run(&client, &["create", "web", "--image", "i"], None)
        .await
        .result
        .unwrap();
    let r = run(&client, &["list"], None).await;
    r.result.unwrap();
    let lines: Vec<&str> = r.out.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{}", r.out);
    assert!(
        r.out.contains("orders") && r.out.contains("postgres") && r.out.contains("web"),
        "{}",
        r.out
    );

    let r = run(&client, &["delete", "orders", "nope", "web"], None).await;
    assert!(r.result.unwrap_err().to_string().contains("nope"));
    assert!(
        r.out.contains("function orders deleted") && r.out.contains("function web deleted"),
        "{}",
        r.out
    );
    assert!(r.err.contains("function nope not found"), "{}", r.err);
    assert!(fake.paths().iter().all(|p| !p.contains("/functions/")));
}

#[tokio::test]
async fn bind_and_unbind() {
    let fake = ApiServer::start();
    fake.namespace("shop-prod");
    let client = fake.client().await;
    service(&fake, "eventdb", "postgres");
    service(&fake, "cache", "redis");
    run(&client, &["create", "sync", "--image", "i"], None)
        .await
        .result
        .unwrap();

    let r = run(&client, &["bind", "sync", "eventdb"], None).await;
    r.result.unwrap();
    assert!(r.out.contains("database: eventdb_sync_prod"), "{}", r.out);
    assert!(
        r.out
            .contains("DB_HOST DB_PORT DB_USERNAME DB_USER DB_PASSWORD DB_NAME"),
        "{}",
        r.out
    );
    let r = run(
        &client,
        &[
            "bind",
            "sync",
            "eventdb",
            "--prefix",
            "EVENTS_",
            "--database",
            "events_custom",
        ],
        None,
    )
    .await;
    r.result.unwrap();
    let b = &function(&fake, "sync")["spec"]["serviceBindings"];
    assert_eq!(b.as_array().unwrap().len(), 1, "rebinding replaces: {b}");
    assert_eq!(b[0]["prefix"], "EVENTS_");
    assert_eq!(b[0]["database"], "events_custom");
    run(&client, &["bind", "sync", "cache"], None)
        .await
        .result
        .unwrap();

    for (args, want) in [
        (vec!["bind", "sync", "ghost"], "unknown service"),
        (
            vec![
                "bind",
                "sync",
                "eventdb",
                "--database",
                "x; DROP DATABASE y",
            ],
            "database name",
        ),
        (
            vec!["bind", "sync", "eventdb", "--prefix", "lower"],
            "--prefix",
        ),
        (
            vec!["bind", "sync", "cache", "--database", "d"],
            "database services only",
        ),
        (vec!["bind", "nofn", "cache"], "function \"nofn\" not found"),
        (vec!["unbind", "sync", "ghost"], "not bound"),
    ] {
        let msg = run(&client, &args, None)
            .await
            .result
            .unwrap_err()
            .to_string();
        assert!(msg.contains(want), "{args:?}: {msg}");
    }
    run(&client, &["unbind", "sync", "eventdb"], None)
        .await
        .result
        .unwrap();
    let b = &function(&fake, "sync")["spec"]["serviceBindings"];
    assert_eq!(b.as_array().unwrap().len(), 1);
    assert_eq!(b[0]["name"], "cache");
}

#[tokio::test]
async fn env_and_write_only_secrets() {
    let fake = ApiServer::start();
    fake.namespace("shop-prod");
    let client = fake.client().await;
    run(&client, &["create", "sync", "--image", "i"], None)
        .await
        .result
        .unwrap();
    run(
        &client,
        &[
            "env",
            "set",
            "sync",
            "OPENSRS_HOST=horizon.opensrs.net",
            "B=2",
        ],
        None,
    )
    .await
    .result
    .unwrap();
    let r = run(&client, &["env", "list", "sync"], None).await;
    assert_eq!(r.out, "B=2\nOPENSRS_HOST=horizon.opensrs.net\n");
    run(&client, &["env", "delete", "sync", "B"], None)
        .await
        .result
        .unwrap();
    assert_eq!(
        run(&client, &["env", "list", "sync"], None).await.out,
        "OPENSRS_HOST=horizon.opensrs.net\n"
    );
    for (args, want) in [
        (vec!["env", "delete", "sync", "NOPE"], "NOPE is not set"),
        (vec!["env", "set", "sync", "PORT=1"], "--port"),
        (vec!["env", "set", "nofn", "A=1"], "not found"),
    ] {
        let msg = run(&client, &args, None)
            .await
            .result
            .unwrap_err()
            .to_string();
        assert!(msg.contains(want), "{args:?}: {msg}");
    }
    assert!(Kip::try_parse_from(["kip", "function", "env", "set", "sync", "1A=x"]).is_err());
    assert!(Kip::try_parse_from(["kip", "function", "env", "set", "sync", "NOEQUALS"]).is_err());

    let value = "s3cr3t-v4lue";
    let r = run(
        &client,
        &["secret", "set", "sync", "OPENSRS_API_KEY"],
        Some(value),
    )
    .await;
    r.result.unwrap();
    assert!(!r.out.contains(value) && !r.err.contains(value));
    let secret = fake
        .get(&format!("/api/v1/namespaces/{NS}/secrets/sync-secrets"))
        .unwrap();
    assert_eq!(secret["data"]["OPENSRS_API_KEY"], "czNjcjN0LXY0bHVl");
    assert_eq!(secret["metadata"]["ownerReferences"][0]["kind"], "Function");
    run(&client, &["secret", "set", "sync", "OTHER"], Some("x"))
        .await
        .result
        .unwrap();
    let r = run(&client, &["secret", "list", "sync"], None).await;
    assert_eq!(r.out, "OPENSRS_API_KEY\nOTHER\n");
    // Replacing a value marks it rotated (the console's has_previous), still never printed.
    let r = run(
        &client,
        &["secret", "set", "sync", "OPENSRS_API_KEY"],
        Some("n3w-v4lue"),
    )
    .await;
    r.result.unwrap();
    assert!(!r.out.contains("n3w-v4lue"));
    let r = run(&client, &["secret", "list", "sync"], None).await;
    assert_eq!(r.out, "OPENSRS_API_KEY  (rotated)\nOTHER\n");
    let empty = run(&client, &["secret", "set", "sync", "E"], Some("")).await;
    assert!(empty.result.unwrap_err().to_string().contains("empty"));
    run(&client, &["secret", "delete", "sync", "OTHER"], None)
        .await
        .result
        .unwrap();
    assert_eq!(
        run(&client, &["secret", "list", "sync"], None).await.out,
        "OPENSRS_API_KEY  (rotated)\n"
    );
    let msg = run(&client, &["secret", "delete", "sync", "OTHER"], None)
        .await
        .result
        .unwrap_err()
        .to_string();
    assert!(msg.contains("not set"), "{msg}");
}

#[tokio::test]
async fn test_run_and_logs() {
    let fake = ApiServer::start();
    fake.namespace("shop-prod");
    let client = fake.client().await;
    run(
        &client,
        &[
            "create",
            "nightly",
            "--image",
            "i",
            "--trigger",
            "cron",
            "--schedule",
            "0 2 * * *",
        ],
        None,
    )
    .await
    .result
    .unwrap();
    let r = run(&client, &["test-run", "nightly"], None).await;
    r.result.unwrap();
    let job_path = fake
        .paths()
        .into_iter()
        .find(|p| p.contains("/jobs/"))
        .unwrap();
    let job_name = job_path.rsplit('/').next().unwrap();
    assert!(
        job_name.starts_with("nightly-test-") && job_name.len() == "nightly-test-".len() + 8,
        "{job_name}"
    );
    assert!(
        job_name["nightly-test-".len()..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
    );
    assert!(r.out.contains(job_name), "{}", r.out);
    let job = fake.get(&job_path).unwrap();
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 600);

    // With a deployed CronJob, the test run copies its pod (here: a custom image).
    fake.insert(json!({"apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "nightly-cron", "namespace": NS, "labels": {"app": "nightly"}},
        "spec": {"schedule": "0 2 * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "function", "image": "deployed:7",
                "env": [{"name": "KIPPER_TRIGGER", "value": "cron"}, {"name": "X", "value": "1"}]}]}}}}}
    }));
    run(&client, &["test-run", "nightly"], None)
        .await
        .result
        .unwrap();
    let jobs: Vec<Value> = fake
        .paths()
        .into_iter()
        .filter(|p| p.contains("/jobs/"))
        .map(|p| fake.get(&p).unwrap())
        .collect();
    let copied = jobs
        .iter()
        .find(|j| j["spec"]["template"]["spec"]["containers"][0]["image"] == "deployed:7")
        .unwrap();
    let env = &copied["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(
        env,
        &json!([{"name": "KIPPER_TRIGGER", "value": "test"}, {"name": "X", "value": "1"}])
    );

    fake.insert(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "nightly-cron-1-abc", "namespace": NS, "labels": {"app": "nightly"}}}));
    let r = run(&client, &["logs", "nightly"], None).await;
    r.result.unwrap();
    assert_eq!(
        r.out,
        "[nightly-cron-1-abc] hello from nightly-cron-1-abc\n[nightly-cron-1-abc] bye\n"
    );
    let seen = fake
        .log()
        .into_iter()
        .find(|s| s.method == Method::GET && s.path.ends_with("/log"))
        .unwrap();
    assert!(
        seen.query.contains("sinceSeconds=3600") && seen.query.contains("container=function"),
        "{seen:?}"
    );
}
