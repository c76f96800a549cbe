//! Per-function database creation against the real PostgreSQL (127.0.0.1:5432, trust auth)
//! and MariaDB (127.0.0.1:3306, root without password) of the test machine
//! (`scripts/services.sh` starts them). Fails loudly when they are down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kipper_controller::database::{DatabaseServer, ensure_database};
use kipper_controller::facts::ServiceKind;
use mysql_async::prelude::Queryable;

fn unique(prefix: &str) -> String {
    format!("{prefix}_{:08x}", rand::random::<u32>())
}

fn postgres() -> DatabaseServer {
    DatabaseServer {
        kind: ServiceKind::Postgres,
        host: "127.0.0.1".into(),
        port: 5432,
        user: "postgres".into(),
        password: String::new(),
    }
}

fn mariadb() -> DatabaseServer {
    DatabaseServer {
        kind: ServiceKind::Mysql,
        host: "127.0.0.1".into(),
        port: 3306,
        user: "root".into(),
        password: String::new(),
    }
}

async fn pg_client() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=postgres",
        tokio_postgres::NoTls,
    )
    .await
    .expect("PostgreSQL must run on 127.0.0.1:5432: run scripts/services.sh");
    tokio::spawn(conn);
    client
}

#[tokio::test]
async fn postgres_database_is_created_once() {
    let name = unique("kipper_ctl_pg");
    let admin = pg_client().await;
    assert!(
        ensure_database(&postgres(), &name).await.unwrap(),
        "created"
    );
    assert!(
        !ensure_database(&postgres(), &name).await.unwrap(),
        "idempotent"
    );
    let n: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // Concurrent binds of the same function race; both succeed.
    let racer = unique("kipper_ctl_pg");
    let server = postgres();
    let (a, b) = tokio::join!(
        ensure_database(&server, &racer),
        ensure_database(&server, &racer)
    );
    let created = [a.unwrap(), b.unwrap()];
    assert!(created.iter().filter(|c| **c).count() <= 1, "{created:?}");
    for db in [&name, &racer] {
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\""))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn mariadb_database_is_created_once() {
    let name = unique("kipper_ctl_my");
    assert!(ensure_database(&mariadb(), &name).await.unwrap(), "created");
    assert!(
        !ensure_database(&mariadb(), &name).await.unwrap(),
        "idempotent"
    );
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(3306)
        .user(Some("root"));
    let mut conn = mysql_async::Conn::new(opts)
        .await
        .expect("MariaDB must run on 127.0.0.1:3306: run scripts/services.sh");
    let found: Option<String> = conn
        .exec_first(
            "SELECT SCHEMA_NAME FROM INFORMATION_SCHEMA.SCHEMATA WHERE SCHEMA_NAME = ?",
            (&name,),
        )
        .await
        .unwrap();
    assert_eq!(found.as_deref(), Some(name.as_str()));
    conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
}

#[tokio::test]
async fn bad_names_never_reach_the_server_and_failures_name_the_database() {
    for bad in ["x; DROP DATABASE postgres", "Upper", "1abc", ""] {
        let e = ensure_database(&postgres(), bad)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("database name"), "{bad}: {e}");
    }
    let mut wrong = mariadb();
    wrong.user = "no_such_user_kipper".into();
    wrong.password = "x".into();
    let e = ensure_database(&wrong, "kipper_ctl_never")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("kipper_ctl_never") && e.contains("127.0.0.1:3306"),
        "{e}"
    );
}
