//! Black-box tests of the Redis trigger: the real kipper-poll binary, a real Redis
//! (127.0.0.1:6379, or `KIPPER_TEST_REDIS_URL`; `scripts/services.sh` starts one) and the real
//! python handler. Each test uses its own list name and deletes its keys.

// Helpers outside #[test] functions may unwrap too: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod event_fixture;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use event_fixture::{Handler, Sidecar, unique, wait_until};
use redis::AsyncCommands;
use serde_json::Value;

fn redis_url() -> String {
    std::env::var("KIPPER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn redis_con(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).unwrap();
    client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("Redis is required at {url} (run scripts/services.sh): {e}"))
}

/// A list with its keys removed when the test ends (also on panic).
struct TestList {
    name: String,
    url: String,
}

impl TestList {
    fn new(prefix: &str) -> Self {
        Self {
            name: unique(prefix),
            url: redis_url(),
        }
    }
}

impl Drop for TestList {
    fn drop(&mut self) {
        if let Ok(client) = redis::Client::open(self.url.as_str()) {
            if let Ok(mut con) = client.get_connection() {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("{}*", self.name))
                    .query(&mut con)
                    .unwrap_or_default();
                if !keys.is_empty() {
                    let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut con);
                }
            }
        }
    }
}

async fn push(con: &mut redis::aio::MultiplexedConnection, list: &str, items: &[Vec<u8>]) {
    for chunk in items.chunks(1000) {
        let _: () = con.rpush(list, chunk).await.unwrap();
    }
}

/// Items in the list plus items held in any consumer's processing list.
async fn backlog(con: &mut redis::aio::MultiplexedConnection, list: &str) -> usize {
    let mut total: usize = con.llen(list).await.unwrap();
    let processing: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{list}:processing:*"))
        .query_async(con)
        .await
        .unwrap();
    for key in processing {
        let n: usize = con.llen(&key).await.unwrap();
        total += n;
    }
    total
}

fn sidecar_env(list: &str, target: String, extra: &[(&str, &str)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("KIPPER_TRIGGER", "redis".to_owned()),
        ("KIPPER_REDIS_LIST", list.to_owned()),
        ("KIPPER_SOURCE_URL", redis_url()),
        ("KIPPER_TARGET_URL", target),
        ("KIPPER_POLL_INTERVAL", "200ms".to_owned()),
        ("KIPPER_REDIS_LEASE", "1s".to_owned()),
        ("KIPPER_BACKOFF_INITIAL", "10ms".to_owned()),
        ("KIPPER_BACKOFF_MAX", "50ms".to_owned()),
    ];
    for (k, v) in extra {
        let k: &'static str = Box::leak(k.to_string().into_boxed_str());
        env.retain(|(key, _)| *key != k);
        env.push((k, (*v).to_owned()));
    }
    env
}

fn numbered(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{{\"n\":{i}}}").into_bytes())
        .collect()
}

/// The `n` of every accepted delivery.
fn accepted_numbers(handler: &Handler) -> BTreeMap<u64, usize> {
    let mut seen = BTreeMap::new();
    for d in handler.accepted() {
        if let Some(n) = d["body"]["n"].as_u64() {
            *seen.entry(n).or_insert(0) += 1;
        }
    }
    seen
}

#[tokio::test]
async fn sigkill_mid_batch_then_restart_delivers_every_item() {
    let list = TestList::new("kp-kill");
    let mut con = redis_con(&list.url).await;
    let total = 3000;
    push(&mut con, &list.name, &numbered(total)).await;
    // A slow handler keeps a few hundred items held when the kill comes.
    let handler = Handler::start(&["--delay-ms", "5"]);
    let env = sidecar_env(&list.name, handler.url(), &[("KIPPER_BATCH_SIZE", "200")]);
    let mut first = Sidecar::start(&env);
    wait_until(
        Duration::from_secs(30),
        "the first deliveries",
        || async { handler.accepted().len() >= 300 },
        || first.log(),
    )
    .await;
    first.kill();
    let held: usize = {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:processing:*", list.name))
            .query_async(&mut con)
            .await
            .unwrap();
        let mut n = 0;
        for k in keys {
            let len: usize = con.llen(&k).await.unwrap();
            n += len;
        }
        n
    };
    assert!(
        held > 0,
        "the kill should catch items in the processing list"
    );
    let second = Sidecar::start(&env);
    wait_until(
        Duration::from_secs(60),
        "every item delivered after the restart",
        || async { accepted_numbers(&handler).len() == total },
        || {
            format!(
                "delivered {} of {total}\n{}",
                accepted_numbers(&handler).len(),
                second.log()
            )
        },
    )
    .await;
    let mut con2 = con.clone();
    wait_until(
        Duration::from_secs(10),
        "an empty backlog",
        || {
            let mut con = con2.clone();
            let name = list.name.clone();
            async move { backlog(&mut con, &name).await == 0 }
        },
        || second.log(),
    )
    .await;
    let dead: usize = con2.llen(format!("{}:dead", list.name)).await.unwrap();
    assert_eq!(dead, 0);
    assert!(
        second.log().contains("Returned items of dead consumers")
            || second.log().contains("recovered="),
        "{}",
        second.log()
    );
}

#[tokio::test]
async fn failing_items_end_in_the_dead_letter_list_after_the_attempts() {
    let list = TestList::new("kp-dead");
    let mut con = redis_con(&list.url).await;
    let total = 400;
    push(&mut con, &list.name, &numbered(total)).await;
    let handler = Handler::start(&["--fail-percent", "10"]);
    let env = sidecar_env(&list.name, handler.url(), &[("KIPPER_MAX_ATTEMPTS", "3")]);
    let sidecar = Sidecar::start(&env);
    let dead_list = format!("{}:dead", list.name);
    let mut con2 = con.clone();
    wait_until(
        Duration::from_secs(60),
        "the list drained",
        || {
            let mut con = con2.clone();
            let name = list.name.clone();
            async move { backlog(&mut con, &name).await == 0 }
        },
        || sidecar.log(),
    )
    .await;
    let deliveries = handler.deliveries();
    let mut by_key: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for d in &deliveries {
        by_key
            .entry(d["key"].as_str().unwrap().to_owned())
            .or_default()
            .push(d);
    }
    assert_eq!(by_key.len(), total, "every item was attempted");
    let failing: BTreeSet<u64> = by_key
        .values()
        .filter(|ds| ds.iter().all(|d| d["status"] == 500))
        .map(|ds| ds[0]["body"]["n"].as_u64().unwrap())
        .collect();
    assert!(
        failing.len() > total / 20 && failing.len() < total / 5,
        "about 10% fail: {}",
        failing.len()
    );
    for ds in by_key.values() {
        if ds[0]["status"] == 500 {
            assert_eq!(
                ds.len(),
                3,
                "a failing item is attempted exactly 3 times: {ds:?}"
            );
        } else {
            assert_eq!(ds.len(), 1, "a good item is delivered once: {ds:?}");
        }
    }
    let envelopes: Vec<String> = con2.lrange(&dead_list, 0, -1).await.unwrap();
    let mut dead_numbers = BTreeSet::new();
    for text in &envelopes {
        let doc: Value = serde_json::from_str(text).unwrap();
        assert_eq!(doc["attempts"], 3, "{doc}");
        assert!(
            doc["error"].as_str().unwrap().starts_with("HTTP 500"),
            "{doc}"
        );
        let item: Value = serde_json::from_str(doc["item"].as_str().unwrap()).unwrap();
        dead_numbers.insert(item["n"].as_u64().unwrap());
    }
    assert_eq!(
        envelopes.len(),
        failing.len(),
        "each failing item dead-lettered once"
    );
    assert_eq!(dead_numbers, failing);
    assert_eq!(accepted_numbers(&handler).len() + failing.len(), total);
}

#[tokio::test]
async fn three_consumers_never_deliver_an_item_concurrently_twice() {
    let list = TestList::new("kp-three");
    let mut con = redis_con(&list.url).await;
    let total = 3000;
    push(&mut con, &list.name, &numbered(total)).await;
    let handler = Handler::start(&["--delay-ms", "2"]);
    let env = sidecar_env(
        &list.name,
        handler.url(),
        &[("KIPPER_BATCH_SIZE", "50"), ("KIPPER_CONCURRENCY", "16")],
    );
    let sidecars: Vec<Sidecar> = (0..3).map(|_| Sidecar::start(&env)).collect();
    wait_until(
        Duration::from_secs(60),
        "every item delivered",
        || async { accepted_numbers(&handler).len() == total },
        || {
            sidecars
                .iter()
                .map(Sidecar::log)
                .collect::<Vec<_>>()
                .join("\n---\n")
        },
    )
    .await;
    let mut by_key: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for d in handler.deliveries() {
        let span = (d["start"].as_f64().unwrap(), d["end"].as_f64().unwrap());
        by_key
            .entry(d["key"].as_str().unwrap().to_owned())
            .or_default()
            .push(span);
    }
    for (key, mut spans) in by_key {
        spans.sort_by(|a, b| a.0.total_cmp(&b.0));
        for pair in spans.windows(2) {
            assert!(
                pair[1].0 >= pair[0].1,
                "{key} delivered concurrently twice: {spans:?}"
            );
        }
    }
    // Every consumer took a share: the three really competed for the list.
    for sidecar in &sidecars {
        assert!(
            sidecar.log().contains("Redis queue ready."),
            "{}",
            sidecar.log()
        );
    }
}

#[tokio::test]
async fn a_5_mb_item_and_non_json_items_arrive_intact() {
    let list = TestList::new("kp-big");
    let mut con = redis_con(&list.url).await;
    let blob = "x".repeat(5 * 1024 * 1024);
    let big = serde_json::json!({ "blob": blob }).to_string().into_bytes();
    let items = vec![
        big,
        b"plain text, not JSON".to_vec(),
        vec![0xff, 0xfe, 0x00, b'a'],
        b"[1, 2, 3]".to_vec(),
    ];
    push(&mut con, &list.name, &items).await;
    let handler = Handler::start(&[]);
    let sidecar = Sidecar::start(&sidecar_env(&list.name, handler.url(), &[]));
    wait_until(
        Duration::from_secs(30),
        "four deliveries",
        || async { handler.accepted().len() == 4 },
        || sidecar.log(),
    )
    .await;
    // Deliveries run concurrently: compare as a set, in any order.
    let mut bodies: Vec<Value> = handler
        .accepted()
        .into_iter()
        .map(|d| d["body"].clone())
        .collect();
    let big = bodies
        .iter()
        .position(|b| b.get("blob").is_some())
        .expect("the 5 MB item arrived");
    let big = bodies.remove(big);
    assert!(
        big["blob"].as_str() == Some(blob.as_str()),
        "the 5 MB item arrived intact"
    );
    for expected in [
        serde_json::json!({"data": "plain text, not JSON"}),
        serde_json::json!({"data": "//4AYQ==", "encoding": "base64"}),
        serde_json::json!([1, 2, 3]),
    ] {
        assert!(
            bodies.contains(&expected),
            "{expected} missing from {bodies:?}"
        );
    }
}

/// A private redis-server with a password, on a free port; killed on drop.
struct PrivateRedis {
    child: std::process::Child,
    port: u16,
}

impl PrivateRedis {
    fn start(password: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--requirepass", password])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/install-deps.sh)");
        Self { child, port }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn password_and_database_number_from_url_or_binding() {
    let password = "s3cret-p@ss";
    let server = PrivateRedis::start(password);
    let url = format!("redis://:s3cret-p%40ss@127.0.0.1:{}/5", server.port);
    let mut con = None;
    for _ in 0..50 {
        if let Ok(client) = redis::Client::open(url.as_str()) {
            if let Ok(c) = client.get_multiplexed_async_connection().await {
                con = Some(c);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut con = con.expect("private redis-server did not start");
    push(&mut con, "jobs", &numbered(20)).await;
    let handler = Handler::start(&[]);
    let mut env = sidecar_env("jobs", handler.url(), &[]);
    env.retain(|(k, _)| *k != "KIPPER_SOURCE_URL");
    env.push(("KIPPER_SOURCE_URL", url.clone()));
    let mut by_url = Sidecar::start(&env);
    wait_until(
        Duration::from_secs(20),
        "20 deliveries via the URL",
        || async { handler.accepted().len() == 20 },
        || by_url.log(),
    )
    .await;
    by_url.terminate();
    assert!(
        !by_url.log().contains(password),
        "the password must never be logged"
    );

    // The same through service-binding variables, the password from a Secret-backed variable.
    // The binding has no database number, so that sidecar works on db 0; db 5 keeps its items.
    push(&mut con, "jobs", &numbered(10)).await;
    env.retain(|(k, _)| *k != "KIPPER_SOURCE_URL");
    env.extend([
        ("REDIS_HOST", "127.0.0.1".to_owned()),
        ("REDIS_PORT", server.port.to_string()),
        ("REDIS_PASSWORD", password.to_owned()),
    ]);
    let mut db0 = redis::Client::open(format!(
        "redis://:s3cret-p%40ss@127.0.0.1:{}/0",
        server.port
    ))
    .unwrap()
    .get_multiplexed_async_connection()
    .await
    .unwrap();
    push(&mut db0, "jobs", &numbered(10)).await;
    let by_binding = Sidecar::start(&env);
    wait_until(
        Duration::from_secs(20),
        "10 more via the binding",
        || async { handler.accepted().len() == 30 },
        || by_binding.log(),
    )
    .await;
    assert!(!by_binding.log().contains(password));
    let left_in_db5: usize = con.llen("jobs").await.unwrap();
    assert_eq!(left_in_db5, 10, "db 5 is untouched by a sidecar on db 0");

    // A wrong password stops the process at start with one clear line and no secret.
    let mut wrong = env.clone();
    wrong.retain(|(k, _)| *k != "REDIS_PASSWORD");
    wrong.push(("REDIS_PASSWORD", "not-the-password".to_owned()));
    let mut refused = Sidecar::start(&wrong);
    let status = refused
        .wait_exit(Duration::from_secs(20))
        .expect("a wrong password must stop the sidecar");
    assert!(!status.success());
    let log = refused.log();
    assert!(
        log.contains("kipper-poll: redis: connecting to 127.0.0.1"),
        "{log}"
    );
    assert!(!log.contains("not-the-password"), "{log}");
}
