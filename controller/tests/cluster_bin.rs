//! The binary tier: the real `kip` and `kipper-controller` binaries against an API server over
//! HTTPS, reached through a kubeconfig as a user's cluster is (the in-memory server of
//! `apiserver/`). Every scenario goes through the binaries' entry points; the tests only read
//! the cluster back, and play the parts of other actors (KEDA scaling, a user's `kubectl`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod apiserver;
mod cluster;

use std::time::Duration;

use apiserver::{ApiServer, path_of};
use cluster::{
    CONVERGE, ControllerProcess, NS, code_file, condition, deployment_path, dry_run_paths,
    function_path, kip, kip_fn, kip_fn_stdin, seed_services, text, wait_ready,
};
use http::Method;
use serde_json::{Value, json};

const NODE_HANDLER: &str = "module.exports = async (req) => ({ ok: true })\n";
const PY_HANDLER: &str = "def main(event=None):\n    return {'ok': True}\n";

/// One `kip function create` per trigger: (name, flags).
fn every_trigger(js: &str, py: &str) -> Vec<(&'static str, Vec<String>)> {
    let own = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    vec![
        ("web", own(&["--code-file", js, "--runtime", "node"])),
        (
            "nightly",
            own(&[
                "--code-file",
                py,
                "--runtime",
                "python",
                "--trigger",
                "cron",
                "--schedule",
                "0 2 * * *",
            ]),
        ),
        (
            "orders",
            own(&[
                "--code-file",
                js,
                "--runtime",
                "node",
                "--trigger",
                "postgres",
                "--source",
                "eventdb",
                "--query",
                "SELECT * FROM orders WHERE status = 'pending'",
                "--mark-done",
                "UPDATE orders SET status = 'done' WHERE id = {{id}}",
            ]),
        ),
        (
            "stock",
            own(&[
                "--code-file",
                py,
                "--runtime",
                "python",
                "--trigger",
                "mysql",
                "--source",
                "shopdb",
                "--query",
                "SELECT * FROM stock WHERE synced = 0",
                "--mark-done",
                "UPDATE stock SET synced = 1 WHERE id = {{id}}",
            ]),
        ),
        (
            "jobs",
            own(&[
                "--code-file",
                js,
                "--runtime",
                "node",
                "--trigger",
                "redis",
                "--source",
                "cache",
                "--list",
                "jobs",
            ]),
        ),
        (
            "thumbs",
            own(&[
                "--image",
                "registry.example/thumbs:1.0",
                "--trigger",
                "minio",
                "--source",
                "storage",
                "--bucket",
                "uploads",
            ]),
        ),
    ]
}

fn create_args(name: &str, flags: &[String]) -> Vec<String> {
    let mut args = vec!["create".to_owned(), name.to_owned()];
    args.extend(flags.iter().cloned());
    args
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn env_of(deployment: &Value, container: &str) -> Vec<Value> {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            deployment["spec"]["template"]["spec"]["initContainers"]
                .as_array()
                .into_iter()
                .flatten(),
        )
        .find(|c| c["name"] == container)
        .and_then(|c| c["env"].as_array().cloned())
        .unwrap_or_default()
}

fn env_value(deployment: &Value, container: &str, name: &str) -> Option<Value> {
    env_of(deployment, container)
        .into_iter()
        .find(|e| e["name"] == name)
}

#[test]
fn every_trigger_is_created_reconciled_managed_and_deleted_through_the_binaries() {
    let api = ApiServer::start();
    seed_services(&api);
    let controller = ControllerProcess::start(&api);
    controller.wait_status("/ready", 200, CONVERGE);
    let dir = tempfile::tempdir().unwrap();
    let js = code_file(dir.path(), "h.js", NODE_HANDLER);
    let py = code_file(dir.path(), "h.py", PY_HANDLER);

    for (name, flags) in every_trigger(&js, &py) {
        let args = create_args(name, &flags);
        let expected = dry_run_paths(&api, &strs(&args));
        let out = kip_fn(&api, &strs(&args));
        assert!(
            out.contains(&format!("function {name} created in {NS}")),
            "{out}"
        );
        if name == "web" {
            assert!(
                out.contains(&format!("URL: https://fn-web-{}", cluster::DOMAIN)),
                "{out}"
            );
        }
        let function = wait_ready(&api, name);
        // Every object the dry run renders is what the controller applied.
        for path in &expected[1..] {
            api.wait_for_blocking(path, |_| true, CONVERGE);
        }
        for c in ["Rendered", "ServicesBound", "Ready"] {
            assert_eq!(
                condition(&function, c).map(|c| c.0),
                Some("True".into()),
                "{name}: {function}"
            );
        }
        if expected.contains(&deployment_path(name)) {
            // A new function at rest runs no pod, and the zero is not the controller's to
            // reset: a manager that never writes again owns it.
            let dep = api.get(&deployment_path(name)).unwrap();
            assert_eq!(dep["spec"]["replicas"], 0, "{name}");
            assert_eq!(
                api.managers(&deployment_path(name), ".spec.replicas"),
                vec!["kipper-controller-initial-replicas".to_owned()],
                "{name}"
            );
        }
    }
    let web = api.get(&function_path("web")).unwrap();
    assert_eq!(
        web["status"]["endpoint"],
        format!("https://fn-web-{}", cluster::DOMAIN)
    );

    let list = kip_fn(&api, &["list"]);
    for name in ["web", "nightly", "orders", "stock", "jobs", "thumbs"] {
        assert!(list.lines().any(|l| l.starts_with(name)), "{list}");
    }

    // env: set, list, delete -> the Deployment follows.
    kip_fn(
        &api,
        &["env", "set", "web", "GREETING=hello", "LEVEL=debug"],
    );
    api.wait_for_blocking(
        &deployment_path("web"),
        |d| env_value(d, "function", "GREETING").is_some_and(|e| e["value"] == "hello"),
        CONVERGE,
    );
    let listed = kip_fn(&api, &["env", "list", "web"]);
    assert!(listed.contains("GREETING=hello"), "{listed}");
    kip_fn(&api, &["env", "delete", "web", "GREETING"]);
    api.wait_for_blocking(
        &deployment_path("web"),
        |d| env_value(d, "function", "GREETING").is_none(),
        CONVERGE,
    );

    // secret: the value goes through stdin, never the output.
    let out = kip_fn_stdin(&api, &["secret", "set", "web", "API_KEY"], Some("s3cr3t\n"));
    assert!(!out.contains("s3cr3t"), "{out}");
    let secret = api
        .get(&format!("/api/v1/namespaces/{NS}/secrets/web-secrets"))
        .unwrap();
    assert!(secret["data"]["API_KEY"].is_string(), "{secret}");
    let listed = kip_fn(&api, &["secret", "list", "web"]);
    assert!(
        listed.contains("API_KEY") && !listed.contains("s3cr3t"),
        "{listed}"
    );

    // bind: the real PostgreSQL gets the per-function database, the Deployment the address
    // the credentials Secret gives (a server outside the cluster).
    kip_fn(&api, &["bind", "orders", "eventdb"]);
    let orders = api.wait_for_blocking(
        &function_path("orders"),
        |f| {
            f["status"]["databases"]
                .as_array()
                .is_some_and(|d| !d.is_empty())
        },
        CONVERGE,
    );
    assert_eq!(
        orders["status"]["databases"],
        json!(["eventdb/eventdb_orders_prod@127.0.0.1:5432"]),
        "{orders}"
    );
    assert_eq!(
        condition(&orders, "DatabasesReady").map(|c| c.0),
        Some("True".into())
    );
    api.wait_for_blocking(
        &deployment_path("orders"),
        |d| env_value(d, "function", "DB_HOST").is_some_and(|e| e["value"] == "127.0.0.1"),
        CONVERGE,
    );
    kip_fn(&api, &["unbind", "orders", "eventdb"]);
    api.wait_for_blocking(
        &deployment_path("orders"),
        |d| env_value(d, "function", "DB_HOST").is_none(),
        CONVERGE,
    );

    // Test run, by the seed's name and the old alias.
    for verb in ["test", "test-run"] {
        let out = kip_fn(&api, &[verb, "nightly"]);
        assert!(out.contains("test run nightly-test-"), "{out}");
    }
    let jobs: Vec<String> = api
        .paths()
        .into_iter()
        .filter(|p| p.contains("/jobs/nightly-test-"))
        .collect();
    assert_eq!(jobs.len(), 2, "{jobs:?}");

    // Delete: the functions and, through their owner references, every child.
    let names = ["web", "nightly", "orders", "stock", "jobs", "thumbs"];
    let mut args = vec!["delete"];
    args.extend(names);
    let out = kip_fn(&api, &args);
    for name in names {
        assert!(out.contains(&format!("function {name} deleted")), "{out}");
    }
    let deadline = std::time::Instant::now() + CONVERGE;
    loop {
        let left: Vec<String> = api
            .paths()
            .into_iter()
            .filter(|p| p.contains(&format!("/namespaces/{NS}/")))
            .filter(|p| !p.contains("/secrets/") && !p.contains("/jobs/"))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "left after delete: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        api.log()
            .iter()
            .filter(|r| matches!(r.method, Method::POST | Method::PUT | Method::PATCH))
            .all(|r| {
                r.query.contains("fieldManager=kip&")
                    || r.query.ends_with("fieldManager=kip")
                    || r.query.contains("fieldManager=kipper-controller")
            }),
        "a write without its field manager: {:?}",
        api.log()
            .iter()
            .filter(|r| matches!(r.method, Method::POST | Method::PUT | Method::PATCH))
            .filter(|r| !r.query.contains("fieldManager="))
            .collect::<Vec<_>>()
    );
}

/// An orders function, reconciled; returns its flags' directory guard.
fn orders_function(api: &ApiServer) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let js = code_file(dir.path(), "h.js", NODE_HANDLER);
    let flags = every_trigger(&js, &js)
        .into_iter()
        .find(|(n, _)| *n == "orders")
        .unwrap()
        .1;
    kip_fn(api, &strs(&create_args("orders", &flags)));
    wait_ready(api, "orders");
    dir
}

fn scaled_object_path() -> String {
    format!("/apis/keda.sh/v1alpha1/namespaces/{NS}/scaledobjects/orders")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_keeps_what_runs_follows_keda_and_repairs_drift() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{Secret, Service};
    use kipper_controller::crd::Function;
    use kube::api::{Api, DeleteParams, Patch, PatchParams};

    let api = ApiServer::start();
    seed_services(&api);
    let controller = ControllerProcess::start(&api);
    let _dir = tokio::task::block_in_place(|| orders_function(&api));
    let client = api.client().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let functions: Api<Function> = Api::namespaced(client.clone(), NS);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let services: Api<Service> = Api::namespaced(client.clone(), NS);

    // KEDA scales the Deployment; the controller's next apply (an env change) keeps its count.
    deployments
        .patch(
            "orders",
            &PatchParams {
                field_manager: Some("keda".into()),
                ..Default::default()
            },
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    tokio::task::block_in_place(|| kip_fn(&api, &["env", "set", "orders", "MODE=batch"]));
    let dep = api
        .wait_for(
            &deployment_path("orders"),
            |d| env_value(d, "function", "MODE").is_some(),
            CONVERGE,
        )
        .await;
    assert_eq!(dep["spec"]["replicas"], 3, "{dep}");

    // Drift: children deleted by hand come back within seconds (not at the 5 min resync).
    let started = std::time::Instant::now();
    services
        .delete("orders", &DeleteParams::default())
        .await
        .ok();
    let scaled: Api<kipper_controller::addons::keda::ScaledObject> =
        Api::namespaced(client.clone(), NS);
    scaled
        .delete("orders", &DeleteParams::default())
        .await
        .unwrap();
    api.wait_for(&scaled_object_path(), |_| true, CONVERGE)
        .await;
    assert!(started.elapsed() < Duration::from_secs(10));

    // An invalid edit (the query removed, as with kubectl edit) applies and deletes nothing.
    let mut broken = functions.get("orders").await.unwrap();
    broken.spec.triggers[0].config.remove("query");
    let patch = json!({"spec": {"triggers": serde_json::to_value(&broken.spec.triggers).unwrap()}});
    functions
        .patch("orders", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let f = api
        .wait_for(
            &function_path("orders"),
            |f| {
                f["status"]["observedGeneration"] == f["metadata"]["generation"]
                    && condition(f, "Rendered").is_some_and(|c| c.0 == "False")
            },
            CONVERGE,
        )
        .await;
    let (_, _, message) = condition(&f, "Rendered").unwrap();
    assert!(message.contains("query"), "{message}");
    let (_, reason, _) = condition(&f, "Ready").unwrap();
    assert_eq!(reason, "KeptLastGoodObjects", "{f}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(api.get(&deployment_path("orders")).is_some());
    assert!(api.get(&scaled_object_path()).is_some());
    // Fixed: reconciled again.
    let mut fixed = broken.clone();
    fixed.spec.triggers[0].config.insert(
        "query".into(),
        "SELECT * FROM orders WHERE status = 'pending'".into(),
    );
    let patch = json!({"spec": {"triggers": serde_json::to_value(&fixed.spec.triggers).unwrap()}});
    functions
        .patch("orders", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    api.wait_for(
        &function_path("orders"),
        cluster::reconciled_ready,
        CONVERGE,
    )
    .await;

    // The credentials Secret deleted: nothing deleted, the Secret named; re-created: the
    // Secret watch reconciles at once (the problem retry is a minute).
    let saved = secrets.get("eventdb-credentials").await.unwrap();
    secrets
        .delete("eventdb-credentials", &DeleteParams::default())
        .await
        .unwrap();
    kip_fn_async(&api, &["env", "set", "orders", "MODE=stream"]).await;
    let f = api
        .wait_for(
            &function_path("orders"),
            |f| condition(f, "ServicesBound").is_some_and(|c| c.0 == "False"),
            CONVERGE,
        )
        .await;
    let (_, _, message) = condition(&f, "ServicesBound").unwrap();
    assert!(message.contains("eventdb"), "{message}");
    assert!(api.get(&deployment_path("orders")).is_some());
    assert!(api.get(&scaled_object_path()).is_some());
    let started = std::time::Instant::now();
    let mut again = saved.clone();
    again.metadata.resource_version = None;
    again.metadata.uid = None;
    api.insert(serde_json::to_value(&again).unwrap());
    let f = api
        .wait_for(
            &function_path("orders"),
            cluster::reconciled_ready,
            CONVERGE,
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        condition(&f, "ServicesBound").map(|c| c.0),
        Some("True".into())
    );
    drop(controller);
}

async fn kip_fn_async(api: &ApiServer, args: &[&str]) -> String {
    tokio::task::block_in_place(|| kip_fn(api, args))
}

#[test]
fn an_unreachable_database_is_its_own_condition_and_the_function_runs() {
    let api = ApiServer::start();
    seed_services(&api);
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    api.insert(cluster::credentials(
        "eventdb", "postgres", closed, "postgres", "",
    ));
    let _controller = ControllerProcess::start(&api);
    let _dir = orders_function(&api);
    kip_fn(&api, &["bind", "orders", "eventdb"]);
    let f = api.wait_for_blocking(
        &function_path("orders"),
        |f| condition(f, "DatabasesReady").is_some_and(|c| c.0 == "False"),
        Duration::from_secs(30),
    );
    let (_, reason, message) = condition(&f, "DatabasesReady").unwrap();
    assert_eq!(reason, "DatabaseNotCreated");
    assert!(message.contains(&closed.to_string()), "{message}");
    assert_ne!(f["status"]["phase"], "Failed", "{f}");
    assert_eq!(condition(&f, "Ready").map(|c| c.0), Some("True".into()));
    assert!(api.get(&deployment_path("orders")).is_some());

    // The Secret fixed (the real server's port): created, recorded, True.
    api.insert(cluster::credentials(
        "eventdb", "postgres", 5432, "postgres", "",
    ));
    let f = api.wait_for_blocking(
        &function_path("orders"),
        |f| condition(f, "DatabasesReady").is_some_and(|c| c.0 == "True"),
        CONVERGE,
    );
    assert_eq!(
        f["status"]["databases"],
        json!(["eventdb/eventdb_orders_prod@127.0.0.1:5432"])
    );
}

#[test]
fn the_controller_is_unready_while_the_api_server_is_down_and_recovers_by_itself() {
    let api = ApiServer::start();
    seed_services(&api);
    let mut controller = ControllerProcess::start(&api);
    controller.wait_status("/ready", 200, CONVERGE);
    api.stop();
    controller.wait_status("/ready", 503, CONVERGE);
    assert_eq!(controller.status_of("/health"), Some(200));
    api.restart();
    controller.wait_status("/ready", 200, CONVERGE);
    // Its watches came back: a function created now is reconciled.
    let _dir = orders_function(&api);
    assert!(controller.running());
    assert!(
        controller.log().contains("Cannot reach the Kubernetes API"),
        "{}",
        controller.log()
    );
}

#[test]
fn kip_speaks_in_one_human_line_and_names_its_writes() {
    let api = ApiServer::start();
    seed_services(&api);
    let dir = tempfile::tempdir().unwrap();
    let js = code_file(dir.path(), "h.js", NODE_HANDLER);

    // A namespace that does not exist.
    let out = kip(
        &api,
        &[
            "function",
            "create",
            "web",
            "--code-file",
            &js,
            "--runtime",
            "node",
            "--project",
            "nope",
            "--environment",
            "prod",
        ],
        None,
    );
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stderr).trim(),
        "error: namespace \"nope-prod\" not found: create it or check --project/--environment"
    );

    // A server that is not there.
    let stopped = ApiServer::start();
    stopped.stop();
    let out = kip(&stopped, &["function", "list"], None);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot reach the Kubernetes API server"),
        "{err}"
    );

    // Deleting a function that waits on a finalizer: it says it is still terminating, and a
    // create of the same name is refused instead of "updated".
    let out = kip_fn(
        &api,
        &["create", "web", "--code-file", &js, "--runtime", "node"],
    );
    assert!(out.contains("function web created"), "{out}");
    let mut f = api.get(&function_path("web")).unwrap();
    f["metadata"]["finalizers"] = json!(["example.com/hold"]);
    api.insert(f);
    let out = kip_fn(&api, &["delete", "web"]);
    assert!(out.contains("function web deleted"), "{out}");
    let out = kip_fn(&api, &["delete", "web"]);
    assert!(out.contains("function web is still terminating"), "{out}");
    let mut args = vec!["function", "create", "web", "--code-file", &js, "--runtime"];
    args.extend(["node", "--project", "shop", "--environment", "prod"]);
    let out = kip(&api, &args, None);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error: function web in shop-prod is still terminating"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // Every write kip made named its field manager.
    let writes: Vec<_> = api
        .log()
        .into_iter()
        .filter(|r| matches!(r.method, Method::POST | Method::PUT | Method::PATCH))
        .collect();
    assert!(!writes.is_empty());
    assert!(
        writes.iter().all(|r| r.query.contains("fieldManager=kip")),
        "{writes:?}"
    );
    let _ = path_of;
}
