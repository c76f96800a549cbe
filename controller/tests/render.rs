//! Black-box tests of the renderer: a snapshot per trigger, every object validated against its
//! schema (kubernetes-validate --strict for built-in kinds, the CRDs for KEDA, the HTTP add-on
//! and Traefik), and the properties the issue asks for checked one by one.
//!
//! Snapshots live in `tests/snapshots/`; `UPDATE_SNAPSHOTS=1 cargo test -p kipper-controller
//! --test render` rewrites them (review the diff).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fixtures;

use std::path::Path;

use kipper_controller::crd::{ServiceBinding, TriggerType};
use kipper_controller::render::{self, Object, Rendered, condition};
use serde_json::Value;

fn rendered(case: &str) -> Rendered {
    let (_, f) = fixtures::cases()
        .into_iter()
        .find(|(c, _)| *c == case)
        .unwrap();
    render::render(&f, &fixtures::catalog(), &fixtures::settings())
}

fn kinds(r: &Rendered) -> Vec<String> {
    r.objects
        .iter()
        .map(|o| format!("{}/{}", o.kind(), o.name()))
        .collect()
}

fn value(r: &Rendered, kind: &str, name: &str) -> Value {
    r.objects
        .iter()
        .find(|o| o.kind() == kind && o.name() == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in {:?}", kinds(r)))
        .to_value()
        .unwrap()
}

fn env_of(container: &Value) -> Vec<(String, Value)> {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), e.clone()))
        .collect()
}

fn plain(container: &Value, name: &str) -> Option<String> {
    env_of(container)
        .into_iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, e)| e["value"].as_str().map(str::to_owned))
}

#[test]
fn snapshots_of_every_trigger() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    let mut stale = Vec::new();
    for (case, f) in fixtures::cases() {
        let r = render::render(&f, &fixtures::catalog(), &fixtures::settings());
        assert!(r.problems.is_empty(), "{case}: {:?}", r.problems);
        let yaml = r.to_yaml().unwrap();
        let path = dir.join(format!("{case}.yaml"));
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &yaml).unwrap();
        } else {
            let want = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_SNAPSHOTS=1", path.display()));
            if want != yaml {
                stale.push(case);
                std::fs::write(dir.join(format!("{case}.yaml.new")), &yaml).unwrap();
            }
        }
    }
    assert!(
        stale.is_empty(),
        "rendered objects differ from tests/snapshots for {stale:?}: compare the .yaml.new files, \
         then rerun with UPDATE_SNAPSHOTS=1 if the change is intended"
    );
}

#[test]
fn every_rendered_object_is_valid_against_its_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let mut builtin = String::new();
    let mut custom = String::new();
    let mut add = |objects: Vec<Object>| {
        for o in objects {
            let text = serde_yaml::to_string(&o.to_value().unwrap()).unwrap();
            let target = match o.kind() {
                "ScaledObject" | "TriggerAuthentication" | "HTTPScaledObject" | "Middleware" => {
                    &mut custom
                }
                _ => &mut builtin,
            };
            target.push_str("---\n");
            target.push_str(&text);
        }
    };
    for (_, f) in fixtures::cases() {
        add(render::render(&f, &fixtures::catalog(), &fixtures::settings()).objects);
        let job = render::test_job(&f, &fixtures::catalog(), &fixtures::settings(), "0badc0de");
        add(vec![Object::Job(job.unwrap())]);
    }
    // The Functions themselves, against our own CRD.
    for (_, f) in fixtures::cases() {
        custom.push_str("---\n");
        custom.push_str(&serde_yaml::to_string(&f).unwrap());
    }
    let builtin_file = tmp.path().join("builtin.yaml");
    let custom_file = tmp.path().join("custom.yaml");
    std::fs::write(&builtin_file, builtin).unwrap();
    std::fs::write(&custom_file, custom).unwrap();
    fixtures::kubernetes_validate(&builtin_file);
    fixtures::crd_validate(&custom_file, &fixtures::all_crds());
}

#[test]
fn schema_validation_catches_a_wrong_field() {
    // The validators must be able to fail: a misspelt field and a wrong type are rejected.
    let tmp = tempfile::tempdir().unwrap();
    let r = rendered("postgres");
    let mut so = value(&r, "ScaledObject", "process-orders");
    so["spec"]["minReplicas"] = 0.into();
    let file = tmp.path().join("bad.yaml");
    std::fs::write(&file, serde_yaml::to_string(&so).unwrap()).unwrap();
    let result = std::panic::catch_unwind(|| fixtures::crd_validate(&file, &fixtures::all_crds()));
    assert!(
        result.is_err(),
        "an unknown ScaledObject field passed validation"
    );

    let mut dep = value(&r, "Deployment", "process-orders");
    dep["spec"]["template"]["spec"]["containers"][0]["port"] = 1.into();
    std::fs::write(&file, serde_yaml::to_string(&dep).unwrap()).unwrap();
    let result = std::panic::catch_unwind(|| fixtures::kubernetes_validate(&file));
    assert!(
        result.is_err(),
        "an unknown Deployment field passed kubernetes-validate --strict"
    );
}

#[test]
fn each_trigger_renders_the_objects_of_the_contract() {
    let want: [(&str, &[&str]); 7] = [
        (
            "http",
            &[
                "ConfigMap/webhook-handler-code",
                "PersistentVolumeClaim/webhook-handler-deps",
                "Deployment/webhook-handler",
                "Service/webhook-handler",
                "Service/webhook-handler-proxy",
                "HTTPScaledObject/webhook-handler",
                "Middleware/fn-webhook-handler-security",
                "Ingress/webhook-handler",
            ],
        ),
        (
            "cron",
            &[
                "ConfigMap/opensrs-sync-code",
                "PersistentVolumeClaim/opensrs-sync-deps",
                "CronJob/opensrs-sync-cron",
            ],
        ),
        (
            "postgres",
            &[
                "Deployment/process-orders",
                "TriggerAuthentication/process-orders-trigger-auth",
                "ScaledObject/process-orders",
            ],
        ),
        (
            "mysql",
            &[
                "ConfigMap/sync-users-code",
                "Deployment/sync-users",
                "TriggerAuthentication/sync-users-trigger-auth",
                "ScaledObject/sync-users",
            ],
        ),
        (
            "redis",
            &[
                "ConfigMap/mailer-code",
                "Deployment/mailer",
                "TriggerAuthentication/mailer-trigger-auth",
                "ScaledObject/mailer",
            ],
        ),
        (
            "minio",
            &[
                "ConfigMap/thumbnailer-code",
                "Deployment/thumbnailer",
                "ScaledObject/thumbnailer",
            ],
        ),
        (
            "event-cron",
            &[
                "ConfigMap/ledger-code",
                "Deployment/ledger",
                "TriggerAuthentication/ledger-trigger-auth",
                "ScaledObject/ledger",
                "CronJob/ledger-cron",
            ],
        ),
    ];
    for (case, objects) in want {
        assert_eq!(kinds(&rendered(case)), objects.to_vec(), "{case}");
    }
}

#[test]
fn every_child_has_the_labels_and_owner_of_upstream() {
    for (case, f) in fixtures::cases() {
        let r = render::render(&f, &fixtures::catalog(), &fixtures::settings());
        for o in &r.objects {
            let v = o.to_value().unwrap();
            let labels = &v["metadata"]["labels"];
            assert_eq!(
                labels["app"],
                f.metadata.name.clone().unwrap().as_str(),
                "{case}"
            );
            assert_eq!(labels["app.kubernetes.io/managed-by"], "kipper");
            assert_eq!(labels["kipper.run/resource-type"], "function");
            assert!(labels["kipper.run/trigger"].is_string());
            let owner = &v["metadata"]["ownerReferences"][0];
            assert_eq!(owner["kind"], "Function");
            assert_eq!(owner["apiVersion"], "kipper.run/v1alpha1");
            assert_eq!(owner["controller"], true);
        }
    }
}

#[test]
fn no_credential_is_a_plain_env_value_anywhere() {
    for (case, f) in fixtures::cases() {
        let r = render::render(&f, &fixtures::catalog(), &fixtures::settings());
        let text = r.to_yaml().unwrap();
        for (i, _) in text.match_indices("://") {
            let authority: String = text[i + 3..]
                .chars()
                .take_while(|c| !matches!(c, '/' | ' ' | '\n' | '"' | '\''))
                .collect();
            assert!(
                !authority.contains('@'),
                "{case}: a URL with credentials: {authority}"
            );
        }
        for o in &r.objects {
            let v = o.to_value().unwrap();
            let mut stack = vec![&v];
            while let Some(node) = stack.pop() {
                match node {
                    Value::Object(map) => {
                        if let (Some(Value::String(name)), Some(_)) =
                            (map.get("name"), map.get("value"))
                            && (name.contains("PASSWORD")
                                || name.contains("USER")
                                || name == "KIPPER_SOURCE_URL")
                        {
                            panic!("{case}: {name} is a plain value");
                        }
                        stack.extend(map.values());
                    }
                    Value::Array(items) => stack.extend(items),
                    _ => {}
                }
            }
        }
    }
}

#[test]
fn runtime_gets_port_probes_and_mode() {
    let r = rendered("postgres");
    let dep = value(&r, "Deployment", "process-orders");
    let pod = &dep["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(plain(c, "PORT").as_deref(), Some("9000"));
    assert_eq!(plain(c, "KIPPER_MODE").as_deref(), Some("http"));
    assert_eq!(plain(c, "KIPPER_TRIGGER").as_deref(), Some("postgres"));
    assert_eq!(c["image"], "registry.example.com/order-processor:latest");
    assert_eq!(c["ports"][0]["containerPort"], 9000);
    assert_eq!(
        c["envFrom"][0]["secretRef"]["name"],
        "process-orders-secrets"
    );
    assert!(
        dep["spec"].get("replicas").is_none(),
        "replicas belong to KEDA"
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    // A user image without a health path may serve only POST /event (the seed's Express
    // and Flask examples): its probes and the sidecar's gate check the port, not a path.
    assert_eq!(c["readinessProbe"]["tcpSocket"]["port"], "http");
    assert_eq!(c["livenessProbe"]["tcpSocket"]["port"], "http");
    assert!(c["readinessProbe"].get("httpGet").is_none());
    let sidecar = &pod["initContainers"][0];
    assert!(
        plain(sidecar, "KIPPER_TARGET_READY_URL").is_none(),
        "kipper-poll's TCP check"
    );
    assert!(plain(c, "KIPPER_RUNTIME").is_none());
    // With --health-path, that path.
    let (_, mut f) = fixtures::cases()
        .into_iter()
        .find(|(c, _)| *c == "postgres")
        .unwrap();
    f.spec.health_path = Some("/healthz".into());
    let r = render::render(&f, &fixtures::catalog(), &fixtures::settings());
    let dep = value(&r, "Deployment", "process-orders");
    let pod = &dep["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(
        plain(&pod["initContainers"][0], "KIPPER_TARGET_READY_URL").as_deref(),
        Some("http://localhost:9000/healthz")
    );
    // Inline code runs on our runtime image, behind the shim's /ready.
    let r = rendered("mysql");
    let dep = value(&r, "Deployment", "sync-users");
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health");
    assert_eq!(plain(c, "KIPPER_RUNTIME").as_deref(), Some("node"));
    assert_eq!(
        plain(
            &dep["spec"]["template"]["spec"]["initContainers"][0],
            "KIPPER_TARGET_READY_URL"
        )
        .as_deref(),
        Some("http://localhost:8080/ready")
    );
}

/// Dependencies install in an init step with a limit of its own, into a claim that
/// outlives the pod; the serving container keeps the function's limit and reads the cache.
#[test]
fn dependencies_install_in_an_init_step_into_a_lasting_cache() {
    let r = rendered("http");
    let claim = value(&r, "PersistentVolumeClaim", "webhook-handler-deps");
    assert_eq!(claim["spec"]["accessModes"][0], "ReadWriteOnce");
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "1Gi");
    let dep = value(&r, "Deployment", "webhook-handler");
    let pod = &dep["spec"]["template"]["spec"];
    let install = &pod["initContainers"][0];
    assert_eq!(install["name"], "deps");
    assert!(install.get("restartPolicy").is_none(), "runs to completion");
    assert_eq!(install["image"], pod["containers"][0]["image"]);
    assert_eq!(plain(install, "KIPPER_MODE").as_deref(), Some("install"));
    assert_eq!(
        plain(install, "KIPPER_DEPS_CACHE").as_deref(),
        Some("/var/cache/kipper/deps")
    );
    // npm install of pg + axios peaks at ~160 MiB (bench/deps): the install's own limit.
    assert_eq!(install["resources"]["limits"]["memory"], "512Mi");
    assert_eq!(install["resources"]["requests"]["memory"], "192Mi");
    let c = &pod["containers"][0];
    assert_eq!(
        c["resources"]["limits"]["memory"], "128Mi",
        "the function's own"
    );
    assert_eq!(
        plain(c, "KIPPER_DEPS_CACHE").as_deref(),
        Some("/var/cache/kipper/deps")
    );
    for container in [install, c] {
        let mounts = container["volumeMounts"].as_array().unwrap();
        assert!(
            mounts
                .iter()
                .any(|m| m["name"] == "deps-cache" && m["mountPath"] == "/var/cache/kipper/deps")
        );
    }
    let volumes = pod["volumes"].as_array().unwrap();
    assert!(volumes.iter().any(|v| v["name"] == "deps-cache"
        && v["persistentVolumeClaim"]["claimName"] == "webhook-handler-deps"));
    // A cron run installs the same way (batch pods share the pod spec).
    let r = rendered("cron");
    let cron = value(&r, "CronJob", "opensrs-sync-cron");
    let pod = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["initContainers"][0]["name"], "deps");
    // No dependencies, no install and no claim.
    let r = rendered("postgres");
    assert!(
        r.objects
            .iter()
            .all(|o| o.kind() != "PersistentVolumeClaim")
    );
    let dep = value(&r, "Deployment", "process-orders");
    assert_eq!(
        dep["spec"]["template"]["spec"]["initContainers"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "only the sidecar"
    );
}

#[test]
fn event_sidecar_is_native_with_binding_credentials() {
    let r = rendered("postgres");
    let dep = value(&r, "Deployment", "process-orders");
    let pod = &dep["spec"]["template"]["spec"];
    let sidecar = &pod["initContainers"][0];
    assert_eq!(sidecar["name"], "kipper-poll");
    assert_eq!(sidecar["restartPolicy"], "Always");
    assert!(pod["terminationGracePeriodSeconds"].as_i64().unwrap() >= 60);
    assert_eq!(
        plain(sidecar, "KIPPER_TARGET_URL").as_deref(),
        Some("http://localhost:9000/event")
    );
    assert_eq!(
        plain(sidecar, "KIPPER_FUNCTION_NAME").as_deref(),
        Some("process-orders")
    );
    assert_eq!(
        plain(sidecar, "KIPPER_MARK_DONE").as_deref(),
        Some("UPDATE orders SET status = 'done' WHERE id = {{id}}")
    );
    assert_eq!(
        plain(sidecar, "DB_HOST").as_deref(),
        Some("eventdb.shop-prod.svc.cluster.local")
    );
    assert_eq!(plain(sidecar, "DB_PORT").as_deref(), Some("5432"));
    for (name, key) in [
        ("DB_USERNAME", "username"),
        ("DB_USER", "username"),
        ("DB_PASSWORD", "password"),
        ("DB_NAME", "database"),
    ] {
        let e = env_of(sidecar)
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1;
        assert_eq!(
            e["valueFrom"]["secretKeyRef"]["name"], "eventdb-credentials",
            "{name}"
        );
        assert_eq!(e["valueFrom"]["secretKeyRef"]["key"], key, "{name}");
    }
}

#[test]
fn keda_sql_trigger_connects_to_the_sidecars_database() {
    // postgres: the source is not bound, so both read the service's default database.
    let r = rendered("postgres");
    let so = value(&r, "ScaledObject", "process-orders");
    let t = &so["spec"]["triggers"][0];
    assert_eq!(t["type"], "postgresql");
    let m = &t["metadata"];
    assert_eq!(m["host"], "eventdb.shop-prod.svc.cluster.local");
    assert_eq!(m["port"], "5432");
    assert_eq!(
        m["query"],
        "SELECT COUNT(*) FROM (SELECT * FROM orders WHERE status = 'pending') AS kipper_count"
    );
    assert_eq!(so["spec"]["minReplicaCount"], 0);
    assert_eq!(so["spec"]["maxReplicaCount"], 10);
    assert_eq!(
        t["authenticationRef"]["name"],
        "process-orders-trigger-auth"
    );
    let auth = value(&r, "TriggerAuthentication", "process-orders-trigger-auth");
    let params: Vec<(&str, &str)> = auth["spec"]["secretTargetRef"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["parameter"].as_str().unwrap(), p["key"].as_str().unwrap()))
        .collect();
    assert_eq!(
        params,
        [
            ("dbName", "database"),
            ("userName", "username"),
            ("password", "password")
        ]
    );

    // mysql: the source is bound, so both use the per-function database.
    let r = rendered("mysql");
    let so = value(&r, "ScaledObject", "sync-users");
    assert_eq!(so["spec"]["triggers"][0]["type"], "mysql");
    assert_eq!(
        so["spec"]["triggers"][0]["metadata"]["dbName"],
        "shopdb_sync_users_prod"
    );
    let dep = value(&r, "Deployment", "sync-users");
    let sidecar = &dep["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(
        plain(sidecar, "DB_NAME").as_deref(),
        Some("shopdb_sync_users_prod")
    );
    let runtime = &dep["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        plain(runtime, "DB_NAME").as_deref(),
        Some("shopdb_sync_users_prod")
    );
}

#[test]
fn minio_scales_from_zero_on_the_controllers_pending_count() {
    let r = rendered("minio");
    let so = value(&r, "ScaledObject", "thumbnailer");
    assert_eq!(so["spec"]["minReplicaCount"], 0);
    assert_eq!(
        so["spec"]["maxReplicaCount"], 1,
        "one replica holds the poll lease"
    );
    let t = &so["spec"]["triggers"][0];
    assert_eq!(t["type"], "metrics-api");
    assert_eq!(
        t["metadata"]["url"],
        "http://kipper-controller.kipper-system.svc.cluster.local:8080/pending/shop-prod/thumbnailer"
    );
    assert_eq!(t["metadata"]["valueLocation"], "pending");
    assert_eq!(t["metadata"]["activationTargetValue"], "0");
    let dep = value(&r, "Deployment", "thumbnailer");
    let sidecar = &dep["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(
        plain(sidecar, "KIPPER_MINIO_BUCKET").as_deref(),
        Some("uploads")
    );
    assert_eq!(plain(sidecar, "S3_PORT").as_deref(), Some("9000"));
}

#[test]
fn http_function_routes_through_the_interceptor_with_security_headers() {
    let r = rendered("http");
    assert_eq!(
        r.host.as_deref(),
        Some("fn-webhook-handler-46-225-91-12.kipper.run")
    );
    let hso = value(&r, "HTTPScaledObject", "webhook-handler");
    assert_eq!(
        hso["spec"]["hosts"][0],
        "fn-webhook-handler-46-225-91-12.kipper.run"
    );
    assert_eq!(hso["spec"]["replicas"]["min"], 0);
    assert_eq!(hso["spec"]["replicas"]["max"], 10);
    assert_eq!(hso["spec"]["scaledownPeriod"], 120);
    let ing = value(&r, "Ingress", "webhook-handler");
    assert_eq!(
        ing["metadata"]["annotations"]["traefik.ingress.kubernetes.io/router.middlewares"],
        "shop-prod-fn-webhook-handler-security@kubernetescrd"
    );
    let mw = value(&r, "Middleware", "fn-webhook-handler-security");
    let csp = mw["spec"]["headers"]["contentSecurityPolicy"]
        .as_str()
        .unwrap();
    assert!(csp.contains("https://cdn.example.com"), "{csp}");
    let dep = value(&r, "Deployment", "webhook-handler");
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["resources"]["limits"]["cpu"], "500m");
    assert_eq!(c["resources"]["requests"]["cpu"], "500m");
    assert_eq!(c["resources"]["requests"]["memory"], "128Mi");
    assert_eq!(
        plain(c, "DB_NAME").as_deref(),
        Some("eventdb_webhook_handler_prod")
    );
    let code = value(&r, "ConfigMap", "webhook-handler-code");
    assert!(
        code["data"]["package.json"]
            .as_str()
            .unwrap()
            .contains("\"axios\": \"1.6.7\"")
    );

    let (_, mut f) = fixtures::cases().remove(0);
    f.spec.no_security_headers = true;
    let r = render::render(&f, &fixtures::catalog(), &fixtures::settings());
    assert!(r.objects.iter().all(|o| o.kind() != "Middleware"));
}

#[test]
fn cron_and_test_run_share_the_pod_but_not_the_trigger() {
    let r = rendered("cron");
    let cj = value(&r, "CronJob", "opensrs-sync-cron");
    assert_eq!(cj["spec"]["schedule"], "0 2 * * *");
    assert_eq!(cj["spec"]["concurrencyPolicy"], "Forbid");
    let pod = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(plain(c, "KIPPER_MODE").as_deref(), Some("batch"));
    assert_eq!(plain(c, "KIPPER_TRIGGER").as_deref(), Some("cron"));
    assert_eq!(plain(c, "EVENTS_NAME").as_deref(), Some("domain_sync_prod"));
    assert_eq!(c["image"], "kipper-runtime-python:0.1.0");

    let (_, f) = fixtures::cases().into_iter().nth(1).unwrap();
    let job =
        render::test_job(&f, &fixtures::catalog(), &fixtures::settings(), "0123abcd").unwrap();
    let job = serde_json::to_value(job).unwrap();
    assert_eq!(job["metadata"]["name"], "opensrs-sync-test-0123abcd");
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 600);
    let jc = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(plain(jc, "KIPPER_TRIGGER").as_deref(), Some("test"));
    let strip = |c: &Value| -> Vec<(String, Value)> {
        env_of(c)
            .into_iter()
            .filter(|(n, _)| n != "KIPPER_TRIGGER")
            .collect()
    };
    assert_eq!(strip(jc), strip(c), "same env and bindings");
    assert_eq!(jc["image"], c["image"]);
    assert_eq!(jc["volumeMounts"], c["volumeMounts"]);
    assert_eq!(job["spec"]["template"]["spec"]["volumes"], pod["volumes"]);

    // From the deployed CronJob: the same pod, only the trigger differs.
    let Some(Object::CronJob(cron)) = r.objects.iter().find(|o| o.kind() == "CronJob").cloned()
    else {
        panic!("no CronJob")
    };
    let from_cron = render::test_job_from_cron(&f, &cron, "0123abcd").unwrap();
    let from_cron = serde_json::to_value(from_cron).unwrap();
    assert_eq!(from_cron["metadata"]["name"], "opensrs-sync-test-0123abcd");
    assert_eq!(
        from_cron["metadata"]["labels"]["kipper.run/trigger"],
        "test"
    );
    assert_eq!(from_cron["spec"]["backoffLimit"], 0);
    assert_eq!(from_cron["spec"]["ttlSecondsAfterFinished"], 600);
    let fc = &from_cron["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(plain(fc, "KIPPER_TRIGGER").as_deref(), Some("test"));
    assert_eq!(strip(fc), strip(c));
    assert_eq!(
        from_cron["spec"]["template"]["spec"]["volumes"],
        pod["volumes"]
    );
}

#[test]
fn unknown_services_and_bad_specs_are_false_conditions_not_silence() {
    let (_, mut f) = fixtures::cases().remove(2); // postgres
    f.spec.triggers[0]
        .config
        .insert("source".into(), "nosuchdb".into());
    f.spec.service_bindings.push(ServiceBinding {
        name: "ghost".into(),
        prefix: None,
        database: None,
    });
    let r = render::render(&f, &fixtures::catalog(), &fixtures::settings());
    let reasons: Vec<(&str, &str)> = r.problems.iter().map(|p| (p.condition, p.reason)).collect();
    assert!(
        reasons.contains(&(condition::SERVICES_BOUND, "UnknownService")),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&(condition::RENDERED, "WorkloadNotRendered")),
        "{reasons:?}"
    );
    assert!(
        r.objects
            .iter()
            .all(|o| o.kind() != "Deployment" && o.kind() != "ScaledObject")
    );

    let (_, mut f) = fixtures::cases().remove(2);
    f.spec.triggers[0].kind = TriggerType::Redis; // a postgres service as a redis source
    f.spec.triggers[0].config.insert("list".into(), "q".into());
    let r = render::render(&f, &fixtures::catalog(), &fixtures::settings());
    assert!(
        r.problems.iter().any(|p| p.reason == "WrongServiceType"),
        "{:?}",
        r.problems
    );

    let (_, mut f) = fixtures::cases().remove(2);
    f.spec.triggers[0].config.remove("query");
    let r = render::render(&f, &fixtures::catalog(), &fixtures::settings());
    assert!(r.objects.is_empty());
    assert_eq!(r.problems[0].reason, "InvalidSpec");
    assert!(
        r.problems[0].message.contains("--query"),
        "{}",
        r.problems[0].message
    );
}
