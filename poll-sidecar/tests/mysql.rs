//! Black-box tests of the mysql trigger: the real kipper-poll binary against
//! a real database and a real handler process (see support/scenarios.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::db::Db;
use support::scenarios;

#[tokio::test(flavor = "multi_thread")]
async fn drains_backlog_without_waiting() {
    scenarios::drains_backlog_without_waiting(Db::mysql().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_then_dead_letters() {
    scenarios::retries_then_dead_letters(Db::mysql().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn worker_died_502_counts_and_dead_letters() {
    scenarios::worker_died_502_counts_and_dead_letters(Db::mysql().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn timeouts_retried_then_dead_lettered() {
    scenarios::timeouts_retried_then_dead_lettered(Db::mysql().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn handler_down_for_a_while_loses_nothing() {
    scenarios::handler_down_for_a_while_loses_nothing(Db::mysql().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn not_ready_handler_is_not_fed() {
    scenarios::not_ready_handler_is_not_fed(Db::mysql().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_batch_then_restart() {
    scenarios::sigkill_mid_batch_then_restart(Db::mysql().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn three_sidecars_never_share_a_row() {
    scenarios::three_sidecars_never_share_a_row(Db::mysql().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn row_values_are_inert() {
    scenarios::row_values_are_inert(Db::mysql().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_in_flight() {
    scenarios::sigterm_drains_in_flight(Db::mysql().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_placeholder_column_is_one_line() {
    scenarios::unknown_placeholder_column_is_one_line(Db::mysql().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_mark_done_every_poll_delivers_again() {
    scenarios::without_mark_done_every_poll_delivers_again(Db::mysql().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_is_honoured() {
    scenarios::retry_after_is_honoured(Db::mysql().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letter_without_mark_failed_parks_the_row() {
    scenarios::dead_letter_without_mark_failed_parks_the_row(Db::mysql().await).await;
}

/// The sidecar's connections are killed mid-run (a lost connection): the
/// server frees its locks, the sidecar reconnects, nothing is lost.
#[tokio::test(flavor = "multi_thread")]
async fn lost_connection_mid_run_loses_nothing() {
    let db = Db::mysql().await;
    let t = support::unique("kp_lost");
    let _guard = support::db::TableGuard::new(&db, &t);
    db.orders(&t, 1000).await;
    // A user of its own tells this sidecar's connections from other tests'.
    db.exec(&format!("CREATE USER '{t}'@'%' IDENTIFIED BY 'pw'"))
        .await;
    db.exec(&format!("GRANT ALL ON test.* TO '{t}'@'%'")).await;
    let handler = support::Handler::start(0, &["--delay-ms=3"]);
    let url = db.url().replacen("root@", &format!("{t}:pw@"), 1);
    let env = scenarios::env(
        &db,
        &handler.url(),
        &t,
        &[
            ("KIPPER_SOURCE_URL", &url),
            ("KIPPER_BATCH_SIZE", "100"),
            ("KIPPER_CONCURRENCY", "16"),
        ],
    );
    let sidecar = support::Sidecar::start(&env);
    let long = std::time::Duration::from_secs(60);
    support::wait_until("some deliveries", long, async || {
        handler.deliveries().len() >= 200
    })
    .await;
    let ids = db
        .ids(&format!(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '{t}'"
        ))
        .await;
    assert_eq!(
        ids.len(),
        4,
        "the claim, watcher, writer and lease keeper connections"
    );
    for id in ids {
        db.exec(&format!("KILL {id}")).await;
    }
    support::wait_until("all rows done", long, async || {
        db.with_status(&t, "done").await == 1000
    })
    .await;
    let delivered: std::collections::HashSet<i64> = handler
        .deliveries()
        .iter()
        .filter_map(|d| d.body["id"].as_i64())
        .collect();
    assert_eq!(delivered.len(), 1000, "every row delivered");
    assert!(sidecar.log().contains("reconnecting"), "{}", sidecar.log());
    db.exec(&format!("DROP USER '{t}'@'%'")).await;
}

/// The type-mapping table of CONTRACT section 2, column by column.
#[tokio::test(flavor = "multi_thread")]
async fn row_types_map_to_json() {
    let db = Db::mysql().await;
    let t = support::unique("kp_types");
    let _guard = support::db::TableGuard::new(&db, &t);
    db.exec(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, i int, si smallint unsigned, big bigint unsigned, f float, \
         d double, amount decimal(30,9), small decimal(5,2), flag boolean, j json, dt datetime(6), ts timestamp NULL, \
         dd date, tm time, txt varchar(50), bl blob, vb varbinary(10), n int NULL, status varchar(20))"
    ))
    .await;
    db.exec("SET time_zone = '+00:00'").await;
    db.exec(&format!(
        "INSERT INTO {t} VALUES (1, -7, 65535, 18446744073709551615, 1.5, 2.25, 123456789012345678.123456789, \
         99.99, true, '{{\"a\": [1, 2]}}', '2026-01-02 03:04:05.123456', '2026-01-02 03:04:05', '2026-01-02', \
         '13:14:15', 'héllo \"q\"', x'00ff10', x'0102', NULL, 'pending')"
    ))
    .await;
    let handler = support::Handler::start(0, &[]);
    let env = scenarios::env(&db, &handler.url(), &t, &[]);
    let _sidecar = support::Sidecar::start(&env);
    support::wait_until(
        "the row delivered",
        std::time::Duration::from_secs(30),
        async || !handler.deliveries().is_empty(),
    )
    .await;
    let delivery = &handler.deliveries()[0];
    let expected = serde_json::json!({
        "id": 1, "i": -7, "si": 65535, "big": 18446744073709551615_u64, "f": 1.5, "d": 2.25,
        "amount": 123456789012345678.123456789_f64, "small": 99.99, "flag": true, "j": {"a": [1, 2]},
        "dt": "2026-01-02T03:04:05.123456Z", "ts": "2026-01-02T03:04:05Z", "dd": "2026-01-02", "tm": "13:14:15",
        "txt": "héllo \"q\"", "bl": "AP8Q", "vb": "AQI=", "n": null, "status": "pending"
    });
    assert_eq!(delivery.body, expected, "{}", delivery.raw);
    assert!(
        delivery
            .raw
            .contains(r#""amount":123456789012345678.123456789,"#),
        "{}",
        delivery.raw
    );
    assert!(
        delivery.raw.contains(r#""small":99.99,"#),
        "{}",
        delivery.raw
    );
}
