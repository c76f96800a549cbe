//! Unit tests of the configuration: every flag also reads its variable, and
//! every bad setting fails with one line that names it.

use super::*;
use std::collections::HashMap;

/// Parses as `main` does: a malformed value is the one line `main` prints.
fn parse(args: &[&str], vars: &[(&str, &str)]) -> std::result::Result<Config, String> {
    use clap::CommandFactory as _;
    let mut argv = vec!["kipper-poll"];
    argv.extend_from_slice(args);
    let parsed = Args::try_parse_from(argv)
        .map_err(|e| kipper_contract::command_line::one_line(&e, &Args::command()))?;
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    parsed
        .into_config(&move |k: &str| map.get(k).cloned())
        .map_err(|e| e.to_string())
}

fn error(args: &[&str]) -> String {
    let err = parse(args, &[])
        .expect_err("config should be refused")
        .to_string();
    assert!(!err.contains('\n'), "one line: {err}");
    err
}

const PG: [&str; 6] = [
    "--trigger=postgres",
    "--source-url=postgres://u:secret@db:5432/app",
    "--query",
    "SELECT * FROM orders WHERE status = 'pending'",
    "--mark-done",
    "UPDATE orders SET status = 'done' WHERE id = {{id}}",
];

#[test]
fn upstream_postgres_settings_work_as_flags() {
    let config = parse(&PG, &[]).unwrap();
    let SourceConfig::Postgres(sql) = &config.source else {
        panic!("{config:?}")
    };
    assert_eq!(sql.query, "SELECT * FROM orders WHERE status = 'pending'");
    assert_eq!(
        sql.mark_done.as_ref().unwrap().sql,
        "UPDATE orders SET status = 'done' WHERE id = $1"
    );
    assert_eq!(sql.connection.password.expose(), "secret");
    assert_eq!(
        config.delivery.target.to_string(),
        "http://localhost:8080/event"
    );
    assert_eq!(config.pump.poll_interval, Duration::from_secs(5));
    assert_eq!(config.function_name, "default");
    assert!(
        !format!("{config:?}").contains("secret"),
        "no credential in Debug output"
    );
}

#[test]
fn every_new_setting_parses() {
    let mut args = PG.to_vec();
    args.extend([
        "--concurrency=8",
        "--batch-size=100",
        "--delivery-timeout=2s",
        "--max-attempts=3",
        "--backoff-initial=10ms",
        "--backoff-max=1s",
        "--admin-port=0",
        "--poll-interval=250ms",
        "--shutdown-grace=3s",
        "--function-name=orders",
        "--mark-failed=UPDATE orders SET status = 'failed' WHERE id = {{id}}",
        "--target-url=http://127.0.0.1:9000/event",
        "--log-format=text",
    ]);
    let c = parse(&args, &[]).unwrap();
    assert_eq!(
        (
            c.delivery.concurrency,
            c.pump.batch_size,
            c.delivery.max_attempts
        ),
        (8, 100, 3)
    );
    assert_eq!(c.delivery.timeout, Duration::from_secs(2));
    assert_eq!(
        (c.delivery.backoff_initial, c.delivery.backoff_max),
        (Duration::from_millis(10), Duration::from_secs(1))
    );
    assert_eq!(
        (c.admin, c.pump.poll_interval, c.function_name.as_str()),
        (None, Duration::from_millis(250), "orders")
    );
    assert_eq!(c.log_format, LogFormat::Text);
}

#[test]
fn mysql_from_binding_variables_with_a_custom_prefix() {
    let c = parse(
        &[
            "--trigger=mysql",
            "--query=SELECT * FROM jobs",
            "--binding-prefix=EVENTS_",
        ],
        &[
            ("EVENTS_HOST", "maria"),
            ("EVENTS_USERNAME", "app"),
            ("EVENTS_PASSWORD", "pw"),
            ("EVENTS_NAME", "ev"),
        ],
    )
    .unwrap();
    let SourceConfig::Mysql(sql) = c.source else {
        panic!()
    };
    assert_eq!(
        (
            sql.connection.host.as_str(),
            sql.connection.port,
            sql.connection.database.as_str()
        ),
        ("maria", 3306, "ev")
    );
    assert!(sql.mark_done.is_none());
}

#[test]
fn redis_and_minio_settings() {
    let c = parse(
        &["--trigger=redis", "--redis-list=jobs"],
        &[("REDIS_HOST", "r"), ("REDIS_PASSWORD", "pw")],
    )
    .unwrap();
    let SourceConfig::Redis(r) = c.source else {
        panic!()
    };
    assert_eq!((r.list.as_str(), r.connection.host.as_str()), ("jobs", "r"));
    let c = parse(
        &[
            "--trigger=minio",
            "--minio-bucket=up",
            "--source-url=http://ak:sk@minio:9000",
            "--minio-webhook-port=9099",
        ],
        &[],
    )
    .unwrap();
    let SourceConfig::S3(s) = c.source else {
        panic!()
    };
    assert_eq!(
        (
            s.bucket.as_str(),
            s.webhook_port,
            s.connection.endpoint.as_str()
        ),
        ("up", 9099, "http://minio:9000")
    );
}

#[test]
fn bad_config_gets_one_line_naming_the_setting() {
    assert!(error(&["--trigger=kafka"]).starts_with("KIPPER_TRIGGER: unknown trigger \"kafka\""));
    assert!(error(&[]).starts_with("KIPPER_TRIGGER: required"));
    assert!(
        error(&["--trigger=postgres", "--source-url=postgres://h/db"])
            .starts_with("KIPPER_QUERY: required")
    );
    assert!(
        error(&["--trigger=redis", "--source-url=redis://h"])
            .starts_with("KIPPER_REDIS_LIST: required")
    );
    assert!(
        error(&["--trigger=minio", "--source-url=http://a:b@h:9000"])
            .starts_with("KIPPER_MINIO_BUCKET: required")
    );
    let mut args = PG.to_vec();
    args.push("--poll-interval=5");
    assert!(error(&args).starts_with("KIPPER_POLL_INTERVAL: \"5\" lacks a unit"));
    let mut args = PG.to_vec();
    args.push("--poll-interval=0");
    assert!(error(&args).starts_with("KIPPER_POLL_INTERVAL: must be more than 0"));
    let mut args = PG.to_vec();
    args.push("--delivery-timeout=soon");
    assert!(error(&args).starts_with("KIPPER_DELIVERY_TIMEOUT:"));
    let mut args = PG[..4].to_vec();
    args.extend([
        "--mark-done",
        "UPDATE orders SET status = 'done' WHERE id = 1 -- {{id}}",
    ]);
    assert!(
        error(&args).starts_with("KIPPER_MARK_DONE: a {{placeholder}} stands inside a comment")
    );
    let mut args = PG[..4].to_vec();
    args.extend(["--mark-done", "UPDATE \"{{table}}\" SET status = 'done'"]);
    assert!(
        error(&args)
            .starts_with("KIPPER_MARK_DONE: a {{placeholder}} stands inside a quoted identifier")
    );
    let mut args = PG.to_vec();
    args.push("--concurrency=0");
    assert!(error(&args).starts_with("KIPPER_CONCURRENCY:"));
    let mut args = PG.to_vec();
    args.push("--target-url=localhost:8080");
    assert!(error(&args).starts_with("KIPPER_TARGET_URL:"));
    assert!(
        error(&[
            "--trigger=postgres",
            "--query=DELETE FROM t",
            "--source-url=postgres://h/d"
        ])
        .starts_with("KIPPER_QUERY: must be a SELECT")
    );
}

const REDIS: [&str; 3] = [
    "--trigger=redis",
    "--redis-list=jobs",
    "--source-url=redis://cache:6379",
];
const MINIO: [&str; 3] = [
    "--trigger=minio",
    "--minio-bucket=up",
    "--source-url=http://ak:sk@minio:9000",
];

fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(extra).copied().collect()
}

#[test]
fn redis_queue_settings() {
    let SourceConfig::Redis(r) = parse(&REDIS, &[]).unwrap().source else {
        panic!()
    };
    assert_eq!(
        (r.dead_list, r.lease, r.consumer),
        (None, Duration::from_secs(15), None)
    );
    let args = with(
        &REDIS,
        &[
            "--redis-dead-list=jobs-failed",
            "--redis-lease=3s",
            "--redis-consumer=pod-a",
        ],
    );
    let SourceConfig::Redis(r) = parse(&args, &[]).unwrap().source else {
        panic!()
    };
    assert_eq!(r.dead_list.as_deref(), Some("jobs-failed"));
    assert_eq!(r.lease, Duration::from_secs(3));
    assert_eq!(r.consumer.as_deref(), Some("pod-a"));
}

#[test]
fn minio_poll_and_webhook_modes() {
    let SourceConfig::S3(s) = parse(&with(&MINIO, &["--function-name=thumbs"]), &[])
        .unwrap()
        .source
    else {
        panic!()
    };
    assert_eq!(s.consumer, "thumbs");
    let S3Mode::Poll {
        prefix,
        start_now,
        lease,
    } = s.mode
    else {
        panic!("{:?}", s.mode)
    };
    assert_eq!(
        (prefix.as_str(), start_now, lease),
        ("", false, Duration::from_secs(15))
    );
    let args = with(
        &MINIO,
        &[
            "--minio-prefix=in/",
            "--minio-start=now",
            "--minio-lease=5s",
        ],
    );
    let SourceConfig::S3(s) = parse(&args, &[]).unwrap().source else {
        panic!()
    };
    let S3Mode::Poll {
        prefix,
        start_now,
        lease,
    } = s.mode
    else {
        panic!()
    };
    assert_eq!(
        (prefix.as_str(), start_now, lease),
        ("in/", true, Duration::from_secs(5))
    );
    let args = with(
        &MINIO,
        &[
            "--minio-mode=webhook",
            "--minio-webhook-token=t0ken-value",
            "--minio-webhook-max-body=4096",
        ],
    );
    let config = parse(&args, &[]).unwrap();
    assert!(
        !format!("{config:?}").contains("t0ken-value"),
        "the token never prints"
    );
    let SourceConfig::S3(s) = config.source else {
        panic!()
    };
    let S3Mode::Webhook {
        token,
        max_body,
        timeout,
    } = s.mode
    else {
        panic!()
    };
    assert_eq!(
        (token.expose(), max_body, timeout),
        ("t0ken-value", 4096, Duration::from_secs(30))
    );
}

#[test]
fn bad_redis_and_minio_settings_get_one_line_naming_the_setting() {
    let cases: [(Vec<&str>, &str); 7] = [
        (
            with(&REDIS, &["--redis-lease=soon"]),
            "KIPPER_REDIS_LEASE: ",
        ),
        (with(&REDIS, &["--redis-lease=0s"]), "KIPPER_REDIS_LEASE: "),
        (
            with(&MINIO, &["--minio-mode=push"]),
            "KIPPER_MINIO_MODE: \"push\" is not poll or webhook",
        ),
        (
            with(&MINIO, &["--minio-mode=webhook"]),
            "KIPPER_MINIO_WEBHOOK_TOKEN: required in webhook mode",
        ),
        (
            with(&MINIO, &["--minio-start=later"]),
            "KIPPER_MINIO_START: \"later\" is not all or now",
        ),
        (with(&MINIO, &["--minio-lease=0s"]), "KIPPER_MINIO_LEASE: "),
        (
            with(
                &MINIO,
                &[
                    "--minio-mode=webhook",
                    "--minio-webhook-token=t",
                    "--minio-webhook-max-body=10",
                ],
            ),
            "KIPPER_MINIO_WEBHOOK_MAX_BODY: ",
        ),
    ];
    for (args, expected) in cases {
        let err = error(&args);
        assert!(err.starts_with(expected), "{args:?}: {err}");
    }
}

#[test]
fn shared_settings_follow_the_convention_of_the_three_binaries() {
    let c = parse(&PG, &[]).unwrap();
    assert_eq!(c.log_format, LogFormat::Json, "json by default");
    assert_eq!(c.pump.shutdown_grace, Duration::from_secs(20));
    assert_eq!(c.admin.map(|a| a.port()), Some(9091));
    // KIPPER_SHUTDOWN_GRACE takes a bare number as seconds, as in kipper-shim and
    // kipper-controller; the upstream durations still want a unit.
    let c = parse(&with(&PG, &["--shutdown-grace=7"]), &[]).unwrap();
    assert_eq!(c.pump.shutdown_grace, Duration::from_secs(7));
    let c = parse(&with(&PG, &["--shutdown-grace=1m"]), &[]).unwrap();
    assert_eq!(c.pump.shutdown_grace, Duration::from_secs(60));
}

#[test]
fn malformed_numbers_and_formats_are_one_line_naming_the_variable() {
    for (extra, expected) in [
        (
            "--concurrency=many",
            "KIPPER_CONCURRENCY: invalid value 'many' for '--concurrency <CONCURRENCY>': invalid digit found in string",
        ),
        (
            "--admin-port=70000",
            "KIPPER_ADMIN_PORT: invalid value '70000' for '--admin-port <ADMIN_PORT>': 70000 is not in 0..=65535",
        ),
        (
            "--log-format=xml",
            "KIPPER_LOG_FORMAT: \"xml\" is not json or text",
        ),
        (
            "--shutdown-grace=soon",
            "KIPPER_SHUTDOWN_GRACE: \"soon\" is not a duration; write e.g. 5s, 500ms or 1m30s",
        ),
        (
            "--backoff-max=3",
            "KIPPER_BACKOFF_MAX: \"3\" lacks a unit; write e.g. 3s or 3ms",
        ),
    ] {
        assert_eq!(error(&with(&PG, &[extra])), expected, "{extra}");
    }
}
