//! The source's server restarted in the middle of a run (issue 13): three
//! kipper-poll replicas, a handler that fails 5% of first attempts and is
//! slow (1.5 s, under the 2 s delivery timeout) on 10% of them, so many
//! requests are in flight when the server goes. Every event must be
//! delivered and settled, no event delivered by two replicas at overlapping
//! times (counted from the handler's record), and no sidecar may exit.
//!
//! Each test starts a private server on a free port (PostgreSQL as the
//! `postgres` user, MariaDB, redis-server with an append-only file, SeaweedFS) so it can
//! restart it without touching the shared services; a missing server binary
//! fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::time::Duration;

use redis::AsyncCommands;
use support::db::Db;
use support::servers::{PrivateMariadb, PrivatePostgres, PrivateRedis, PrivateSeaweedfs};
use support::{Handler, Sidecar, concurrent_duplicates, free_port, http_get, wait_until};

const EVENTS: usize = 3000;
const LONG: Duration = Duration::from_secs(180);
const HANDLER: [&str; 3] = ["--flaky-percent=5", "--slow-percent=10", "--slow-ms=1500"];

/// Settings of every replica here: the delivery timeout, room for
/// the injected failures, an admin port to read `/metrics` from.
fn tuned(env: &mut Vec<(String, String)>, admin: u16) {
    for (k, v) in [
        ("KIPPER_DELIVERY_TIMEOUT", "2s".to_string()),
        ("KIPPER_MAX_ATTEMPTS", "10".to_string()),
        ("KIPPER_BATCH_SIZE", "100".to_string()),
        ("KIPPER_CONCURRENCY", "32".to_string()),
        ("KIPPER_ADMIN_PORT", admin.to_string()),
    ] {
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v));
    }
}

/// Starts three replicas with `env`; returns them with their admin ports.
fn three(env: &[(String, String)]) -> Vec<(Sidecar, u16)> {
    replicas(3, env)
}

fn replicas(n: usize, env: &[(String, String)]) -> Vec<(Sidecar, u16)> {
    (0..n)
        .map(|i| {
            let admin = free_port();
            let mut env = env.to_vec();
            tuned(&mut env, admin);
            env.push(("KIPPER_REDIS_CONSUMER".into(), format!("replica{i}")));
            (Sidecar::start(&env), admin)
        })
        .collect()
}

fn accepted(handler: &Handler) -> usize {
    handler
        .deliveries()
        .iter()
        .filter(|d| d.status == 200)
        .count()
}

/// The replicas' reconnects, summed from their `/metrics`.
fn reconnects(replicas: &[(Sidecar, u16)]) -> u64 {
    replicas
        .iter()
        .map(|(_, admin)| {
            http_get(*admin, "/metrics")
                .lines()
                .find_map(|l| l.strip_prefix("kipper_poll_source_reconnects_total "))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .expect("the reconnect counter on /metrics")
        })
        .sum()
}

/// Waits until a replica counted the outage and its end: a replica that
/// was idle when the server went (a loaded machine may let the run finish
/// first) sees it at its next poll.
async fn outage_counted(replicas: &[(Sidecar, u16)]) {
    wait_until(
        "a replica counts the outage and its end",
        LONG,
        async || reconnects(replicas) >= 1,
    )
    .await;
}

/// What every restart test asserts once the run is over.
fn check(
    handler: &Handler,
    replicas: &mut [(Sidecar, u16)],
    ids: impl Fn(&serde_json::Value) -> Option<i64>,
) {
    let deliveries = handler.deliveries();
    let duplicates = concurrent_duplicates(&deliveries);
    assert!(
        duplicates.is_empty(),
        "{} events delivered by two replicas at overlapping times: {:?}",
        duplicates.len(),
        &duplicates[..duplicates.len().min(10)]
    );
    let delivered: HashSet<i64> = deliveries
        .iter()
        .filter(|d| d.status == 200)
        .filter_map(|d| ids(&d.body))
        .collect();
    assert_eq!(delivered.len(), EVENTS, "every event delivered");
    for (sidecar, _) in replicas.iter_mut() {
        assert!(
            sidecar.exited().is_none(),
            "a replica exited: {}",
            sidecar.log()
        );
    }
    let reconnects = reconnects(replicas);
    assert!(reconnects >= 1, "the outage was seen and ended");
    eprintln!(
        "restart test: {} deliveries of {EVENTS} events, {reconnects} reconnects, 0 concurrent duplicates",
        deliveries.len()
    );
}

async fn sql_restart(db: Db, url: String, n: usize, restart: impl FnOnce()) {
    let t = support::unique("kp_restart");
    db.orders(&t, EVENTS).await;
    let handler = Handler::start(0, &HANDLER);
    let env = support::scenarios::env(&db, &handler.url(), &t, &[("KIPPER_SOURCE_URL", &url)]);
    let mut replicas = replicas(n, &env);
    wait_until("a quarter delivered", LONG, async || {
        accepted(&handler) >= EVENTS / 4
    })
    .await;
    drop(db);
    restart();
    let db = if url.starts_with("postgres") {
        Db::postgres_at(url).await
    } else {
        Db::mysql_at(url).await
    };
    wait_until("every row done", LONG, async || {
        db.with_status(&t, "done").await == EVENTS as i64
    })
    .await;
    outage_counted(&replicas).await;
    check(&handler, &mut replicas, |body| body["id"].as_i64());
    assert!(
        replicas
            .iter()
            .any(|(s, _)| s.log().contains("claim session lost")),
        "a replica noticed the lost session"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_restart_mid_run_three_replicas() {
    let server = PrivatePostgres::start();
    let url = server.url();
    sql_restart(Db::postgres_at(url.clone()).await, url, 3, || {
        server.restart()
    })
    .await;
}

/// One replica alone: rows whose acknowledgement failed during the outage,
/// or that belonged to the lost session, are not excluded forever.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_restart_mid_run_one_replica_leaves_no_row_behind() {
    let server = PrivatePostgres::start();
    let url = server.url();
    sql_restart(Db::postgres_at(url.clone()).await, url, 1, || {
        server.restart()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_restart_mid_run_three_replicas() {
    let mut server = PrivateMariadb::start();
    let url = server.url();
    sql_restart(Db::mysql_at(url.clone()).await, url, 3, || server.restart()).await;
}

async fn redis_con(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn keys(url: &str, pattern: &str) -> Vec<String> {
    let mut con = redis_con(url).await;
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut con)
        .await
        .unwrap();
    keys.sort();
    keys
}

/// The Redis run, then two replicas SIGKILLed: once their lease expired and
/// their items went back, no heartbeat key, consumer-set entry or processing
/// list of theirs is left.
#[tokio::test(flavor = "multi_thread")]
async fn redis_restart_mid_run_three_replicas_then_dead_consumers_leave_nothing() {
    let mut server = PrivateRedis::start();
    let url = server.url();
    let list = "jobs";
    let items: Vec<String> = (0..EVENTS).map(|i| format!("{{\"n\":{i}}}")).collect();
    let mut con = redis_con(&url).await;
    for chunk in items.chunks(500) {
        let _: () = con.rpush(list, chunk).await.unwrap();
    }
    let handler = Handler::start(0, &HANDLER);
    let mut env = support::base_env("redis", &url, &handler.url());
    env.push(("KIPPER_REDIS_LIST".into(), list.into()));
    env.push(("KIPPER_REDIS_LEASE".into(), "3s".into()));
    let mut replicas = three(&env);
    wait_until("a quarter delivered", LONG, async || {
        accepted(&handler) >= EVENTS / 4
    })
    .await;
    server.restart();
    wait_until("every item delivered", LONG, async || {
        let ns: HashSet<i64> = handler
            .deliveries()
            .iter()
            .filter(|d| d.status == 200)
            .filter_map(|d| d.body["n"].as_i64())
            .collect();
        ns.len() == EVENTS
    })
    .await;
    wait_until("the list and processing lists empty", LONG, async || {
        let mut con = redis_con(&url).await;
        let waiting: usize = con.llen(list).await.unwrap();
        let mut held = 0;
        for key in keys(&url, "jobs:processing:*").await {
            let n: usize = con.llen(&key).await.unwrap();
            held += n;
        }
        waiting == 0 && held == 0
    })
    .await;
    outage_counted(&replicas).await;
    check(&handler, &mut replicas, |body| body["n"].as_i64());

    // Two consumers die holding items; the third recovers them and their keys.
    let more: Vec<String> = (EVENTS..EVENTS + 300)
        .map(|i| format!("{{\"n\":{i}}}"))
        .collect();
    let _: () = redis_con(&url).await.rpush(list, &more).await.unwrap();
    replicas[1].0.kill();
    replicas[2].0.kill();
    wait_until("the dead consumers' leftovers gone", LONG, async || {
        let mut con = redis_con(&url).await;
        let members: Vec<String> = con.smembers("jobs:consumers").await.unwrap();
        keys(&url, "jobs:consumer:*").await == ["jobs:consumer:replica0"]
            && members == ["replica0"]
            && keys(&url, "jobs:processing:*")
                .await
                .iter()
                .all(|k| k == "jobs:processing:replica0")
    })
    .await;
    wait_until("the extra items delivered", LONG, async || {
        let ns: HashSet<i64> = handler
            .deliveries()
            .iter()
            .filter(|d| d.status == 200)
            .filter_map(|d| d.body["n"].as_i64())
            .collect();
        ns.len() == EVENTS + 300
    })
    .await;
    assert!(replicas[0].0.exited().is_none(), "{}", replicas[0].0.log());
}

/// S3 (SeaweedFS) restarted while the lease holder delivers a bucket: every
/// object delivered, none twice at once, no replica exits.
#[tokio::test(flavor = "multi_thread")]
async fn s3_restart_mid_run_three_replicas() {
    use aws_sdk_s3::primitives::ByteStream;
    use kipper_poll::config::{S3Connection, Secret};
    use kipper_poll::source::s3::bucket::Bucket;
    const OBJECTS: usize = 600;
    let mut server = PrivateSeaweedfs::start();
    let connection = S3Connection {
        endpoint: format!("http://127.0.0.1:{}", server.s3_port),
        access_key: "kipper-test-access".into(),
        secret_key: Secret::new("kipper-test-secret-only-for-local-tests"),
    };
    let bucket = Bucket::new(&connection, "restart");
    wait_until("the bucket created", LONG, async || {
        bucket
            .client()
            .create_bucket()
            .bucket("restart")
            .send()
            .await
            .is_ok()
    })
    .await;
    for i in 0..OBJECTS {
        bucket
            .client()
            .put_object()
            .bucket("restart")
            .key(format!("o{i:04}"))
            .body(ByteStream::from(format!("{i}").into_bytes()))
            .send()
            .await
            .unwrap();
    }
    let handler = Handler::start(0, &HANDLER);
    let mut env = support::base_env("minio", &server.url(), &handler.url());
    env.push(("KIPPER_MINIO_BUCKET".into(), "restart".into()));
    env.push(("KIPPER_MINIO_LEASE".into(), "6s".into()));
    let mut replicas = three(&env);
    let keys = |handler: &Handler| -> HashSet<String> {
        handler
            .deliveries()
            .iter()
            .filter(|d| d.status == 200)
            .filter_map(|d| d.body["s3"]["object"]["key"].as_str().map(str::to_owned))
            .collect()
    };
    wait_until("a quarter delivered", LONG, async || {
        keys(&handler).len() >= OBJECTS / 4
    })
    .await;
    let before = keys(&handler).len();
    // Deliveries of what was listed go on while the server is down; the
    // outage hits the listing, the checkpoint writes and the lease renewals.
    assert!(before < OBJECTS, "the restart began mid-run: {before}");
    server.restart();
    let after = keys(&handler).len();
    eprintln!(
        "s3 restart test: {before} objects delivered when the restart began, {after} when it ended"
    );
    wait_until("every object delivered", LONG, async || {
        keys(&handler).len() == OBJECTS
    })
    .await;
    let deliveries = handler.deliveries();
    let duplicates = concurrent_duplicates(&deliveries);
    assert!(
        duplicates.is_empty(),
        "concurrent duplicates: {duplicates:?}"
    );
    for (sidecar, _) in replicas.iter_mut() {
        assert!(
            sidecar.exited().is_none(),
            "a replica exited: {}",
            sidecar.log()
        );
    }
}

/// One replica's sessions ended by a server that keeps running (what
/// `pg_terminate_backend`, `KILL` or a proxy dropping the connection do),
/// five times mid-run: its locks go at once while its requests still run,
/// and no other replica may deliver those rows until they have ended.
async fn sql_sessions_killed(db: Db, urls: [String; 3], mut kill: impl AsyncFnMut(&Db)) {
    let t = support::unique("kp_kill");
    db.orders(&t, EVENTS).await;
    let handler = Handler::start(0, &HANDLER);
    let mut replicas: Vec<(Sidecar, u16)> = urls
        .iter()
        .map(|url| {
            let admin = free_port();
            let mut env = support::scenarios::env(
                &db,
                &handler.url(),
                &t,
                &[("KIPPER_SOURCE_URL", url.as_str())],
            );
            tuned(&mut env, admin);
            (Sidecar::start(&env), admin)
        })
        .collect();
    wait_until("a quarter delivered", LONG, async || {
        accepted(&handler) >= EVENTS / 4
    })
    .await;
    for _ in 0..5 {
        kill(&db).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    wait_until("every row done", LONG, async || {
        db.with_status(&t, "done").await == EVENTS as i64
    })
    .await;
    outage_counted(&replicas).await;
    check(&handler, &mut replicas, |body| body["id"].as_i64());
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_one_replica_sessions_killed_on_a_running_server() {
    let server = PrivatePostgres::start();
    let url = server.url();
    let victim = format!("{url}?application_name=kp-victim");
    sql_sessions_killed(
        Db::postgres_at(url.clone()).await,
        [victim, url.clone(), url],
        async |db| {
            db.exec(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = 'kp-victim'",
            )
            .await
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_one_replica_sessions_killed_on_a_running_server() {
    let server = PrivateMariadb::start();
    let url = server.url();
    let db = Db::mysql_at(url.clone()).await;
    db.exec("CREATE USER 'kp_victim'@'%'").await;
    db.exec("GRANT ALL ON test.* TO 'kp_victim'@'%'").await;
    let victim = url.replacen("root@", "kp_victim@", 1);
    sql_sessions_killed(db, [victim, url.clone(), url], async |db| {
        for id in db
            .ids("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'kp_victim'")
            .await
        {
            db.try_exec(&format!("KILL CONNECTION {id}")).await;
        }
    })
    .await;
}
