//! The fake API server (`tests/apiserver/`) through kube's real client over HTTPS: the
//! behaviour the controller and `kip` tests rely on, checked against what a cluster does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod apiserver;

use std::process::Command;
use std::time::Duration;

use apiserver::{ApiServer, path_of};
use futures::{StreamExt, TryStreamExt};
use http::Method;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

fn config_map(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels}, "data": {"k": "v"},
    }))
    .unwrap()
}

fn api_error(result: Result<impl std::fmt::Debug, kube::Error>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn deployment(image: &str, replicas: Option<i32>) -> Value {
    let mut d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": image}]}}},
    });
    if let Some(replicas) = replicas {
        d["spec"]["replicas"] = json!(replicas);
    }
    d
}

#[tokio::test]
async fn create_get_list_and_replace_with_a_stale_resource_version() {
    let server = ApiServer::start();
    let api: Api<ConfigMap> = Api::default_namespaced(server.client().await);
    let pp = PostParams::default();

    let created = api
        .create(&pp, &config_map("a", json!({"app": "x"})))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, Some(1));
    api.create(&pp, &config_map("b", json!({"app": "y", "tier": "web"})))
        .await
        .unwrap();

    let again = api_error(api.create(&pp, &config_map("a", json!({}))).await);
    assert_eq!((again.code, again.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(again.message, r#"configmaps "a" already exists"#);
    let missing = api_error(api.get("nope").await);
    assert_eq!(
        (missing.code, missing.message.as_str()),
        (404, r#"configmaps "nope" not found"#)
    );

    let names = |list: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        list.items
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect()
    };
    let select = |s: &str| ListParams::default().labels(s);
    assert_eq!(names(api.list(&select("app=x")).await.unwrap()), ["a"]);
    assert_eq!(names(api.list(&select("tier")).await.unwrap()), ["b"]);
    assert_eq!(names(api.list(&select("app!=x")).await.unwrap()), ["b"]);
    assert_eq!(
        names(api.list(&select("app in (x,y),!tier")).await.unwrap()),
        ["a"]
    );
    let by_name = ListParams::default().fields("metadata.name=b");
    assert_eq!(names(api.list(&by_name).await.unwrap()), ["b"]);
    let everywhere: Api<ConfigMap> = Api::all(server.client().await);
    let all = everywhere.list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.len(), 2);
    let current: u64 = all.metadata.resource_version.unwrap().parse().unwrap();

    let mut stale = created.clone();
    stale.data = Some([("k".to_owned(), "w".to_owned())].into());
    api.replace("a", &pp, &stale).await.unwrap();
    let conflict = api_error(api.replace("a", &pp, &stale).await);
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert!(
        conflict
            .message
            .starts_with(r#"Operation cannot be fulfilled on configmaps "a""#)
    );
    let replaced = api.get("a").await.unwrap();
    let rv: u64 = replaced.metadata.resource_version.unwrap().parse().unwrap();
    assert!(rv > current);
    assert_eq!(replaced.data.unwrap()["k"], "w");
    assert_eq!(
        server
            .get("/api/v1/namespaces/default/configmaps/a")
            .unwrap()["data"]["k"],
        "w"
    );
}

#[tokio::test]
async fn a_create_in_a_missing_namespace_is_refused_with_the_real_message() {
    let server = ApiServer::start();
    let client = server.client().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "nope-prod");
    let missing = api_error(
        api.create(&PostParams::default(), &config_map("a", json!({})))
            .await,
    );
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, r#"namespaces "nope-prod" not found"#);

    let namespaces: Api<Namespace> = Api::all(client);
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "nope-prod"}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    api.create(&PostParams::default(), &config_map("a", json!({})))
        .await
        .unwrap();
    assert!(server.get("/api/v1/namespaces/nope-prod").is_some());
}

/// The replicas scenario: applied once by a second manager, taken over by KEDA's merge patch,
/// kept by the controller's later applies without replicas.
#[tokio::test]
async fn server_side_apply_tracks_field_ownership() {
    let server = ApiServer::start();
    let api: Api<Deployment> = Api::default_namespaced(server.client().await);
    let path = "/apis/apps/v1/namespaces/default/deployments/web";
    let apply = |manager: &str| PatchParams::apply(manager);

    let first = api
        .patch(
            "web",
            &apply("kipper"),
            &Patch::Apply(deployment("a", Some(0))),
        )
        .await
        .unwrap();
    assert_eq!(first.metadata.generation, Some(1));
    let replicas_only = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                               "metadata": {"name": "web"}, "spec": {"replicas": 0}});
    api.patch(
        "web",
        &apply("kipper-replicas"),
        &Patch::Apply(&replicas_only),
    )
    .await
    .unwrap();
    assert_eq!(
        server.managers(path, ".spec.replicas"),
        ["kipper", "kipper-replicas"]
    );

    // The controller stops sending replicas: the other manager keeps them.
    api.patch(
        "web",
        &apply("kipper"),
        &Patch::Apply(deployment("b", None)),
    )
    .await
    .unwrap();
    assert_eq!(server.get(path).unwrap()["spec"]["replicas"], 0);
    assert_eq!(server.managers(path, ".spec.replicas"), ["kipper-replicas"]);

    // KEDA scales with a merge patch and becomes the owner.
    let scale = PatchParams {
        field_manager: Some("keda".to_owned()),
        ..Default::default()
    };
    api.patch(
        "web",
        &scale,
        &Patch::Merge(json!({"spec": {"replicas": 3}})),
    )
    .await
    .unwrap();
    assert_eq!(server.managers(path, ".spec.replicas"), ["keda"]);
    let applied = api
        .patch(
            "web",
            &apply("kipper"),
            &Patch::Apply(deployment("c", None)),
        )
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&applied).unwrap()["spec"]["replicas"],
        3
    );
    assert_eq!(applied.metadata.generation, Some(4));

    // The same apply again changes nothing, not even the resourceVersion.
    let again = api
        .patch(
            "web",
            &apply("kipper"),
            &Patch::Apply(deployment("c", None)),
        )
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version,
        applied.metadata.resource_version
    );

    // Setting KEDA's field conflicts unless forced.
    let conflict = api_error(
        api.patch(
            "web",
            &apply("kipper"),
            &Patch::Apply(deployment("c", Some(1))),
        )
        .await,
    );
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        conflict.message,
        r#"Apply failed with 1 conflict: conflict with "keda" using apps/v1: .spec.replicas"#
    );
    api.patch(
        "web",
        &apply("kipper").force(),
        &Patch::Apply(deployment("c", Some(1))),
    )
    .await
    .unwrap();
    assert_eq!(server.managers(path, ".spec.replicas"), ["kipper"]);

    // A label the manager stops applying is pruned; status is only written through /status.
    let mut unlabelled = deployment("c", Some(1));
    unlabelled["metadata"]["labels"] = json!({"other": "x"});
    unlabelled["status"] = json!({"replicas": 9});
    api.patch("web", &apply("kipper"), &Patch::Apply(&unlabelled))
        .await
        .unwrap();
    let stored = server.get(path).unwrap();
    assert_eq!(stored["metadata"]["labels"], json!({"other": "x"}));
    assert!(stored.get("status").is_none());
    api.patch_status(
        "web",
        &scale,
        &Patch::Merge(json!({"status": {"readyReplicas": 1}, "spec": {"replicas": 5}})),
    )
    .await
    .unwrap();
    let stored = server.get(path).unwrap();
    assert_eq!(
        (
            stored["status"]["readyReplicas"].clone(),
            stored["spec"]["replicas"].clone()
        ),
        (json!(1), json!(1))
    );

    // /scale reads and writes spec.replicas.
    let scaled = api.get_scale("web").await.unwrap();
    assert_eq!(scaled.spec.unwrap().replicas, Some(1));
    api.patch_scale(
        "web",
        &scale,
        &Patch::Merge(json!({"spec": {"replicas": 2}})),
    )
    .await
    .unwrap();
    assert_eq!(server.get(path).unwrap()["spec"]["replicas"], 2);
    assert_eq!(server.managers(path, ".spec.replicas"), ["keda"]);
}

#[tokio::test]
async fn an_apply_without_a_field_manager_is_a_bad_request() {
    let server = ApiServer::start();
    let client = server.client().await;
    let request = http::Request::patch("/api/v1/namespaces/default/configmaps/a")
        .header("content-type", "application/apply-patch+yaml")
        .body(serde_json::to_vec(&config_map("a", json!({}))).unwrap())
        .unwrap();
    let refused = api_error(client.request::<Value>(request).await);
    assert_eq!((refused.code, refused.reason.as_str()), (400, "BadRequest"));
    assert!(refused.message.contains("fieldManager: Required value"));
}

#[tokio::test]
async fn finalizers_hold_a_deletion_until_they_are_removed() {
    let server = ApiServer::start();
    let api: Api<ConfigMap> = Api::default_namespaced(server.client().await);
    api.create(&PostParams::default(), &config_map("held", json!({})))
        .await
        .unwrap();
    // As kube's finalizer helper adds one: a JSON patch.
    let add: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null},
        {"op": "add", "path": "/metadata/finalizers", "value": ["kipper.run/cleanup"]},
    ]))
    .unwrap();
    let pp = PatchParams::default();
    api.patch("held", &pp, &Patch::Json::<()>(add.clone()))
        .await
        .unwrap();
    let failed_test = api_error(api.patch("held", &pp, &Patch::Json::<()>(add)).await);
    assert_eq!(failed_test.code, 422);

    api.delete("held", &DeleteParams::default()).await.unwrap();
    let held = api.get("held").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    assert_eq!(held.metadata.finalizers.unwrap(), ["kipper.run/cleanup"]);
    let release = json!({"metadata": {"finalizers": null}});
    api.patch("held", &pp, &Patch::Merge(release))
        .await
        .unwrap();
    assert_eq!(api_error(api.get("held").await).code, 404);
}

#[tokio::test]
async fn deleting_an_owner_collects_its_dependents_and_a_namespace_its_content() {
    let server = ApiServer::start();
    let client = server.client().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let pp = PostParams::default();
    let owned_by = |owner: &ConfigMap, name: &str| {
        let mut cm = config_map(name, json!({}));
        cm.metadata.owner_references = Some(vec![
            serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name,
            "uid": owner.metadata.uid}))
            .unwrap(),
        ]);
        cm
    };
    let root = api
        .create(&pp, &config_map("root", json!({})))
        .await
        .unwrap();
    let child = api.create(&pp, &owned_by(&root, "child")).await.unwrap();
    api.create(&pp, &owned_by(&child, "grandchild"))
        .await
        .unwrap();
    api.create(&pp, &config_map("bystander", json!({})))
        .await
        .unwrap();
    let foreground = DeleteParams::foreground();
    api.delete("root", &foreground).await.unwrap();
    let left: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.metadata.name.unwrap())
        .collect();
    assert_eq!(left, ["bystander"]);

    server.insert(json!({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "c", "namespace": "doomed"}}));
    let namespaces: Api<Namespace> = Api::all(client);
    namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        server.paths().iter().all(|p| !p.contains("doomed")),
        "{:?}",
        server.paths()
    );
}

#[tokio::test]
async fn a_watcher_sees_adds_changes_and_deletes() {
    let server = ApiServer::start();
    let api: Api<ConfigMap> = Api::default_namespaced(server.client().await);
    server.insert(
        serde_json::to_value(config_map("before", json!({"app": "w"})))
            .unwrap()
            .tap_namespace("default"),
    );
    let config = watcher::Config::default().labels("app=w");
    let mut events = watcher(api.clone(), config).boxed();

    let mut next = async || {
        tokio::time::timeout(WAIT, events.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    };
    assert!(matches!(next().await, watcher::Event::Init));
    assert!(
        matches!(next().await, watcher::Event::InitApply(cm) if cm.metadata.name.as_deref() == Some("before"))
    );
    assert!(matches!(next().await, watcher::Event::InitDone));

    let pp = PostParams::default();
    api.create(&pp, &config_map("other", json!({"app": "not-watched"})))
        .await
        .unwrap();
    api.create(&pp, &config_map("new", json!({"app": "w"})))
        .await
        .unwrap();
    let named = |e: &watcher::Event<ConfigMap>| match e {
        watcher::Event::Apply(cm) | watcher::Event::Delete(cm) => cm.metadata.name.clone().unwrap(),
        _ => String::new(),
    };
    let added = next().await;
    assert!(matches!(added, watcher::Event::Apply(_)) && named(&added) == "new");
    let patch = Patch::Merge(json!({"data": {"k": "changed"}}));
    api.patch("new", &PatchParams::default(), &patch)
        .await
        .unwrap();
    match next().await {
        watcher::Event::Apply(cm) => assert_eq!(cm.data.unwrap()["k"], "changed"),
        other => panic!("expected the change, got {other:?}"),
    }
    // Leaving the selector reads as a deletion.
    let relabel = Patch::Merge(json!({"metadata": {"labels": {"app": "gone"}}}));
    api.patch("before", &PatchParams::default(), &relabel)
        .await
        .unwrap();
    let left = next().await;
    assert!(matches!(left, watcher::Event::Delete(_)) && named(&left) == "before");
    api.delete("new", &DeleteParams::default()).await.unwrap();
    let deleted = next().await;
    assert!(matches!(deleted, watcher::Event::Delete(_)) && named(&deleted) == "new");
}

/// `with namespace` on a JSON object, for `insert` of a typed object.
trait TapNamespace {
    fn tap_namespace(self, namespace: &str) -> Value;
}

impl TapNamespace for Value {
    fn tap_namespace(mut self, namespace: &str) -> Value {
        self["metadata"]["namespace"] = json!(namespace);
        self
    }
}

#[tokio::test]
async fn a_client_keeps_working_across_a_restart_and_the_store_survives() {
    let server = ApiServer::start();
    let client = server.client().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let mut events = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    api.create(&PostParams::default(), &config_map("kept", json!({})))
        .await
        .unwrap();

    server.stop();
    assert!(api.get("kept").await.is_err(), "the server is stopped");
    server.restart();
    assert_eq!(
        api.get("kept").await.unwrap().metadata.name.as_deref(),
        Some("kept")
    );
    assert!(
        client
            .apiserver_version()
            .await
            .unwrap()
            .git_version
            .ends_with("kipper-fake")
    );

    // The watcher reconnects and sees what was created after the restart.
    api.create(&PostParams::default(), &config_map("after", json!({})))
        .await
        .unwrap();
    let seen = tokio::time::timeout(WAIT, async {
        while let Some(event) = events.next().await {
            if let Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm)) = event
                && cm.metadata.name.as_deref() == Some("after")
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(seen, Ok(true));
}

#[tokio::test]
async fn a_wrong_token_is_unauthorized() {
    let server = ApiServer::start();
    let text = std::fs::read_to_string(server.kubeconfig_path()).unwrap();
    let token_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("token:"))
        .unwrap();
    let wrong = text.replace(token_line, "    token: wrong");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, wrong).unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let options = kube::config::KubeConfigOptions::default();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(Client::try_from(config).unwrap());
    let refused = api_error(api.list(&ListParams::default()).await);
    assert_eq!(
        (refused.code, refused.reason.as_str()),
        (401, "Unauthorized")
    );
    assert!(
        server.log().is_empty(),
        "unauthenticated requests are not logged"
    );
}

#[tokio::test]
async fn pod_logs_injected_failures_and_the_request_log() {
    let server = ApiServer::start();
    let client = server.client().await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    assert_eq!(
        pods.logs("web-1", &LogParams::default()).await.unwrap(),
        "hello from web-1\nbye\n"
    );

    let api: Api<ConfigMap> = Api::default_namespaced(client);
    server.fail(Method::POST, "/configmaps", 500);
    let failed = api_error(
        api.create(&PostParams::default(), &config_map("a", json!({})))
            .await,
    );
    assert_eq!(
        (failed.code, failed.reason.as_str()),
        (500, "InternalError")
    );
    server.clear_failures();
    api.create(&PostParams::default(), &config_map("a", json!({})))
        .await
        .unwrap();
    let log = server.log();
    assert_eq!(log.len(), 3);
    assert_eq!(
        (log[2].method.clone(), log[2].path.as_str()),
        (Method::POST, "/api/v1/namespaces/default/configmaps")
    );
    server.clear_log();
    assert!(server.log().is_empty());
}

/// Without a runtime in the test: the server has its own.
#[test]
fn a_plain_test_can_insert_and_wait() {
    let server = ApiServer::start();
    let object = json!({"apiVersion": "kipper.run/v1alpha1", "kind": "Function",
                        "metadata": {"name": "f", "namespace": "team"}, "spec": {"image": "x"}});
    server.insert(object.clone());
    let path = path_of(&object);
    assert_eq!(
        path,
        "/apis/kipper.run/v1alpha1/namespaces/team/functions/f"
    );
    let stored = server.wait_for_blocking(&path, |o| o["metadata"]["uid"].is_string(), WAIT);
    assert_eq!(stored["metadata"]["generation"], 1);
    assert!(server.get("/api/v1/namespaces/team").is_some());
}

/// The real `kip` binary, a child process the test blocks on, reaches the server through the
/// kubeconfig: TLS with the kubeconfig's CA, the bearer token, the namespaced list.
#[test]
fn the_kip_binary_reaches_the_server_through_the_kubeconfig() {
    let server = ApiServer::start();
    let out = Command::new(env!("CARGO_BIN_EXE_kip"))
        .args(["function", "list", "--environment", "prod"])
        .env("KUBECONFIG", server.kubeconfig_path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    let listed = server.log().iter().any(|seen| {
        seen.method == Method::GET
            && seen.path == "/apis/kipper.run/v1alpha1/namespaces/default-prod/functions"
    });
    assert!(
        listed && out.status.success(),
        "kip did not list functions here: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
