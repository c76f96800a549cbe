//! Delivery scenarios run against both databases (tests/postgres.rs and
//! tests/mysql.rs call each with their `Db`): the real kipper-poll binary,
//! the real handler process, failures injected.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::Duration;

use super::db::{Db, TableGuard};
use super::{
    Handler, Sidecar, base_env, by_key, concurrent_duplicates, free_port, unique, wait_until,
};

const LONG: Duration = Duration::from_secs(60);

/// The environment of a sidecar on the orders table `t`: the seed's query,
/// mark-done and mark-failed, then `extra` (which replaces same-named keys).
pub fn env(db: &Db, target: &str, t: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = base_env(db.trigger(), db.url(), target);
    env.push((
        "KIPPER_QUERY".into(),
        format!("SELECT * FROM {t} WHERE status = 'pending'"),
    ));
    env.push((
        "KIPPER_MARK_DONE".into(),
        format!("UPDATE {t} SET status = 'done' WHERE id = {{{{id}}}}"),
    ));
    env.push((
        "KIPPER_MARK_FAILED".into(),
        format!("UPDATE {t} SET status = 'failed' WHERE id = {{{{id}}}}"),
    ));
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v.to_string()));
    }
    env
}

fn delivered_ids(handler: &Handler) -> HashSet<i64> {
    handler
        .deliveries()
        .iter()
        .filter(|d| d.status == 200)
        .filter_map(|d| d.body["id"].as_i64())
        .collect()
}

/// Every row delivered once and marked done; a backlog is drained back to
/// back although the poll interval is an hour.
pub async fn drains_backlog_without_waiting(db: Db) {
    let t = unique("kp_backlog");
    let _guard = TableGuard::new(&db, &t);
    db.orders(&t, 1500).await;
    let handler = Handler::start(0, &[]);
    let sidecar = Sidecar::start(&env(
        &db,
        &handler.url(),
        &t,
        &[("KIPPER_POLL_INTERVAL", "1h"), ("KIPPER_BATCH_SIZE", "50")],
    ));
    wait_until("all rows done", LONG, async || {
        db.with_status(&t, "done").await == 1500
    })
    .await;
    // RUST_LOG=kipper_poll=debug (set by `env`) shows each delivery.
    let log = sidecar.log();
    assert!(
        log.contains("Delivered."),
        "a debug line per delivery: {log}"
    );
    let deliveries = handler.deliveries();
    assert_eq!(delivered_ids(&handler).len(), 1500);
    assert_eq!(
        deliveries.len(),
        1500,
        "each row exactly once when nothing fails"
    );
    let first = &deliveries[0];
    assert!(
        first.raw.contains(r#""amount":"#) && first.body["status"] == "pending",
        "{}",
        first.raw
    );
}

/// Handler 500s: retried, then dead-lettered (mark-failed) after exactly the
/// attempt cap; the other rows are delivered and marked done.
pub async fn retries_then_dead_letters(db: Db) {
    failing_status_dead_letters(db, 500, &[]).await;
}

/// Handler 502s, as kipper-shim answers a request whose worker died under it
/// (here even with a `Retry-After`): a failed attempt like a 500, counted and
/// dead-lettered after the cap, never the uncounted "not ready" of a 503;
/// every other row flows meanwhile.
pub async fn worker_died_502_counts_and_dead_letters(db: Db) {
    failing_status_dead_letters(db, 502, &["--retry-after=0"]).await;
}

async fn failing_status_dead_letters(db: Db, status: u64, extra: &[&str]) {
    let t = unique("kp_dead");
    let _guard = TableGuard::new(&db, &t);
    db.orders(&t, 200).await;
    let fail_status = format!("--fail-status={status}");
    let mut args = vec!["--fail-percent=20", fail_status.as_str()];
    args.extend_from_slice(extra);
    let handler = Handler::start(0, &args);
    let _sidecar = Sidecar::start(&env(
        &db,
        &handler.url(),
        &t,
        &[("KIPPER_MAX_ATTEMPTS", "3")],
    ));
    wait_until("every row settled", LONG, async || {
        db.count(&format!(
            "SELECT COUNT(*) FROM {t} WHERE status <> 'pending'"
        ))
        .await
            == 200
    })
    .await;
    let keys = by_key(&handler.deliveries());
    let failing: Vec<_> = keys
        .values()
        .filter(|list| list.iter().all(|d| d.status == status))
        .collect();
    assert!(
        !failing.is_empty() && failing.len() < 200,
        "about 20% fail: {}",
        failing.len()
    );
    for list in &failing {
        assert_eq!(
            list.len(),
            3,
            "a failing row is tried exactly KIPPER_MAX_ATTEMPTS times"
        );
        let attempts: Vec<u64> = list.iter().map(|d| d.attempt).collect();
        assert!(
            attempts.contains(&1) && attempts.contains(&3),
            "attempt header counts: {attempts:?}"
        );
    }
    assert_eq!(db.with_status(&t, "failed").await, failing.len() as i64);
    assert_eq!(db.with_status(&t, "done").await, 200 - failing.len() as i64);
}

/// A handler slower than the delivery timeout: each attempt times out, is
/// retried, and the row is dead-lettered.
pub async fn timeouts_retried_then_dead_lettered(db: Db) {
    let t = unique("kp_slow");
    let _guard = TableGuard::new(&db, &t);
    db.orders(&t, 5).await;
    let handler = Handler::start(0, &["--delay-ms=600"]);
    let _sidecar = Sidecar::start(&env(
        &db,
        &handler.url(),
        &t,
        &[
            ("KIPPER_DELIVERY_TIMEOUT", "150ms"),
            ("KIPPER_MAX_ATTEMPTS", "2"),
        ],
    ));
    wait_until("rows dead-lettered", LONG, async || {
        db.with_status(&t, "failed").await == 5
    })
    .await;
    // The handler records an attempt when it finishes; give the last ones time.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let keys = by_key(&handler.deliveries());
    assert_eq!(keys.len(), 5);
    assert!(
        keys.values().all(|l| l.len() == 2),
        "two attempts each: {keys:?}"
    );
    assert_eq!(db.with_status(&t, "done").await, 0);
}

/// The handler is down (connection refused) for a while: nothing is
/// dead-lettered, everything is delivered once it is up.
pub async fn handler_down_for_a_while_loses_nothing(db: Db) {
    let t = unique("kp_down");
    let _guard = TableGuard::new(&db, &t);
    db.orders(&t, 300).await;
    let port = free_port();
    let target = format!("http://127.0.0.1:{port}/event");
    let _sidecar = Sidecar::start(&env(&db, &target, &t, &[("KIPPER_MAX_ATTEMPTS", "2")]));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        db.with_status(&t, "pending").await,
        300,
        "nothing consumed while the target is down"
    );
    let handler = Handler::start(port, &[]);
    wait_until("all rows done", LONG, async || {
        db.with_status(&t, "done").await == 300
    })
    .await;
    assert_eq!(db.with_status(&t, "failed").await, 0);
    assert_eq!(delivered_ids(&handler).len(), 300);
}

/// A handler answering 503 (failed to load) is not fed: only the first
/// batch is attempted, nothing is dead-lettered, and all is delivered once
/// it answers 200.
pub async fn not_ready_handler_is_not_fed(db: Db) {
    let t = unique("kp_503");
    let _guard = TableGuard::new(&db, &t);
    db.orders(&t, 300).await;
    let unready = Handler::start(0, &["--status=503", "--retry-after=0"]);
    let port = unready.port;
    let _sidecar = Sidecar::start(&env(
        &db,
        &unready.url(),
        &t,
        &[
            ("KIPPER_MAX_ATTEMPTS", "2"),
            ("KIPPER_BATCH_SIZE", "10"),
            ("KIPPER_CONCURRENCY", "4"),
        ],
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let attempted = by_key(&unready.deliveries()).len();
    assert!(
        attempted <= 10,
        "only what was in flight reached the unready handler: {attempted}"
    );
    assert_eq!(db.with_status(&t, "pending").await, 300);
    let ready = Handler::start_after(unready, port, &[]);
    wait_until("all rows done", LONG, async || {
        db.with_status(&t, "done").await == 300
    })
    .await;
    assert_eq!(db.with_status(&t, "failed").await, 0);
    assert_eq!(delivered_ids(&ready).len(), 300);
}

/// SIGKILL mid-batch, then a restart: every row delivered and marked done.
pub async fn sigkill_mid_batch_then_restart(db: Db) {
    let t = unique("kp_kill");
    let _guard = TableGuard::new(&db, &t);
    db.orders(&t, 1000).await;
    let handler = Handler::start(0, &["--delay-ms=5"]);
    let settings = env(
        &db,
        &handler.url(),
        &t,
        &[("KIPPER_BATCH_SIZE", "100"), ("KIPPER_CONCURRENCY", "16")],
    );
    let mut first = Sidecar::start(&settings);
    wait_until("some deliveries", LONG, async || {
        handler.deliveries().len() >= 200
    })
    .await;
    first.kill();
    let pending = db.with_status(&t, "pending").await;
    assert!(pending > 0, "killed mid-run, rows remain");
    let _second = Sidecar::start(&settings);
    wait_until("all rows done", LONG, async || {
        db.with_status(&t, "done").await == 1000
    })
    .await;
    assert_eq!(delivered_ids(&handler).len(), 1000, "every row delivered");
    let redelivered = handler.deliveries().len() - 1000;
    assert!(
        redelivered <= 100 + 2 * 100 + 16,
        "only what was held can come again: {redelivered}"
    );
}

/// Three sidecars on one query: every row delivered, none twice.
pub async fn three_sidecars_never_share_a_row(db: Db) {
    let t = unique("kp_three");
    let _guard = TableGuard::new(&db, &t);
    db.orders(&t, 1500).await;
    let handler = Handler::start(0, &["--delay-ms=1"]);
    let settings = env(
        &db,
        &handler.url(),
        &t,
        &[("KIPPER_BATCH_SIZE", "50"), ("KIPPER_CONCURRENCY", "8")],
    );
    let _sidecars: Vec<Sidecar> = (0..3).map(|_| Sidecar::start(&settings)).collect();
    wait_until("all rows done", LONG, async || {
        db.with_status(&t, "done").await == 1500
    })
    .await;
    let deliveries = handler.deliveries();
    assert_eq!(delivered_ids(&handler).len(), 1500);
    assert!(
        concurrent_duplicates(&deliveries).is_empty(),
        "a row was held by two sidecars at once"
    );
    let keys = by_key(&deliveries);
    let twice = keys.values().filter(|l| l.len() > 1).count();
    assert_eq!(
        twice,
        0,
        "no row delivered twice ({} deliveries)",
        deliveries.len()
    );
}

/// Row values that look like SQL stay values.
pub async fn row_values_are_inert(db: Db) {
    let t = unique("kp_inject");
    let _guard = TableGuard::new(&db, &t);
    db.orders(&t, 3).await;
    db.exec(&format!(
        "UPDATE {t} SET customer = '1; DROP TABLE {t}' WHERE id = 1"
    ))
    .await;
    db.exec(&format!(
        "UPDATE {t} SET customer = 'x''); DROP TABLE {t}; --' WHERE id = 2"
    ))
    .await;
    let handler = Handler::start(0, &[]);
    let mark_done = format!("UPDATE {t} SET status = 'done' WHERE customer = {{{{customer}}}}");
    let _sidecar = Sidecar::start(&env(
        &db,
        &handler.url(),
        &t,
        &[("KIPPER_MARK_DONE", &mark_done)],
    ));
    wait_until("all rows done", LONG, async || {
        db.with_status(&t, "done").await == 3
    })
    .await;
    assert_eq!(
        db.count(&format!("SELECT COUNT(*) FROM {t}")).await,
        3,
        "the table is still there, whole"
    );
    let customers: HashSet<String> = handler
        .deliveries()
        .iter()
        .filter_map(|d| d.body["customer"].as_str().map(String::from))
        .collect();
    assert!(
        customers.contains(&format!("1; DROP TABLE {t}")),
        "{customers:?}"
    );
}

/// SIGTERM: claiming stops, in-flight deliveries finish and are marked
/// done, the process exits 0; nothing delivered is left unmarked.
pub async fn sigterm_drains_in_flight(db: Db) {
    let t = unique("kp_term");
    let _guard = TableGuard::new(&db, &t);
    db.orders(&t, 200).await;
    let handler = Handler::start(0, &["--delay-ms=300"]);
    let mut sidecar = Sidecar::start(&env(
        &db,
        &handler.url(),
        &t,
        &[
            ("KIPPER_BATCH_SIZE", "8"),
            ("KIPPER_CONCURRENCY", "4"),
            ("KIPPER_SHUTDOWN_GRACE", "5s"),
        ],
    ));
    wait_until("deliveries under way", LONG, async || {
        !handler.deliveries().is_empty()
    })
    .await;
    let status = sidecar
        .terminate(Duration::from_secs(10))
        .expect("exits within the grace period");
    assert!(
        status.success(),
        "exit 0 after SIGTERM: {status:?}\n{}",
        sidecar.log()
    );
    let done: HashSet<i64> = db
        .ids(&format!("SELECT id FROM {t} WHERE status = 'done'"))
        .await
        .into_iter()
        .collect();
    assert_eq!(
        done,
        delivered_ids(&handler),
        "every delivered row marked done, nothing else"
    );
    assert!(done.len() < 200, "claiming stopped");
}

/// A mark-done naming a column the query lacks stops the start with one line.
pub async fn unknown_placeholder_column_is_one_line(db: Db) {
    let t = unique("kp_cfg");
    let _guard = TableGuard::new(&db, &t);
    db.orders(&t, 1).await;
    let query = format!("SELECT * FROM {t}");
    let mark_done = format!("UPDATE {t} SET status = 'done' WHERE id = {{{{nope}}}}");
    let (code, stderr) = super::run_to_exit(&[
        ("KIPPER_TRIGGER", db.trigger()),
        ("KIPPER_SOURCE_URL", db.url()),
        ("KIPPER_QUERY", &query),
        ("KIPPER_MARK_DONE", &mark_done),
        ("KIPPER_ADMIN_PORT", "0"),
    ]);
    assert_eq!(code, 2, "bad configuration: {stderr}");
    let line = stderr.trim();
    assert!(!line.contains('\n'), "one line: {line}");
    assert!(
        line.starts_with("kipper-poll: KIPPER_MARK_DONE: {{nope}} is not a column of KIPPER_QUERY"),
        "{line}"
    );
}

/// Without a mark-done (upstream behaviour, warned about at start): every
/// matching row is delivered again on every poll, never twice at once.
pub async fn without_mark_done_every_poll_delivers_again(db: Db) {
    let t = unique("kp_nomark");
    let _guard = TableGuard::new(&db, &t);
    db.orders(&t, 5).await;
    let handler = Handler::start(0, &[]);
    let mut settings = env(
        &db,
        &handler.url(),
        &t,
        &[("KIPPER_POLL_INTERVAL", "300ms")],
    );
    settings.retain(|(k, _)| k != "KIPPER_MARK_DONE" && k != "KIPPER_MARK_FAILED");
    let sidecar = Sidecar::start(&settings);
    wait_until("three polls", LONG, async || {
        handler.deliveries().len() >= 15
    })
    .await;
    let keys = by_key(&handler.deliveries());
    assert_eq!(keys.len(), 5, "the same five rows, each with a stable id");
    assert!(
        keys.values().all(|l| l.len() >= 2),
        "each row again on the next poll"
    );
    assert!(concurrent_duplicates(&handler.deliveries()).is_empty());
    assert!(
        sidecar
            .log()
            .contains("No KIPPER_MARK_DONE: every matching row is delivered again on every poll")
    );
    assert_eq!(db.with_status(&t, "pending").await, 5, "nothing marked");
}

/// A failing answer with `Retry-After` is retried no sooner than asked.
pub async fn retry_after_is_honoured(db: Db) {
    let t = unique("kp_retry_after");
    let _guard = TableGuard::new(&db, &t);
    db.orders(&t, 3).await;
    let handler = Handler::start(
        0,
        &["--fail-first=1", "--fail-status=429", "--retry-after=1"],
    );
    let _sidecar = Sidecar::start(&env(&db, &handler.url(), &t, &[]));
    wait_until("all rows done", LONG, async || {
        db.with_status(&t, "done").await == 3
    })
    .await;
    for (key, mut list) in by_key(&handler.deliveries()) {
        list.sort_by(|a, b| a.start.total_cmp(&b.start));
        assert_eq!(
            list.iter().map(|d| d.attempt).collect::<Vec<_>>(),
            vec![1, 2],
            "{key}"
        );
        let waited = list[1].start - list[0].end;
        assert!(
            waited >= 0.9,
            "Retry-After: 1 honoured, waited {waited:.3}s for {key}"
        );
    }
}

/// Without a mark-failed, a dead-lettered row is parked: logged, counted,
/// left pending in the table, and not retried again by this sidecar.
pub async fn dead_letter_without_mark_failed_parks_the_row(db: Db) {
    let t = unique("kp_park");
    let _guard = TableGuard::new(&db, &t);
    db.orders(&t, 4).await;
    let handler = Handler::start(0, &["--status=500"]);
    let mut settings = env(&db, &handler.url(), &t, &[("KIPPER_MAX_ATTEMPTS", "2")]);
    settings.retain(|(k, _)| k != "KIPPER_MARK_FAILED");
    let sidecar = Sidecar::start(&settings);
    wait_until("rows dead-lettered", LONG, async || {
        sidecar.log().matches("Event dead-lettered.").count() == 4
    })
    .await;
    // Several poll intervals later, still exactly two attempts per row.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let keys = by_key(&handler.deliveries());
    assert_eq!(keys.len(), 4);
    assert!(
        keys.values().all(|l| l.len() == 2),
        "parked rows are not retried: {keys:?}"
    );
    assert_eq!(
        db.with_status(&t, "pending").await,
        4,
        "the row stays in the source"
    );
}
