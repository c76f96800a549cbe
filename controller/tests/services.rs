//! Black-box tests of the stateful-service renderer: a snapshot per type, every object (the
//! services', a volume's, the copy-data and create-database Jobs) validated with
//! `kubernetes-validate --strict`, and the page's properties checked one by one.
//!
//! Snapshots live in `tests/snapshots/services/`; `UPDATE_SNAPSHOTS=1 cargo test -p
//! kipper-controller --test services` rewrites them (review the diff).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fixtures;

use std::path::Path;

use base64::Engine;
use kipper_controller::facts::{SERVICE_TYPE_LABEL, ServiceFacts, ServiceKind};
use kipper_controller::services::binding::create_database_job;
use kipper_controller::services::copy::{CopyPlan, copy_job, mirror_secret};
use kipper_controller::services::render::{ServiceObjects, render};
use kipper_controller::services::volume::{VolumeSpec, claim};
use kipper_controller::services::{ALL_KINDS, Credentials, ServiceSpec, profile};
use serde_json::Value;

/// A fixed password, so that snapshots are stable; real ones come from `generate_password`.
const PASSWORD: &str = "snapshot-Password-0123456789abcd";

fn spec(kind: ServiceKind) -> ServiceSpec {
    let name = match kind {
        ServiceKind::Redis => "cache",
        ServiceKind::Rabbitmq => "queue",
        ServiceKind::Opensearch => "search",
        ServiceKind::Minio => "storage",
        _ => "mydb",
    };
    ServiceSpec::new(name, kind, "yourr-name", Some("test"))
}

fn objects(kind: ServiceKind) -> ServiceObjects {
    render(&spec(kind), &Credentials::new(kind, PASSWORD.to_owned()))
}

fn yaml(values: &[Value]) -> String {
    let mut s = String::new();
    for v in values {
        s.push_str("---\n");
        s.push_str(&serde_yaml::to_string(v).unwrap());
    }
    s
}

fn copy_plan() -> CopyPlan {
    CopyPlan {
        service: "db".into(),
        kind: ServiceKind::Postgres,
        source_namespace: "yourr-name-test".into(),
        target_namespace: "yourr-name-acc".into(),
        source_host: "db.yourr-name-test.svc.cluster.local".into(),
        target_host: "db.yourr-name-acc.svc.cluster.local".into(),
        suffix: "0badc0de".into(),
    }
}

/// Every other object the issue renders: a volume, the copy-data pair, a create-database Job.
fn extra_objects() -> Vec<(&'static str, Value)> {
    let volume = claim(&VolumeSpec {
        name: "cache".into(),
        project: "yourr-name".into(),
        environment: Some("test".into()),
        size: "2Gi".into(),
        access_mode: "ReadWriteOnce".into(),
        storage_class: None,
    });
    let source = objects(ServiceKind::Postgres).secret;
    let mirror = mirror_secret(&copy_plan(), &source).unwrap();
    let db = ServiceFacts::conventional("db", ServiceKind::Postgres, "yourr-name-test");
    let create = create_database_job(
        &db,
        "yourr-name-test",
        "domain_service_test",
        "domain-service",
        "0badc0de",
    )
    .unwrap()
    .unwrap();
    let mysql = ServiceFacts::conventional("shopdb", ServiceKind::Mysql, "yourr-name-test");
    let create_mysql =
        create_database_job(&mysql, "yourr-name-test", "api_test", "api", "0badc0de")
            .unwrap()
            .unwrap();
    vec![
        ("volume", serde_json::to_value(volume).unwrap()),
        ("copy-mirror", serde_json::to_value(mirror).unwrap()),
        (
            "copy-job",
            serde_json::to_value(copy_job(&copy_plan())).unwrap(),
        ),
        ("create-database", serde_json::to_value(create).unwrap()),
        (
            "create-database-mysql",
            serde_json::to_value(create_mysql).unwrap(),
        ),
    ]
}

#[test]
fn snapshots_of_every_type() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/services");
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    let mut cases: Vec<(String, String)> = ALL_KINDS
        .iter()
        .map(|k| {
            (
                k.as_str().to_owned(),
                yaml(&objects(*k).to_values().unwrap()),
            )
        })
        .collect();
    cases.push((
        "others".to_owned(),
        yaml(
            &extra_objects()
                .into_iter()
                .map(|(_, v)| v)
                .collect::<Vec<_>>(),
        ),
    ));
    let mut stale = Vec::new();
    for (case, text) in cases {
        let path = dir.join(format!("{case}.yaml"));
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
        } else {
            let want = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_SNAPSHOTS=1", path.display()));
            if want != text {
                std::fs::write(dir.join(format!("{case}.yaml.new")), &text).unwrap();
                stale.push(case);
            }
        }
    }
    assert!(
        stale.is_empty(),
        "rendered objects differ from tests/snapshots/services for {stale:?}: compare the \
         .yaml.new files, then rerun with UPDATE_SNAPSHOTS=1 if the change is intended"
    );
}

#[test]
fn every_object_passes_strict_schema_validation() {
    let mut all = Vec::new();
    for k in ALL_KINDS {
        all.extend(objects(k).to_values().unwrap());
        // Custom sizes, resources and a storage class, without an environment.
        let mut s = ServiceSpec::new("other", k, "default", None);
        s.storage = "20Gi".into();
        s.storage_class = Some("local-path".into());
        s.resources.cpu_limit = "2".into();
        s.resources.memory_limit = "4Gi".into();
        s.validate().unwrap();
        all.extend(
            render(&s, &Credentials::new(k, PASSWORD.into()))
                .to_values()
                .unwrap(),
        );
    }
    all.extend(extra_objects().into_iter().map(|(_, v)| v));
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("services.yaml");
    std::fs::write(&file, yaml(&all)).unwrap();
    fixtures::kubernetes_validate(&file);

    // The validator can fail: a misspelt StatefulSet field is rejected.
    let mut bad = objects(ServiceKind::Postgres)
        .to_values()
        .unwrap()
        .pop()
        .unwrap();
    bad["spec"]["replica"] = 1.into();
    std::fs::write(&file, yaml(&[bad])).unwrap();
    assert!(
        std::panic::catch_unwind(|| fixtures::kubernetes_validate(&file)).is_err(),
        "a misspelt field passed kubernetes-validate --strict"
    );
}

fn find<'a>(values: &'a [Value], kind: &str) -> &'a Value {
    values.iter().find(|v| v["kind"] == kind).unwrap()
}

#[test]
fn each_type_follows_the_page() {
    for k in ALL_KINDS {
        let s = spec(k);
        let values = objects(k).to_values().unwrap();
        let secret = find(&values, "Secret");
        let set = find(&values, "StatefulSet");
        let service = find(&values, "Service");
        let kind = k.as_str();

        // The credentials Secret the controller, bindings and kip function look up.
        assert_eq!(
            secret["metadata"]["name"],
            format!("{}-credentials", s.name)
        );
        let label = secret["metadata"]["labels"][SERVICE_TYPE_LABEL]
            .as_str()
            .unwrap();
        assert_eq!(ServiceKind::parse(label), Some(k), "{kind}");
        let decode = |key: &str| {
            let b = secret["data"][key]
                .as_str()
                .unwrap_or_else(|| panic!("{kind}: {key}"));
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).unwrap()).unwrap()
        };
        assert_eq!(decode("password"), PASSWORD);
        decode("username");
        decode("database");
        assert_eq!(
            decode("host"),
            format!("{}.yourr-name-test.svc.cluster.local", s.name)
        );
        assert_eq!(decode("port"), k.default_port().to_string());

        // One replica, a volume of the page's default size.
        assert_eq!(set["spec"]["replicas"], 1, "{kind}");
        let claim = &set["spec"]["volumeClaimTemplates"][0];
        assert_eq!(
            claim["spec"]["resources"]["requests"]["storage"],
            kipper_controller::services::default_storage(k),
            "{kind}"
        );
        let pod = &set["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        // Pinned: an exact release tag, never latest.
        let image = c["image"].as_str().unwrap();
        assert_eq!(image, profile::image(k));
        let tag = image.rsplit_once(':').unwrap().1;
        assert!(
            tag.chars().any(|c| c.is_ascii_digit()) && tag != "latest",
            "{image}"
        );
        assert!(c["readinessProbe"].is_object(), "{kind}");
        assert!(c["livenessProbe"].is_object(), "{kind}");
        assert!(c["resources"]["requests"]["memory"].is_string(), "{kind}");
        assert!(c["resources"]["limits"]["cpu"].is_string(), "{kind}");
        assert_eq!(pod["enableServiceLinks"], false);

        // The Service selects the pods, and exposes the type's port.
        let selector = service["spec"]["selector"].as_object().unwrap();
        let pod_labels = &set["spec"]["template"]["metadata"]["labels"];
        assert!(!selector.is_empty());
        for (key, value) in selector {
            assert_eq!(&pod_labels[key], value, "{kind}: {key}");
        }
        assert_eq!(
            set["spec"]["selector"]["matchLabels"],
            service["spec"]["selector"]
        );
        assert_eq!(service["spec"]["ports"][0]["port"], k.default_port());

        // The password is in the Secret and nowhere else, not even in the probe scripts.
        let b64 = base64::engine::general_purpose::STANDARD.encode(PASSWORD);
        for v in &values {
            if v["kind"] != "Secret" {
                let text = v.to_string();
                assert!(!text.contains(PASSWORD) && !text.contains(&b64), "{kind}");
            }
        }
    }
}

#[test]
fn minio_has_its_console_and_mysql_its_grants() {
    let values = objects(ServiceKind::Minio).to_values().unwrap();
    let service = find(&values, "Service");
    let ports: Vec<i64> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_i64().unwrap())
        .collect();
    assert_eq!(ports, [9000, 9001]);
    let set = find(&values, "StatefulSet");
    let args = &set["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(args.to_string().contains("--console-address"), "{args}");

    let values = objects(ServiceKind::Mysql).to_values().unwrap();
    let cm = find(&values, "ConfigMap");
    assert!(
        cm["data"]["10-kipper-grants.sql"]
            .as_str()
            .unwrap()
            .contains("GRANT ALL PRIVILEGES ON *.* TO 'kipper'")
    );
}
