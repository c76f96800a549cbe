//! Bad configuration stops the real binary at start with exit code 2 and
//! one line on stderr naming the setting (no service needed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

fn refused(env: &[(&str, &str)], starts_with: &str) {
    let (code, stderr) = support::run_to_exit(env);
    assert_eq!(code, 2, "exit code 2 for bad config: {stderr}");
    let line = stderr.trim();
    assert_eq!(line.lines().count(), 1, "one line: {line}");
    assert!(
        line.starts_with(&format!("kipper-poll: {starts_with}")),
        "{line}"
    );
}

const PG: [(&str, &str); 3] = [
    ("KIPPER_TRIGGER", "postgres"),
    ("KIPPER_SOURCE_URL", "postgres://app:s3cret@127.0.0.1:1/db"),
    (
        "KIPPER_QUERY",
        "SELECT * FROM orders WHERE status = 'pending'",
    ),
];

fn pg_with(extra: (&'static str, &'static str)) -> Vec<(&'static str, &'static str)> {
    let mut env = PG.to_vec();
    env.push(extra);
    env
}

#[test]
fn unknown_trigger() {
    refused(
        &[("KIPPER_TRIGGER", "kafka")],
        "KIPPER_TRIGGER: unknown trigger \"kafka\"",
    );
}

#[test]
fn unparsable_duration() {
    refused(
        &pg_with(("KIPPER_POLL_INTERVAL", "5 minutes")),
        "KIPPER_POLL_INTERVAL:",
    );
}

#[test]
fn placeholder_in_a_comment() {
    refused(
        &pg_with((
            "KIPPER_MARK_DONE",
            "UPDATE orders SET status = 'done' WHERE id = 1 -- {{id}}",
        )),
        "KIPPER_MARK_DONE: a {{placeholder}} stands inside a comment",
    );
}

#[test]
fn placeholder_in_an_identifier() {
    refused(
        &pg_with((
            "KIPPER_MARK_DONE",
            "UPDATE \"{{table}}\" SET status = 'done'",
        )),
        "KIPPER_MARK_DONE: a {{placeholder}} stands inside a quoted identifier",
    );
}

#[test]
fn missing_query() {
    refused(
        &[
            ("KIPPER_TRIGGER", "mysql"),
            ("KIPPER_SOURCE_URL", "mysql://root@127.0.0.1/test"),
        ],
        "KIPPER_QUERY: required",
    );
}

#[test]
fn missing_trigger() {
    refused(&[], "KIPPER_TRIGGER: required");
}

/// Not configuration: an unreachable database is waited for (no exit, no
/// restart loop), logged with the address and the cause, never the password;
/// SIGTERM still stops the wait at once.
#[test]
fn unreachable_database_is_waited_for_without_the_password() {
    let env: Vec<(String, String)> = pg_with(("KIPPER_ADMIN_PORT", "0"))
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut sidecar = support::Sidecar::start(&env);
    let start = std::time::Instant::now();
    while !sidecar
        .log()
        .contains("postgres: cannot connect to 127.0.0.1:1 as user")
    {
        assert!(sidecar.exited().is_none(), "exited: {}", sidecar.log());
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "the address and the cause: {}",
            sidecar.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        sidecar.exited().is_none(),
        "still waiting: {}",
        sidecar.log()
    );
    let status = sidecar
        .terminate(std::time::Duration::from_secs(10))
        .expect("SIGTERM stops the wait");
    assert_eq!(status.code(), Some(0), "{}", sidecar.log());
    assert!(
        !sidecar.log().contains("s3cret"),
        "no credential in the output: {}",
        sidecar.log()
    );
}
