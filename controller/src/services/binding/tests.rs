//! Unit tests of app bindings and the create-database Job.
use super::*;
use k8s_openapi::api::apps::v1::DeploymentSpec;

#[test]
fn per_app_database_names_follow_the_page() {
    assert_eq!(
        app_database_name("domain-service", Some("test")),
        "domain_service_test"
    );
    assert_eq!(
        app_database_name("identity-service", Some("prod")),
        "identity_service_prod"
    );
    assert_eq!(
        app_database_name("exchange-service", Some("acc")),
        "exchange_service_acc"
    );
    assert_eq!(app_database_name("api", None), "api");
    assert_eq!(app_database_name("api", Some("")), "api");
}

fn app() -> Deployment {
    Deployment {
        spec: DeploymentSpec {
            template: PodTemplateSpec {
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "web".into(),
                        env: Some(vec![plain("KEEP", "1")]),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

fn env_names(d: &Deployment) -> Vec<String> {
    d.spec.template.spec.as_ref().unwrap().containers[0]
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|v| v.name.clone())
        .collect()
}

#[test]
fn bind_injects_the_pages_names_and_unbind_removes_exactly_them() {
    let mut d = app();
    let db = ServiceFacts::conventional("db", ServiceKind::Postgres, "shop-test");
    let binding = AppBinding {
        prefix: "DB_".into(),
        database: Some("domain_service_test".into()),
    };
    bind_app(&mut d, &db, binding.clone()).unwrap();
    let names = env_names(&d);
    for n in [
        "KEEP",
        "DB_HOST",
        "DB_PORT",
        "DB_USERNAME",
        "DB_PASSWORD",
        "DB_NAME",
    ] {
        assert!(names.contains(&n.to_owned()), "{n} in {names:?}");
    }
    // Rebinding replaces, never duplicates.
    bind_app(&mut d, &db, binding).unwrap();
    assert_eq!(env_names(&d), names);
    let storage = ServiceFacts::conventional("storage", ServiceKind::Minio, "shop-test");
    bind_app(
        &mut d,
        &storage,
        AppBinding {
            prefix: "S3_".into(),
            database: None,
        },
    )
    .unwrap();
    let names = env_names(&d);
    for n in ["S3_HOST", "S3_PORT", "S3_USERNAME", "S3_PASSWORD"] {
        assert!(names.contains(&n.to_owned()), "{n} in {names:?}");
    }
    // Passwords are references, never values.
    let c = &d.spec.template.spec.as_ref().unwrap().containers[0];
    let pw = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "DB_PASSWORD")
        .unwrap();
    assert!(pw.value.is_none());
    assert_eq!(
        pw.value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap()
            .name,
        "db-credentials"
    );
    // A second service on the same prefix is refused.
    let other = ServiceFacts::conventional("other", ServiceKind::Mysql, "shop-test");
    let e = bind_app(
        &mut d,
        &other,
        AppBinding {
            prefix: "DB_".into(),
            database: None,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("--prefix"), "{e}");

    assert!(unbind_app(&mut d, "db").unwrap());
    let names = env_names(&d);
    assert!(names.iter().all(|n| !n.starts_with("DB_")), "{names:?}");
    assert!(names.contains(&"S3_HOST".to_owned()));
    assert!(!unbind_app(&mut d, "db").unwrap());
    assert_eq!(recorded(&d).unwrap().len(), 1);
    assert!(unbind_app(&mut d, "storage").unwrap());
    assert_eq!(env_names(&d), vec!["KEEP".to_owned()]);
    assert!(
        d.metadata
            .annotations
            .as_ref()
            .unwrap()
            .get(BINDINGS_ANNOTATION)
            .is_none()
    );
}

#[test]
fn every_type_injects_the_pages_prefix() {
    use crate::services::ALL_KINDS;
    for kind in ALL_KINDS {
        let facts = ServiceFacts::conventional("s", kind, "ns");
        let b = AppBinding {
            prefix: kind.default_prefix().to_owned(),
            database: kind.is_database().then(|| "api".to_owned()),
        };
        let names: Vec<String> = binding_vars(&facts, &b)
            .into_iter()
            .map(|v| v.name)
            .collect();
        let want: &[&str] = match kind {
            ServiceKind::Postgres | ServiceKind::Mysql | ServiceKind::Mongodb => &[
                "DB_HOST",
                "DB_PORT",
                "DB_USERNAME",
                "DB_PASSWORD",
                "DB_NAME",
            ],
            ServiceKind::Minio => &["S3_HOST", "S3_PORT", "S3_USERNAME", "S3_PASSWORD"],
            ServiceKind::Redis => &["REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD"],
            ServiceKind::Rabbitmq => &["AMQP_HOST", "AMQP_PORT", "AMQP_USERNAME", "AMQP_PASSWORD"],
            ServiceKind::Opensearch => &[
                "OPENSEARCH_HOST",
                "OPENSEARCH_PORT",
                "OPENSEARCH_USERNAME",
                "OPENSEARCH_PASSWORD",
            ],
        };
        for w in want {
            assert!(
                names.iter().any(|n| n == w),
                "{}: {w} in {names:?}",
                kind.as_str()
            );
        }
    }
}

#[test]
fn create_database_jobs_use_the_service_image_and_no_plain_password() {
    let db = ServiceFacts::conventional("db", ServiceKind::Postgres, "shop-test");
    let job = create_database_job(&db, "shop-test", "api_test", "api", "0badc0de")
        .unwrap()
        .unwrap();
    let text = serde_json::to_string(&job).unwrap();
    assert!(text.contains("postgres:16.4"));
    assert!(text.contains("PGPASSWORD"));
    assert_eq!(job.metadata.name.as_deref(), Some("db-createdb-0badc0de"));
    let mongo = ServiceFacts::conventional("m", ServiceKind::Mongodb, "x");
    assert!(
        create_database_job(&mongo, "x", "api", "api", "0badc0de")
            .unwrap()
            .is_none()
    );
    assert!(create_database_job(&db, "x", "bad;name", "api", "0badc0de").is_err());
}
