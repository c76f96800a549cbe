//! Reconcile tests against a fake API server (tower-test mock): create, update with a trigger
//! change, delete, status, hostname conflict, error requeue with backoff.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fixtures;

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use kipper_controller::controller::{
    Context, FIELD_MANAGER, Provisioner, REPLICAS_SEED_MANAGER, error_policy, reconcile,
};
use kipper_controller::crd::{Function, Trigger, TriggerType};
use kipper_controller::metrics::Metrics;
use kipper_fake_apiserver::{ApiServer, path_of};
use kube::runtime::controller::Action;
use serde_json::{Value, json};

const NS: &str = fixtures::NS;

fn case(name: &str) -> Function {
    fixtures::cases()
        .into_iter()
        .find(|(c, _)| *c == name)
        .unwrap()
        .1
}

type Created = Arc<std::sync::Mutex<Vec<(String, u16, String, String)>>>;

/// A context whose database creation records (host, port, user, database) instead of
/// connecting (tests/database.rs covers the real creation).
fn ctx_recording(client: kube::Client, fail: bool) -> (Arc<Context>, Created) {
    let created: Created = Arc::default();
    let seen = created.clone();
    let provision: Provisioner = Arc::new(move |server, name| {
        seen.lock()
            .unwrap()
            .push((server.host, server.port, server.user, name));
        Box::pin(async move {
            if fail {
                Err(kipper_controller::Error::Render {
                    part: "database",
                    reason: "connection refused".into(),
                })
            } else {
                Ok(true)
            }
        })
    });
    let ctx = Context::with_provisioner(
        client,
        fixtures::settings(),
        Arc::new(Metrics::new()),
        provision,
    );
    (Arc::new(ctx), created)
}

fn ctx(client: kube::Client) -> Arc<Context> {
    ctx_recording(client, false).0
}

/// The cluster: the Function itself and the credentials Secrets of the fixture services.
async fn cluster(function: &Function) -> (ApiServer, kube::Client) {
    let fake = ApiServer::start();
    let client = fake.client().await;
    for (svc, kind) in [
        ("eventdb", "postgres"),
        ("shopdb", "mysql"),
        ("cache", "redis"),
        ("storage", "minio"),
    ] {
        fake.insert(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("{svc}-credentials"), "namespace": NS,
                         "labels": {"kipper.run/service-type": kind}},
            "data": {"username": "a2lwcGVy", "password": "c2VjcmV0", "database": "YXBw"}
        }));
    }
    store_function(&fake, function);
    (fake, client)
}

fn store_function(fake: &ApiServer, function: &Function) {
    let mut v = serde_json::to_value(function).unwrap();
    v["apiVersion"] = json!("kipper.run/v1alpha1");
    v["kind"] = json!("Function");
    fake.insert(v);
}

fn function_path(name: &str) -> String {
    format!("/apis/kipper.run/v1alpha1/namespaces/{NS}/functions/{name}")
}

fn status_of(fake: &ApiServer, name: &str) -> Value {
    fake.get(&function_path(name)).unwrap()["status"].clone()
}

fn condition(status: &Value, type_: &str) -> (String, String) {
    let c = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"));
    (
        c["status"].as_str().unwrap().to_owned(),
        c["reason"].as_str().unwrap().to_owned(),
    )
}

fn children(fake: &ApiServer) -> Vec<String> {
    fake.paths()
        .into_iter()
        .filter(|p| !p.contains("/secrets/") && !p.contains("/functions/"))
        .filter(|p| !p.starts_with("/api/v1/namespaces/") || p.matches('/').count() > 4)
        .map(|p| {
            let parts: Vec<&str> = p.rsplitn(3, '/').collect();
            format!("{}/{}", parts[1], parts[0])
        })
        .collect()
}

#[tokio::test]
async fn create_applies_every_object_with_our_field_manager_and_writes_status() {
    let f = case("http");
    let (fake, client) = cluster(&f).await;
    let action = reconcile(Arc::new(f), ctx(client)).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));

    let mut got = children(&fake);
    got.sort();
    assert_eq!(
        got,
        [
            "configmaps/webhook-handler-code",
            "deployments/webhook-handler",
            "httpscaledobjects/webhook-handler",
            "ingresses/webhook-handler",
            "middlewares/fn-webhook-handler-security",
            "persistentvolumeclaims/webhook-handler-deps",
            "services/webhook-handler",
            "services/webhook-handler-proxy",
        ]
    );
    let applies: Vec<_> = fake
        .log()
        .into_iter()
        .filter(|s| s.method == Method::PATCH && !s.path.ends_with("/status"))
        .collect();
    // Eight objects (the dependency cache claim among them); the new Deployment takes two
    // more applies (its zero replicas handed to the seed manager, then let go of).
    assert_eq!(applies.len(), 10);
    for s in applies {
        if s.query
            .contains(&format!("fieldManager={REPLICAS_SEED_MANAGER}"))
        {
            assert!(s.path.ends_with("/deployments/webhook-handler"), "{s:?}");
            continue;
        }
        assert!(
            s.query.contains(&format!("fieldManager={FIELD_MANAGER}")),
            "{s:?}"
        );
        assert!(s.query.contains("force=true"), "{s:?}");
    }

    let status = status_of(&fake, "webhook-handler");
    assert_eq!(status["phase"], "Idle");
    assert_eq!(status["observedGeneration"], 3);
    assert_eq!(
        status["endpoint"],
        "https://fn-webhook-handler-46-225-91-12.kipper.run"
    );
    for c in ["Rendered", "ServicesBound", "HostnameAvailable", "Ready"] {
        assert_eq!(condition(&status, c).0, "True", "{c}: {status}");
    }
}

#[tokio::test]
async fn bound_databases_are_created_and_failures_reported() {
    let f = case("http"); // binds eventdb (postgres)
    let (fake, client) = cluster(&f).await;
    let (ctx, created) = ctx_recording(client, false);
    reconcile(Arc::new(f.clone()), ctx).await.unwrap();
    assert_eq!(
        created.lock().unwrap().clone(),
        [(
            "eventdb.shop-prod.svc.cluster.local".to_owned(),
            5432,
            "kipper".to_owned(),
            "eventdb_webhook_handler_prod".to_owned()
        )]
    );

    // Reconciled again with the status it wrote: the database is recorded, not re-created.
    let again: Function =
        serde_json::from_value(fake.get(&function_path("webhook-handler")).unwrap()).unwrap();
    assert_eq!(
        again.status.as_ref().unwrap().databases,
        ["eventdb/eventdb_webhook_handler_prod@eventdb.shop-prod.svc.cluster.local:5432"]
    );
    let (ctx, created) = ctx_recording(fake.client().await, false);
    reconcile(Arc::new(again), ctx).await.unwrap();
    assert!(created.lock().unwrap().is_empty());

    // A server that cannot be reached is its own condition; the function is not Failed.
    let (fake, client) = cluster(&f).await;
    let (ctx, _) = ctx_recording(client, true);
    let action = reconcile(Arc::new(f), ctx).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    let status = status_of(&fake, "webhook-handler");
    assert_eq!(
        condition(&status, "DatabasesReady"),
        ("False".into(), "DatabaseNotCreated".into())
    );
    assert_eq!(condition(&status, "ServicesBound").0, "True");
    assert_eq!(condition(&status, "Ready").0, "True");
    assert_eq!(status["phase"], "Idle");
    assert!(
        status["conditions"]
            .to_string()
            .contains("connection refused")
    );
}

#[tokio::test]
async fn status_follows_the_deployment_replicas() {
    let f = case("redis");
    let (fake, client) = cluster(&f).await;
    let ctx = ctx(client);
    reconcile(Arc::new(f.clone()), ctx.clone()).await.unwrap();
    // KEDA scaled it to 2, one is ready.
    let path = format!("/apis/apps/v1/namespaces/{NS}/deployments/mailer");
    let mut dep = fake.get(&path).unwrap();
    dep["spec"]["replicas"] = json!(2);
    dep["status"] = json!({"readyReplicas": 1});
    fake.insert(dep.clone());
    reconcile(Arc::new(f.clone()), ctx.clone()).await.unwrap();
    let status = status_of(&fake, "mailer");
    assert_eq!(status["phase"], "Scaling");
    assert_eq!(status["replicas"], 1);
    dep["status"] = json!({"readyReplicas": 2});
    fake.insert(dep);
    reconcile(Arc::new(f), ctx).await.unwrap();
    assert_eq!(status_of(&fake, "mailer")["phase"], "Running");
}

#[tokio::test]
async fn a_trigger_change_deletes_what_is_no_longer_needed() {
    let mut f = case("cron");
    let (fake, client) = cluster(&f).await;
    let ctx = ctx(client);
    reconcile(Arc::new(f.clone()), ctx.clone()).await.unwrap();
    assert!(children(&fake).contains(&"cronjobs/opensrs-sync-cron".to_owned()));

    // Someone else's object with our labels but another owner must survive the prune.
    fake.insert(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "opensrs-sync-notes", "namespace": NS,
                     "labels": {"app": "opensrs-sync", "app.kubernetes.io/managed-by": "kipper"},
                     "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "other"}]}
    }));

    f.spec.triggers = vec![Trigger {
        kind: TriggerType::Http,
        schedule: None,
        config: Default::default(),
    }];
    f.metadata.generation = Some(4);
    store_function(&fake, &f);
    fake.clear_log();
    reconcile(Arc::new(f), ctx).await.unwrap();
    let got = children(&fake);
    assert!(
        !got.contains(&"cronjobs/opensrs-sync-cron".to_owned()),
        "{got:?}"
    );
    assert!(
        got.contains(&"deployments/opensrs-sync".to_owned()),
        "{got:?}"
    );
    assert!(
        got.contains(&"ingresses/opensrs-sync".to_owned()),
        "{got:?}"
    );
    assert!(
        got.contains(&"configmaps/opensrs-sync-notes".to_owned()),
        "{got:?}"
    );
    let deletes: Vec<String> = fake
        .log()
        .into_iter()
        .filter(|s| s.method == Method::DELETE)
        .map(|s| s.path)
        .collect();
    assert_eq!(
        deletes,
        [format!(
            "/apis/batch/v1/namespaces/{NS}/cronjobs/opensrs-sync-cron"
        )]
    );
    assert_eq!(status_of(&fake, "opensrs-sync")["observedGeneration"], 4);
}

#[tokio::test]
async fn a_deleted_function_is_left_to_the_garbage_collector() {
    let mut f = case("http");
    f.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    let (fake, client) = cluster(&f).await;
    let action = reconcile(Arc::new(f), ctx(client)).await.unwrap();
    assert_eq!(action, Action::await_change());
    assert!(fake.log().is_empty(), "{:?}", fake.log());
}

#[tokio::test]
async fn a_hostname_owned_by_someone_else_is_refused() {
    let f = case("http");
    let (fake, client) = cluster(&f).await;
    fake.insert(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "webhook", "namespace": "other-app",
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "x", "uid": "someone-else"}]},
        "spec": {"rules": [{"host": "fn-webhook-handler-46-225-91-12.kipper.run"}]}
    }));
    let action = reconcile(Arc::new(f), ctx(client)).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    let got = children(&fake);
    assert!(
        !got.iter()
            .any(|c| c.starts_with("ingresses/webhook-handler")),
        "{got:?}"
    );
    assert!(
        !got.iter().any(|c| c.starts_with("httpscaledobjects/")),
        "{got:?}"
    );
    assert!(got.contains(&"deployments/webhook-handler".to_owned()));
    let status = status_of(&fake, "webhook-handler");
    assert_eq!(
        condition(&status, "HostnameAvailable"),
        ("False".into(), "HostnameConflict".into())
    );
    assert_eq!(status["phase"], "Failed");
    assert!(status["endpoint"].is_null());
    let message = status["conditions"].to_string();
    assert!(message.contains("Ingress other-app/webhook"), "{message}");
}

#[tokio::test]
async fn an_unknown_service_is_a_false_condition() {
    let mut f = case("postgres");
    f.spec.triggers[0]
        .config
        .insert("source".into(), "nosuchdb".into());
    let (fake, client) = cluster(&f).await;
    reconcile(Arc::new(f), ctx(client)).await.unwrap();
    let status = status_of(&fake, "process-orders");
    assert_eq!(status["phase"], "Failed");
    assert_eq!(
        condition(&status, "ServicesBound"),
        ("False".into(), "UnknownService".into())
    );
    assert_eq!(
        condition(&status, "Rendered"),
        ("False".into(), "WorkloadNotRendered".into())
    );
}

#[tokio::test]
async fn an_api_error_is_reported_and_requeued_with_backoff() {
    let f = case("postgres");
    let (fake, client) = cluster(&f).await;
    fake.fail(Method::PATCH, "/deployments/", 500);
    let ctx = ctx(client);
    let f = Arc::new(f);
    let err = reconcile(f.clone(), ctx.clone()).await.unwrap_err();
    assert_eq!(err.reason(), "RenderFailed", "{err}");
    let status = status_of(&fake, "process-orders");
    assert_eq!(
        condition(&status, "Ready"),
        ("False".into(), "ApplyFailed".into())
    );
    assert_eq!(status["phase"], "Failed");

    let delays: Vec<Action> = (0..8)
        .map(|_| error_policy(f.clone(), &err, ctx.clone()))
        .collect();
    let secs = [5, 10, 20, 40, 80, 160, 300, 300];
    for (got, want) in delays.iter().zip(secs) {
        assert_eq!(*got, Action::requeue(Duration::from_secs(want)));
    }
    let text = ctx.metrics.encode();
    assert!(
        text.contains("kipper_controller_reconciles_total{result=\"RenderFailed\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn applied_objects_are_what_the_renderer_renders() {
    let f = case("event-cron");
    let (fake, client) = cluster(&f).await;
    reconcile(Arc::new(f.clone()), ctx(client)).await.unwrap();
    let catalog = fixtures::catalog();
    let r = kipper_controller::render::render(&f, &catalog, &fixtures::settings());
    for o in r.objects {
        let v = o.to_value().unwrap();
        let mut stored = fake.get(&path_of(&v)).unwrap();
        // What the API server and the replica seed add.
        for key in ["uid", "resourceVersion", "generation", "creationTimestamp"] {
            stored["metadata"].as_object_mut().unwrap().remove(key);
        }
        if v["kind"] == "Deployment" {
            assert_eq!(stored["spec"]["replicas"], 0);
            stored["spec"].as_object_mut().unwrap().remove("replicas");
        }
        assert_eq!(stored, v);
    }
}
