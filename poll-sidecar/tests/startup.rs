//! What a user sees when kipper-poll cannot start, through the real binary:
//! the exact line, the exit code (2 bad configuration), a source that cannot
//! be reached waited for (no exit, `/readyz` 503), the JSON log line as one object with distinct keys, and no
//! password anywhere. The connection tests use closed local ports and the
//! real local PostgreSQL and MariaDB (scripts/services.sh); a missing server
//! fails them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// Runs kipper-poll with `args` and exactly `env` to its exit: (code, stdout, stderr).
fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kipper-poll"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A local port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The keys of one JSON object in the order written, duplicates kept
/// (`serde_json::Value` would silently keep only the last of a duplicate).
fn keys_of(line: &str) -> Vec<String> {
    struct Keys(Vec<String>);
    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visitor;
            impl<'de> serde::de::Visitor<'de> for Visitor {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Keys, A::Error> {
                    let mut keys = Vec::new();
                    while let Some((key, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                        keys.push(key);
                    }
                    Ok(Keys(keys))
                }
            }
            d.deserialize_map(Visitor)
        }
    }
    serde_json::from_str::<Keys>(line)
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"))
        .0
}

/// Bad configuration: exit code 2, exactly `line` on stderr, nothing on stdout.
fn refused(args: &[&str], env: &[(&str, &str)], line: &str) {
    let (code, stdout, stderr) = run(args, env);
    assert_eq!(code, 2, "exit code 2 for bad configuration: {stderr}");
    assert_eq!(stderr, format!("{line}\n"), "exactly one line on stderr");
    assert_eq!(stdout, "", "nothing on stdout");
}

/// A source that cannot be reached at start is an outage to wait out, not an
/// exit (a restart loop in Kubernetes): the sidecar keeps running, logs one
/// JSON warning whose `error` begins with `error` (and no more than one more per
/// [`kipper_poll::health::LOG_EVERY`]), answers 503 on `/readyz` with the
/// error, shows `kipper_poll_source_up 0`, and stops cleanly on SIGTERM. The
/// password appears nowhere.
fn waits_for_the_source(env: &[(&str, &str)], error: &str) {
    let admin = support::free_port().to_string();
    let mut env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.push(("KIPPER_ADMIN_PORT".into(), admin.clone()));
    env.push(("KIPPER_POLL_INTERVAL".into(), "300ms".into()));
    let mut sidecar = support::Sidecar::start(&env);
    let port: u16 = admin.parse().unwrap();
    let start = std::time::Instant::now();
    let warning = loop {
        let found = sidecar
            .log()
            .lines()
            .find(|l| l.contains("Source unreachable"))
            .map(str::to_owned);
        if let Some(line) = found {
            break line;
        }
        assert!(sidecar.exited().is_none(), "exited: {}", sidecar.log());
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no warning: {}",
            sidecar.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let keys = keys_of(&warning);
    let mut distinct = keys.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), keys.len(), "distinct keys: {keys:?}");
    let json: Value = serde_json::from_str(&warning).unwrap();
    assert_eq!(json["level"], "WARN");
    let said = json["error"].as_str().unwrap_or_default();
    assert!(
        said.starts_with(error),
        "error {said:?}, expected {error:?}"
    );
    // Several retries later: still running, still reporting the outage.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(sidecar.exited().is_none(), "exited: {}", sidecar.log());
    let ready = support::http_get(port, "/readyz");
    assert!(
        ready.starts_with("HTTP/1.0 503") || ready.starts_with("HTTP/1.1 503"),
        "{ready}"
    );
    assert!(ready.contains("SourceUnreachable"), "{ready}");
    let metrics = support::http_get(port, "/metrics");
    assert!(metrics.contains("kipper_poll_source_up 0"), "{metrics}");
    let log = sidecar.log();
    assert!(
        !log.contains("s3cret") && !ready.contains("s3cret"),
        "no password: {log}"
    );
    assert!(
        log.lines().filter(|l| l.contains("unreachable")).count() <= 2,
        "rate-limited log: {log}"
    );
    let status = sidecar
        .terminate(Duration::from_secs(10))
        .expect("stops on SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", sidecar.log());
}

#[test]
fn a_malformed_command_line_is_one_line() {
    refused(
        &["--no-such-flag"],
        &[],
        "kipper-poll: unexpected argument '--no-such-flag' found; see kipper-poll --help",
    );
}

#[test]
fn help_exits_zero() {
    let (code, stdout, _) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    assert!(stdout.contains("KIPPER_TRIGGER"), "{stdout}");
}

#[test]
fn tls_required_by_the_url_is_refused_before_anything_listens() {
    // The admin port is a free one: were it opened first, the refusal would come later.
    let admin = support::free_port().to_string();
    refused(
        &[],
        &[
            ("KIPPER_TRIGGER", "postgres"),
            (
                "KIPPER_SOURCE_URL",
                "postgres://app:s3cret@127.0.0.1:5432/shop?sslmode=require",
            ),
            ("KIPPER_QUERY", "SELECT * FROM orders"),
            ("KIPPER_ADMIN_PORT", &admin),
        ],
        "kipper-poll: KIPPER_SOURCE_URL: sslmode=require: TLS to the database is not supported yet; use sslmode=disable (or prefer)",
    );
    refused(
        &[],
        &[
            ("KIPPER_TRIGGER", "mysql"),
            (
                "KIPPER_SOURCE_URL",
                "mysql://app:s3cret@127.0.0.1:3306/shop?ssl-mode=REQUIRED",
            ),
            ("KIPPER_QUERY", "SELECT * FROM orders"),
        ],
        "kipper-poll: KIPPER_SOURCE_URL: ssl-mode=REQUIRED: TLS to the database is not supported yet; use ssl-mode=DISABLED",
    );
}

#[test]
fn a_query_the_database_refuses_is_bad_configuration() {
    let table = support::unique("kp_missing");
    let query = format!("SELECT * FROM {table}");
    refused(
        &[],
        &[
            ("KIPPER_TRIGGER", "postgres"),
            (
                "KIPPER_SOURCE_URL",
                "postgres://postgres@127.0.0.1:5432/postgres",
            ),
            ("KIPPER_QUERY", &query),
            (
                "KIPPER_MARK_DONE",
                "UPDATE x SET done = true WHERE id = {{id}}",
            ),
        ],
        &format!(
            "kipper-poll: KIPPER_QUERY: PostgreSQL refuses the query: relation \"{table}\" does not exist"
        ),
    );
    refused(
        &[],
        &[
            ("KIPPER_TRIGGER", "mysql"),
            ("KIPPER_SOURCE_URL", "mysql://root@127.0.0.1:3306/mysql"),
            ("KIPPER_QUERY", &query),
            (
                "KIPPER_MARK_DONE",
                "UPDATE x SET done = 1 WHERE id = {{id}}",
            ),
        ],
        &format!(
            "kipper-poll: KIPPER_QUERY: the database refuses the query: Table 'mysql.{table}' doesn't exist"
        ),
    );
}

#[test]
fn an_unknown_placeholder_is_bad_configuration() {
    refused(
        &[],
        &[
            ("KIPPER_TRIGGER", "postgres"),
            (
                "KIPPER_SOURCE_URL",
                "postgres://postgres@127.0.0.1:5432/postgres",
            ),
            ("KIPPER_QUERY", "SELECT 1 AS id, 'new' AS status"),
            ("KIPPER_MARK_DONE", "SELECT {{nope}}"),
        ],
        "kipper-poll: KIPPER_MARK_DONE: {{nope}} is not a column of KIPPER_QUERY (it has: id, status)",
    );
}

#[test]
fn postgres_on_a_closed_port() {
    let port = closed_port();
    let url = format!("postgres://app:s3cret@127.0.0.1:{port}/shop");
    waits_for_the_source(
        &[
            ("KIPPER_TRIGGER", "postgres"),
            ("KIPPER_SOURCE_URL", &url),
            ("KIPPER_QUERY", "SELECT * FROM orders"),
        ],
        &format!(
            "postgres: cannot connect to 127.0.0.1:{port} as user \"app\", database \"shop\": Connection refused (os error 111); check the host and port in KIPPER_SOURCE_URL (or the binding's HOST and PORT) and that the server is running"
        ),
    );
}

#[test]
fn postgres_unknown_host() {
    waits_for_the_source(
        &[
            ("KIPPER_TRIGGER", "postgres"),
            (
                "KIPPER_SOURCE_URL",
                "postgres://app:s3cret@no-such-host.invalid/shop",
            ),
            ("KIPPER_QUERY", "SELECT * FROM orders"),
        ],
        "postgres: cannot connect to no-such-host.invalid:5432 as user \"app\", database \"shop\": failed to lookup address information: Name or service not known; check the host and port in KIPPER_SOURCE_URL (or the binding's HOST and PORT) and that the server is running",
    );
}

#[test]
fn postgres_unknown_user_and_database() {
    let user = support::unique("kp_nobody");
    let url = format!("postgres://{user}:s3cret@127.0.0.1:5432/postgres");
    waits_for_the_source(
        &[
            ("KIPPER_TRIGGER", "postgres"),
            ("KIPPER_SOURCE_URL", &url),
            ("KIPPER_QUERY", "SELECT 1 AS id"),
        ],
        &format!(
            "postgres: cannot connect to 127.0.0.1:5432 as user \"{user}\", database \"postgres\": role \"{user}\" does not exist; check the user and password in KIPPER_SOURCE_URL (or the binding's USERNAME and PASSWORD)"
        ),
    );
    let database = support::unique("kp_nodb");
    let url = format!("postgres://postgres@127.0.0.1:5432/{database}");
    waits_for_the_source(
        &[
            ("KIPPER_TRIGGER", "postgres"),
            ("KIPPER_SOURCE_URL", &url),
            ("KIPPER_QUERY", "SELECT 1 AS id"),
        ],
        &format!(
            "postgres: cannot connect to 127.0.0.1:5432 as user \"postgres\", database \"{database}\": database \"{database}\" does not exist; check the database name, the path of KIPPER_SOURCE_URL (or the binding's NAME), and that it was created"
        ),
    );
}

#[test]
fn mysql_on_a_closed_port() {
    let port = closed_port();
    let url = format!("mysql://app:s3cret@127.0.0.1:{port}/shop");
    waits_for_the_source(
        &[
            ("KIPPER_TRIGGER", "mysql"),
            ("KIPPER_SOURCE_URL", &url),
            ("KIPPER_QUERY", "SELECT * FROM orders"),
        ],
        &format!(
            "mysql: cannot connect to 127.0.0.1:{port} as user \"app\", database \"shop\": Connection refused (os error 111); check the host and port in KIPPER_SOURCE_URL (or the binding's HOST and PORT) and that the server is running"
        ),
    );
}

#[test]
fn mysql_wrong_password_and_unknown_database() {
    // root has no password on the test server: any password is wrong.
    waits_for_the_source(
        &[
            ("KIPPER_TRIGGER", "mysql"),
            (
                "KIPPER_SOURCE_URL",
                "mysql://root:s3cret@127.0.0.1:3306/mysql",
            ),
            ("KIPPER_QUERY", "SELECT 1 AS id"),
        ],
        "mysql: cannot connect to 127.0.0.1:3306 as user \"root\", database \"mysql\": Access denied for user 'root'@'127.0.0.1' (using password: YES) (error 1045); check the user and password in KIPPER_SOURCE_URL (or the binding's USERNAME and PASSWORD)",
    );
    let database = support::unique("kp_nodb");
    let url = format!("mysql://root@127.0.0.1:3306/{database}");
    waits_for_the_source(
        &[
            ("KIPPER_TRIGGER", "mysql"),
            ("KIPPER_SOURCE_URL", &url),
            ("KIPPER_QUERY", "SELECT 1 AS id"),
        ],
        &format!(
            "mysql: cannot connect to 127.0.0.1:3306 as user \"root\", database \"{database}\": Unknown database '{database}' (error 1049); check the database name, the path of KIPPER_SOURCE_URL (or the binding's NAME), and that it was created"
        ),
    );
}

#[test]
fn redis_on_a_closed_port_and_s3_on_a_closed_port() {
    let port = closed_port();
    let url = format!("redis://:s3cret@127.0.0.1:{port}/0");
    waits_for_the_source(
        &[
            ("KIPPER_TRIGGER", "redis"),
            ("KIPPER_SOURCE_URL", &url),
            ("KIPPER_REDIS_LIST", "kp_startup_jobs"),
        ],
        &format!("redis: connecting to 127.0.0.1:{port} (db 0): "),
    );
    let url = format!("http://key:s3cret@127.0.0.1:{port}");
    waits_for_the_source(
        &[
            ("KIPPER_TRIGGER", "minio"),
            ("KIPPER_SOURCE_URL", &url),
            ("KIPPER_MINIO_BUCKET", "kp-startup"),
        ],
        "s3: ",
    );
}

/// Starts kipper-poll in MinIO webhook mode (it needs no server), stops it
/// with SIGTERM once it logged its first line, checks exit code 0 and returns
/// every stderr line.
fn lines_of_a_start(format: &str) -> Vec<String> {
    let port = support::free_port().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kipper-poll"))
        .env_clear()
        .envs([
            ("KIPPER_TRIGGER", "minio"),
            ("KIPPER_MINIO_MODE", "webhook"),
            ("KIPPER_MINIO_BUCKET", "uploads"),
            ("KIPPER_MINIO_WEBHOOK_TOKEN", "s3cret"),
            ("KIPPER_MINIO_WEBHOOK_PORT", &port),
            ("KIPPER_ADMIN_PORT", "0"),
            ("KIPPER_LOG_FORMAT", format),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut lines = vec![String::new()];
    stderr.read_line(&mut lines[0]).unwrap();
    // kill(1) rather than libc: unsafe code is forbidden in the workspace.
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    // Read to the end (the pipe closes when the process exits): a closed
    // pipe would make its next log line fail.
    lines.extend(stderr.lines().map(Result::unwrap));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        status.code(),
        Some(0),
        "a clean shutdown exits 0: {lines:?}"
    );
    lines
}

#[test]
fn json_log_lines_are_one_object_each_with_distinct_keys() {
    let lines = lines_of_a_start("json");
    for line in &lines {
        let keys = keys_of(line.trim());
        let mut distinct = keys.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), keys.len(), "distinct keys: {keys:?}");
    }
    let json: Value = serde_json::from_str(lines[0].trim()).unwrap();
    assert_eq!(json["message"], "kipper-poll starting.", "{lines:?}");
    assert_eq!(json["target_url"], "http://localhost:8080/event");
    assert_eq!(json["target"], "kipper_poll", "the tracing target");
}

#[test]
fn text_logs_into_a_pipe_carry_no_colour_codes() {
    let lines = lines_of_a_start("text");
    assert!(lines[0].contains("kipper-poll starting."), "{lines:?}");
    assert!(
        lines.iter().all(|l| !l.contains('\u{1b}')),
        "no ANSI escape: {lines:?}"
    );
}
