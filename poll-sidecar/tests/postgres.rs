//! Black-box tests of the postgres trigger: the real kipper-poll binary against
//! a real database and a real handler process (see support/scenarios.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::db::Db;
use support::scenarios;

#[tokio::test(flavor = "multi_thread")]
async fn drains_backlog_without_waiting() {
    scenarios::drains_backlog_without_waiting(Db::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_then_dead_letters() {
    scenarios::retries_then_dead_letters(Db::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn worker_died_502_counts_and_dead_letters() {
    scenarios::worker_died_502_counts_and_dead_letters(Db::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn timeouts_retried_then_dead_lettered() {
    scenarios::timeouts_retried_then_dead_lettered(Db::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn handler_down_for_a_while_loses_nothing() {
    scenarios::handler_down_for_a_while_loses_nothing(Db::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn not_ready_handler_is_not_fed() {
    scenarios::not_ready_handler_is_not_fed(Db::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_batch_then_restart() {
    scenarios::sigkill_mid_batch_then_restart(Db::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn three_sidecars_never_share_a_row() {
    scenarios::three_sidecars_never_share_a_row(Db::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn row_values_are_inert() {
    scenarios::row_values_are_inert(Db::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_in_flight() {
    scenarios::sigterm_drains_in_flight(Db::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_placeholder_column_is_one_line() {
    scenarios::unknown_placeholder_column_is_one_line(Db::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_mark_done_every_poll_delivers_again() {
    scenarios::without_mark_done_every_poll_delivers_again(Db::postgres().await).await;
}

/// The sidecar's database session is killed mid-run (a lost connection):
/// the server frees its rows, the sidecar reconnects, nothing is lost.
#[tokio::test(flavor = "multi_thread")]
async fn lost_connection_mid_run_loses_nothing() {
    let db = Db::postgres().await;
    let t = support::unique("kp_lost");
    let _guard = support::db::TableGuard::new(&db, &t);
    db.orders(&t, 1000).await;
    let handler = support::Handler::start(0, &["--delay-ms=3"]);
    // The application name tells this sidecar's sessions from other tests'.
    let url = format!("{}?application_name={t}", db.url());
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
    let killed = db
        .count(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '{t}'"
        ))
        .await;
    assert_eq!(
        killed, 3,
        "the sidecar's claim, writer and lease keeper sessions were found and killed"
    );
    support::wait_until("all rows done", long, async || {
        db.with_status(&t, "done").await == 1000
    })
    .await;
    let ids: std::collections::HashSet<i64> = handler
        .deliveries()
        .iter()
        .filter_map(|d| d.body["id"].as_i64())
        .collect();
    assert_eq!(ids.len(), 1000, "every row delivered");
    assert!(sidecar.log().contains("reconnecting"), "{}", sidecar.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_is_honoured() {
    scenarios::retry_after_is_honoured(Db::postgres().await).await;
}

/// The admin port: /healthz, /readyz and /metrics with the delivery counters.
#[tokio::test(flavor = "multi_thread")]
async fn admin_port_serves_metrics_health_and_readiness() {
    let db = Db::postgres().await;
    let t = support::unique("kp_admin");
    let _guard = support::db::TableGuard::new(&db, &t);
    db.orders(&t, 20).await;
    let handler = support::Handler::start(0, &[]);
    let port = support::free_port();
    let env = scenarios::env(
        &db,
        &handler.url(),
        &t,
        &[("KIPPER_ADMIN_PORT", &port.to_string())],
    );
    let _sidecar = support::Sidecar::start(&env);
    let long = std::time::Duration::from_secs(30);
    support::wait_until("all rows done", long, async || {
        db.with_status(&t, "done").await == 20
    })
    .await;
    let get = |path: &str| support::http_get(port, path);
    support::wait_until("metrics flushed", long, async || {
        let metrics = get("/metrics");
        metrics.contains("kipper_poll_events_acked_total 20")
            && metrics.contains("kipper_poll_source_backlog 0")
    })
    .await;
    let metrics = get("/metrics");
    for line in [
        "kipper_poll_events_delivered_total 20",
        "kipper_poll_delivery_failures_total 0",
        "kipper_poll_events_dead_lettered_total 0",
        "kipper_poll_target_ready 1",
        "kipper_poll_source_backlog 0",
        "kipper_poll_delivery_duration_seconds_count 20",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    assert!(
        get("/healthz")
            .lines()
            .next()
            .unwrap_or("")
            .contains(" 200")
    );
    assert!(get("/readyz").lines().next().unwrap_or("").contains(" 200"));
    assert!(get("/nope").lines().next().unwrap_or("").contains(" 404"));
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letter_without_mark_failed_parks_the_row() {
    scenarios::dead_letter_without_mark_failed_parks_the_row(Db::postgres().await).await;
}

/// The type-mapping table of CONTRACT section 2, column by column.
#[tokio::test(flavor = "multi_thread")]
async fn row_types_map_to_json() {
    let db = Db::postgres().await;
    let t = support::unique("kp_types");
    let _guard = support::db::TableGuard::new(&db, &t);
    db.exec(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, i2 smallint, i4 integer, f4 real, f8 double precision, \
         amount numeric(30,9), small numeric, b boolean, j json, jb jsonb, ts timestamp, tstz timestamptz, d date, \
         tm time, u uuid, txt text, vc varchar(10), bin bytea, arr int[], tarr text[], grid int[][], ip inet, net cidr, span interval, n text, status text)"
    ))
    .await;
    db.exec(&format!(
        "INSERT INTO {t} VALUES (1, -2, 40000, 1.5, 2.25, 123456789012345678.123456789, 99.99, true, \
         '{{\"a\": [1, 2]}}', '{{\"b\": {{\"c\": null}}}}', '2026-01-02 03:04:05.123456', '2026-01-02 03:04:05+02', \
         '2026-01-02', '13:14:15', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'héllo \"q\"', 'v', '\\x00ff10', \
         '{{1,2,NULL}}', '{{\"a\",\"b\"}}', '{{{{1,2}},{{3,4}}}}', '10.0.0.1', '10.0.0.0/8', \
         '1 year 2 months 3 days 04:05:06.5', NULL, 'pending')"
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
        "id": 1, "i2": -2, "i4": 40000, "f4": 1.5, "f8": 2.25, "amount": 123456789012345678.123456789_f64,
        "small": 99.99, "b": true, "j": {"a": [1, 2]}, "jb": {"b": {"c": null}},
        "ts": "2026-01-02T03:04:05.123456Z", "tstz": "2026-01-02T01:04:05Z", "d": "2026-01-02", "tm": "13:14:15",
        "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "txt": "héllo \"q\"", "vc": "v", "bin": "AP8Q",
        "arr": [1, 2, null], "tarr": ["a", "b"], "grid": [[1, 2], [3, 4]], "ip": "10.0.0.1", "net": "10.0.0.0/8", "span": "P1Y2M3DT4H5M6.5S",
        "n": null, "status": "pending"
    });
    assert_eq!(delivery.body, expected, "{}", delivery.raw);
    // Exact digits, not a float's approximation.
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
