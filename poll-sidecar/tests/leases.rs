//! The lease table at start, on the shared PostgreSQL: a user that may not
//! create it is refused with one line and exit code 2 (the fix in it); once
//! an administrator pre-created it and granted its rights, the same user
//! starts and delivers without any CREATE right, and sweeps a lease a dead
//! replica left behind. A lease table the sidecar created (and so owns) is
//! vacuumed by it while rows flow; one it may not VACUUM is left to autovacuum.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::db::Db;
use support::{Handler, Sidecar, wait_until};

#[tokio::test(flavor = "multi_thread")]
async fn a_user_without_create_is_refused_until_the_table_is_pre_created() {
    let db = Db::postgres().await;
    let name = support::unique("kp_lease");
    let (role, schema) = (format!("{name}_r"), format!("{name}_s"));
    // A schema of its own, where the role may read the events but create
    // nothing; its search path puts the lease table there.
    db.exec(&format!(
        "CREATE ROLE {role} LOGIN; CREATE SCHEMA {schema}; \
         GRANT USAGE ON SCHEMA {schema} TO {role}; \
         ALTER ROLE {role} SET search_path = {schema}; \
         CREATE TABLE {schema}.orders (id int PRIMARY KEY, status text NOT NULL); \
         INSERT INTO {schema}.orders SELECT g, 'pending' FROM generate_series(1, 20) g; \
         GRANT SELECT, UPDATE ON {schema}.orders TO {role}"
    ))
    .await;
    let url = db.url().replacen("postgres@", &format!("{role}@"), 1);
    let env = [
        ("KIPPER_TRIGGER", "postgres"),
        ("KIPPER_SOURCE_URL", url.as_str()),
        ("KIPPER_TARGET_URL", "http://127.0.0.1:9/event"),
        (
            "KIPPER_QUERY",
            "SELECT * FROM orders WHERE status = 'pending'",
        ),
        (
            "KIPPER_MARK_DONE",
            "UPDATE orders SET status = 'done' WHERE id = {{id}}",
        ),
    ];
    let (code, stderr) = support::run_to_exit(&env);
    assert_eq!(code, 2, "bad configuration: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with(&format!(
            "kipper-poll: KIPPER_SOURCE_URL: cannot create the lease table kipper_poll_leases: permission denied for schema {schema}; grant user \"{role}\" CREATE"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("CREATE TABLE IF NOT EXISTS kipper_poll_leases"),
        "the DDL: {stderr}"
    );

    // Pre-created by the administrator, without the DELETE right: named.
    db.exec(&format!(
        "SET search_path = {schema}; \
         CREATE TABLE kipper_poll_leases (lock_key int8 PRIMARY KEY, holder text NOT NULL, expires_at timestamptz NOT NULL); \
         GRANT SELECT, INSERT, UPDATE ON kipper_poll_leases TO {role}; RESET search_path"
    ))
    .await;
    let (code, stderr) = support::run_to_exit(&env);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "kipper-poll: KIPPER_SOURCE_URL: user \"{role}\" cannot use the lease table kipper_poll_leases: it lacks DELETE; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON kipper_poll_leases TO {role}\n"
        )
    );

    // With every right it needs, and still no CREATE: it delivers. A lease
    // a dead replica left behind two minutes ago is swept at start.
    db.exec(&format!(
        "GRANT DELETE ON {schema}.kipper_poll_leases TO {role}; \
         INSERT INTO {schema}.kipper_poll_leases VALUES (42, 'dead-replica', now() - interval '2 minutes')"
    ))
    .await;
    let (_handler, mut sidecar) = drain_orders(&db, &url, &schema, 20).await;
    assert!(sidecar.exited().is_none(), "{}", sidecar.log());
    // The table is the administrator's: the sidecar may not VACUUM it, so it
    // does not try (no warning every 2 s in its log or the server's).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(sidecar.exited().is_none(), "{}", sidecar.log());
    assert_eq!(db.count(&vacuums(&schema)).await, 0);
    assert!(
        sidecar
            .log()
            .contains("The lease table is not this user's to VACUUM"),
        "the sidecar says it leaves the VACUUM to autovacuum: {}",
        sidecar.log()
    );
    let leases = format!("SELECT COUNT(*) FROM {schema}.kipper_poll_leases");
    assert_eq!(
        db.count(&leases).await,
        0,
        "settled rows leave no lease behind, and the dead replica's was swept"
    );
    drop(sidecar);
    db.exec(&format!(
        "DROP SCHEMA {schema} CASCADE; DROP OWNED BY {role}; DROP ROLE {role}"
    ))
    .await;
}

/// Starts a sidecar on `schema.orders` as the user of `url` and waits until
/// its `rows` rows are done; returns the handler and the running sidecar.
async fn drain_orders(db: &Db, url: &str, schema: &str, rows: i64) -> (Handler, Sidecar) {
    let handler = Handler::start(0, &[]);
    let mut env = support::base_env("postgres", url, &handler.url());
    env.push((
        "KIPPER_QUERY".into(),
        "SELECT * FROM orders WHERE status = 'pending'".into(),
    ));
    env.push((
        "KIPPER_MARK_DONE".into(),
        "UPDATE orders SET status = 'done' WHERE id = {{id}}".into(),
    ));
    let sidecar = Sidecar::start(&env);
    let done = format!("SELECT COUNT(*) FROM {schema}.orders WHERE status = 'done'");
    wait_until("every row done", Duration::from_secs(60), async || {
        db.count(&done).await == rows
    })
    .await;
    (handler, sidecar)
}

/// How often the lease table of `schema` was vacuumed other than by
/// autovacuum (which PostgreSQL counts apart).
fn vacuums(schema: &str) -> String {
    format!(
        "SELECT COALESCE(SUM(vacuum_count), 0)::int8 FROM pg_stat_user_tables \
         WHERE schemaname = '{schema}' AND relname = 'kipper_poll_leases'"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sidecar_vacuums_the_lease_table_it_created() {
    let db = Db::postgres().await;
    let name = support::unique("kp_vacuum");
    let (role, schema) = (format!("{name}_r"), format!("{name}_s"));
    db.exec(&format!(
        "CREATE ROLE {role} LOGIN; CREATE SCHEMA {schema} AUTHORIZATION {role}; \
         ALTER ROLE {role} SET search_path = {schema}; \
         CREATE TABLE {schema}.orders (id int PRIMARY KEY, status text NOT NULL); \
         INSERT INTO {schema}.orders SELECT g, 'pending' FROM generate_series(1, 2000) g; \
         ALTER TABLE {schema}.orders OWNER TO {role}"
    ))
    .await;
    let url = db.url().replacen("postgres@", &format!("{role}@"), 1);
    let (_handler, mut sidecar) = drain_orders(&db, &url, &schema, 2000).await;
    wait_until(
        "the lease table vacuumed by the sidecar",
        Duration::from_secs(10),
        async || db.count(&vacuums(&schema)).await > 0,
    )
    .await;
    assert!(sidecar.exited().is_none(), "{}", sidecar.log());
    assert!(
        !sidecar.log().contains("not this user's to VACUUM"),
        "{}",
        sidecar.log()
    );
    drop(sidecar);
    db.exec(&format!(
        "DROP SCHEMA {schema} CASCADE; DROP OWNED BY {role}; DROP ROLE {role}"
    ))
    .await;
}
