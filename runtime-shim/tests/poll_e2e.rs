//! Issue 13 end to end: the real kipper-poll in front of the real kipper-shim,
//! 200 PostgreSQL rows, one of which exits the handler's worker. The poison
//! row must be dead-lettered after `KIPPER_MAX_ATTEMPTS` while the 199 others
//! are done.
//!
//! Needs the `kipper-poll` binary (`KIPPER_POLL_BIN`, else the one `cargo test
//! --workspace` built beside kipper-shim), `psql` and PostgreSQL at
//! `KIPPER_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`);
//! without them the test fails and says what is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::{Shim, write};

fn postgres_url() -> String {
    std::env::var("KIPPER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn psql(sql: &str) -> Option<String> {
    let out = Command::new("psql")
        .args(["-qtA", "-v", "ON_ERROR_STOP=1", &postgres_url(), "-c", sql])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn kipper_poll() -> Option<PathBuf> {
    if let Ok(bin) = std::env::var("KIPPER_POLL_BIN") {
        return Some(bin.into());
    }
    let beside = PathBuf::from(env!("CARGO_BIN_EXE_kipper-shim")).with_file_name("kipper-poll");
    beside.is_file().then_some(beside)
}

/// Kills kipper-poll and drops the table, whatever the test's outcome.
struct Cleanup {
    poll: Option<Child>,
    table: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(poll) = &mut self.poll {
            let _ = poll.kill();
            let _ = poll.wait();
        }
        psql(&format!("DROP TABLE IF EXISTS {}", self.table));
    }
}

#[test]
fn kipper_poll_dead_letters_a_row_that_kills_the_worker_and_delivers_the_others() {
    let poll_bin = kipper_poll().expect(
        "no kipper-poll binary beside kipper-shim: run `cargo test --workspace` (or set KIPPER_POLL_BIN)",
    );
    assert!(
        psql("SELECT 1").is_some(),
        "psql cannot reach {}: start PostgreSQL (scripts/services.sh)",
        postgres_url()
    );
    let dir = tempfile::tempdir().unwrap();
    let node = write(
        dir.path(),
        "index.js",
        "module.exports = async (row) => { if (row.poison) process.exit(1); return { id: row.id }; };",
    );
    let python = write(
        dir.path(),
        "handler.py",
        "import os\ndef handler(row):\n    if row['poison']:\n        os._exit(1)\n    return {'id': row['id']}\n",
    );
    for (runtime, handler) in [("node", node), ("python", python)] {
        let table = format!("shim_poison_{runtime}_{}", std::process::id());
        let mut cleanup = Cleanup {
            poll: None,
            table: table.clone(),
        };
        psql(&format!(
            "DROP TABLE IF EXISTS {table}; \
             CREATE TABLE {table} (id int PRIMARY KEY, poison bool NOT NULL, status text NOT NULL DEFAULT 'pending'); \
             INSERT INTO {table} (id, poison) SELECT g, g = 77 FROM generate_series(1, 200) g"
        ))
        .expect("create the table");
        let shim = Shim::start(
            &handler,
            &[("KIPPER_WORKERS", "2"), ("KIPPER_TRIGGER", "postgres")],
        );
        let target = format!("http://127.0.0.1:{}", shim.port);
        let started = Instant::now();
        cleanup.poll = Some(
            Command::new(&poll_bin)
                .env("KIPPER_TRIGGER", "postgres")
                .env(
                    "KIPPER_SOURCE_URL",
                    format!("{}?sslmode=disable", postgres_url()),
                )
                .env(
                    "KIPPER_QUERY",
                    format!("SELECT * FROM {table} WHERE status = 'pending'"),
                )
                .env(
                    "KIPPER_MARK_DONE",
                    format!("UPDATE {table} SET status = 'done' WHERE id = {{{{id}}}}"),
                )
                .env(
                    "KIPPER_MARK_FAILED",
                    format!("UPDATE {table} SET status = 'failed' WHERE id = {{{{id}}}}"),
                )
                .env("KIPPER_MAX_ATTEMPTS", "3")
                .env("KIPPER_BACKOFF_INITIAL", "100ms")
                .env("KIPPER_BACKOFF_MAX", "1s")
                .env("KIPPER_POLL_INTERVAL", "200ms")
                .env("KIPPER_TARGET_URL", format!("{target}/event"))
                .env("KIPPER_TARGET_READY_URL", format!("{target}/ready"))
                .env("KIPPER_ADMIN_PORT", "0")
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start kipper-poll"),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        let count = |status: &str| -> u64 {
            psql(&format!(
                "SELECT count(*) FROM {table} WHERE status = '{status}'"
            ))
            .and_then(|n| n.parse().ok())
            .unwrap_or(u64::MAX)
        };
        while count("pending") != 0 {
            assert!(
                Instant::now() < deadline,
                "{runtime}: {} rows still pending after 30 s\n{}",
                count("pending"),
                shim.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        println!(
            "{runtime}: 199 done and the poison row dead-lettered in {:.2} s",
            started.elapsed().as_secs_f64()
        );
        assert_eq!((count("done"), count("failed")), (199, 1), "{runtime}");
        assert_eq!(
            psql(&format!("SELECT id FROM {table} WHERE status = 'failed'")).as_deref(),
            Some("77")
        );
        // One worker restart per attempt of the poison row, none more.
        let restarts = "kipper_shim_worker_restarts_total{reason=\"crash\"} 3\n";
        let deadline = Instant::now() + Duration::from_secs(2);
        while !shim.metrics().contains(restarts) {
            assert!(Instant::now() < deadline, "{runtime}: {}", shim.metrics());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
