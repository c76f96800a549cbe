//! The exact scripts the service Jobs run, against the real local PostgreSQL (127.0.0.1:5432,
//! user postgres, trust): the copy-data pipeline (`pg_dump --clean --if-exists | psql --set
//! ON_ERROR_STOP=1`) between two databases, re-runs included, and the per-app
//! create-database script. The script text and the variable names are taken from the
//! rendered Jobs, so what is tested is what a cluster would run. `bash`, `sh`, `psql` and
//! `pg_dump` must be installed: a missing tool fails the test, it never skips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::Command;

use kipper_controller::facts::{ServiceFacts, ServiceKind};
use kipper_controller::services::binding::create_database_job;
use kipper_controller::services::copy::{CopyPlan, copy_job};
use rand::Rng;

const HOST: &str = "127.0.0.1";

async fn connect(db: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::Config::new()
        .host(HOST)
        .port(5432)
        .user("postgres")
        .dbname(db)
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL at {HOST}:5432 (user postgres) is needed: {e}; run scripts/services.sh"
            )
        });
    tokio::spawn(conn);
    client
}

/// A fresh database with a unique name, dropped by [`drop_db`].
async fn create_db(admin: &tokio_postgres::Client, prefix: &str) -> String {
    let name = format!("{prefix}_{:08x}", rand::rng().random::<u32>());
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    name
}

async fn drop_db(admin: &tokio_postgres::Client, name: &str) {
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
}

/// The container of a rendered Job: its command and its variables with `values` in place of
/// the cluster's (`secretKeyRef`s become the given values; every variable must be given or be
/// plain).
fn run_job_container(
    job: &k8s_openapi::api::batch::v1::Job,
    values: &BTreeMap<&str, String>,
) -> std::process::Output {
    let c = &job
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    let command = c.command.clone().unwrap();
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..]).env_clear().env(
        "PATH",
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
    );
    for v in c.env.as_ref().unwrap() {
        let value = values
            .get(v.name.as_str())
            .cloned()
            .or_else(|| v.value.clone())
            .unwrap_or_else(|| panic!("the test gives no value for {}", v.name));
        cmd.env(&v.name, value);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("{} is needed to run the Job's script: {e}", command[0]))
}

fn plan() -> CopyPlan {
    CopyPlan {
        service: "db".into(),
        kind: ServiceKind::Postgres,
        source_namespace: "shop-test".into(),
        target_namespace: "shop-acc".into(),
        source_host: HOST.into(),
        target_host: HOST.into(),
        suffix: "0badc0de".into(),
    }
}

fn copy(source_db: &str, target_db: &str) -> std::process::Output {
    let values = BTreeMap::from([
        ("SOURCE_HOST", HOST.to_owned()),
        ("SOURCE_PORT", "5432".to_owned()),
        ("SOURCE_USERNAME", "postgres".to_owned()),
        ("SOURCE_PASSWORD", String::new()),
        ("SOURCE_DB", source_db.to_owned()),
        ("TARGET_USERNAME", "postgres".to_owned()),
        ("TARGET_PASSWORD", String::new()),
        ("TARGET_DB", target_db.to_owned()),
    ]);
    run_job_container(&copy_job(&plan()), &values)
}

async fn orders(client: &tokio_postgres::Client) -> Vec<(i32, String)> {
    client
        .query("SELECT id, customer FROM orders ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn copy_data_pipeline_replaces_the_target_and_reruns_cleanly() {
    let admin = connect("postgres").await;
    let src = create_db(&admin, "kip_copy_src").await;
    let dst = create_db(&admin, "kip_copy_dst").await;
    let source = connect(&src).await;
    source
        .batch_execute(
            "CREATE TABLE orders (id serial PRIMARY KEY, customer text NOT NULL, amount numeric(10,2));
             INSERT INTO orders (customer, amount) VALUES ('acme', 99.99), ('globex', 12.50), ('initech', 1);
             CREATE INDEX orders_customer ON orders (customer);
             CREATE VIEW big_orders AS SELECT * FROM orders WHERE amount > 10;",
        )
        .await
        .unwrap();
    let target = connect(&dst).await;
    // The target has its own, different data under the same names.
    target
        .batch_execute(
            "CREATE TABLE orders (id int PRIMARY KEY, customer text, note text);
             INSERT INTO orders VALUES (1, 'stale', 'x'), (99, 'only-in-target', 'y');",
        )
        .await
        .unwrap();

    let out = copy(&src, &dst);
    assert!(
        out.status.success(),
        "copy failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let want = vec![
        (1, "acme".to_owned()),
        (2, "globex".to_owned()),
        (3, "initech".to_owned()),
    ];
    assert_eq!(orders(&target).await, want);
    let big: i64 = target
        .query_one("SELECT count(*) FROM big_orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(big, 2);
    // The sequence came along: the next id follows the source's.
    let next: i32 = target
        .query_one(
            "INSERT INTO orders (customer) VALUES ('new') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(next, 4);
    target
        .batch_execute("DELETE FROM orders WHERE id = 4")
        .await
        .unwrap();

    // A re-run overwrites cleanly: same rows, no duplicates, no error.
    source
        .batch_execute("UPDATE orders SET customer = 'acme-2' WHERE id = 1")
        .await
        .unwrap();
    let out = copy(&src, &dst);
    assert!(
        out.status.success(),
        "re-run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut want2 = want.clone();
    want2[0].1 = "acme-2".into();
    assert_eq!(orders(&target).await, want2);

    // A restore error stops the Job loudly (ON_ERROR_STOP) and, being one transaction,
    // leaves the target as it was: a view only the target has depends on orders, so
    // `DROP TABLE IF EXISTS orders` fails.
    target
        .batch_execute("CREATE VIEW target_only AS SELECT id FROM orders")
        .await
        .unwrap();
    source
        .batch_execute("UPDATE orders SET customer = 'acme-3' WHERE id = 1")
        .await
        .unwrap();
    let out = copy(&src, &dst);
    assert!(!out.status.success(), "a failed restore exited 0");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("target_only"), "{stderr}");
    assert_eq!(orders(&target).await, want2);

    // A failed dump fails the Job too (pipefail), and psql restores nothing.
    let out = copy("kip_copy_no_such_db", &dst);
    assert!(!out.status.success(), "a failed pg_dump exited 0");
    assert_eq!(orders(&target).await, want2);

    drop(source);
    drop(target);
    drop_db(&admin, &src).await;
    drop_db(&admin, &dst).await;
}

#[tokio::test]
async fn create_database_script_is_idempotent() {
    let admin = connect("postgres").await;
    let name = format!("kip_app_{:08x}_test", rand::rng().random::<u32>());
    let facts = ServiceFacts {
        host: HOST.into(),
        ..ServiceFacts::conventional("db", ServiceKind::Postgres, "shop-test")
    };
    let job = create_database_job(&facts, "shop-test", &name, "app", "0badc0de")
        .unwrap()
        .unwrap();
    let values = BTreeMap::from([
        ("DB_USERNAME", "postgres".to_owned()),
        ("PGPASSWORD", String::new()),
    ]);
    for round in 0..2 {
        let out = run_job_container(&job, &values);
        assert!(
            out.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let n: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    drop_db(&admin, &name).await;
}
