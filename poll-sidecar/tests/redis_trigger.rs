//! Black-box tests of the Redis trigger: the real kipper-poll binary, a real Redis
//! (127.0.0.1:6379, or `KIPPER_TEST_REDIS_URL`; `scripts/services.sh` starts one) and the real
//! handler process of `tests/handler.py`. Each test uses its own list name and deletes its keys.
// Helpers outside #[test] functions may unwrap too: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use redis::AsyncCommands;
use serde_json::{Value, json};
use support::{
    Delivery, Handler, Sidecar, base_env, by_key, concurrent_duplicates, unique, wait_until,
};

const LONG: Duration = Duration::from_secs(60);

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

/// A list whose keys are all removed when the test ends (also on panic).
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
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut con) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.name))
            .query(&mut con)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut con);
        }
    }
}

async fn push(con: &mut redis::aio::MultiplexedConnection, list: &str, items: &[Vec<u8>]) {
    for chunk in items.chunks(1000) {
        let _: () = con.rpush(list, chunk).await.unwrap();
    }
}

/// Items in this consumer-independent view: the list plus every processing list.
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

fn settings(list: &str, target: &str, url: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = base_env("redis", url, target);
    env.push(("KIPPER_REDIS_LIST".into(), list.into()));
    env.push(("KIPPER_REDIS_LEASE".into(), "1s".into()));
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push(((*k).into(), (*v).into()));
    }
    env
}

fn numbered(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{{\"n\":{i}}}").into_bytes())
        .collect()
}

fn accepted(handler: &Handler) -> Vec<Delivery> {
    handler
        .deliveries()
        .into_iter()
        .filter(|d| d.status < 300)
        .collect()
}

/// How often each `n` was accepted.
fn accepted_numbers(handler: &Handler) -> BTreeMap<u64, usize> {
    let mut seen = BTreeMap::new();
    for d in accepted(handler) {
        if let Some(n) = d.body["n"].as_u64() {
            *seen.entry(n).or_insert(0) += 1;
        }
    }
    seen
}

#[tokio::test]
async fn sigkill_mid_batch_then_restart_delivers_every_item() {
    let list = TestList::new("kp_kill");
    let mut con = redis_con(&list.url).await;
    let total = 3000;
    push(&mut con, &list.name, &numbered(total)).await;
    // A slow handler keeps a few hundred items held when the kill comes.
    let handler = Handler::start(0, &["--delay-ms=5"]);
    let env = settings(
        &list.name,
        &handler.url(),
        &list.url,
        &[("KIPPER_BATCH_SIZE", "200")],
    );
    let mut first = Sidecar::start(&env);
    wait_until("the first deliveries", LONG, async || {
        accepted(&handler).len() >= 300
    })
    .await;
    first.kill();
    let held =
        backlog(&mut con, &list.name).await - con.llen::<_, usize>(&list.name).await.unwrap();
    assert!(
        held > 0,
        "the kill should catch items in the processing list"
    );
    let second = Sidecar::start(&env);
    wait_until("every item delivered after the restart", LONG, async || {
        accepted_numbers(&handler).len() == total
    })
    .await;
    wait_until("an empty backlog", LONG, async || {
        backlog(&mut con, &list.name).await == 0
    })
    .await;
    let dead: usize = con.llen(format!("{}:dead", list.name)).await.unwrap();
    assert_eq!(dead, 0);
    // Recovered at start (the lease had expired) or by the heartbeat task a moment later.
    let log = second.log();
    let at_start = log
        .lines()
        .any(|l| l.contains("Redis queue ready.") && !l.contains("recovered=0"));
    assert!(
        at_start || log.contains("Returned items of dead consumers"),
        "{log}"
    );
    let redelivered = accepted(&handler).len() - total;
    assert!(
        redelivered <= held,
        "only what was held comes again: {redelivered} > {held}"
    );
}

#[tokio::test]
async fn failing_items_end_in_the_dead_letter_list_after_the_attempts() {
    let list = TestList::new("kp_dead");
    let mut con = redis_con(&list.url).await;
    let total = 400;
    push(&mut con, &list.name, &numbered(total)).await;
    let handler = Handler::start(0, &["--fail-percent=10"]);
    let _sidecar = Sidecar::start(&settings(
        &list.name,
        &handler.url(),
        &list.url,
        &[("KIPPER_MAX_ATTEMPTS", "3")],
    ));
    wait_until("the list drained", LONG, async || {
        backlog(&mut con, &list.name).await == 0
    })
    .await;
    let deliveries = handler.deliveries();
    let keys = by_key(&deliveries);
    assert_eq!(keys.len(), total, "every item was attempted");
    let mut failing = BTreeSet::new();
    for list in keys.values() {
        if list[0].status == 500 {
            assert_eq!(
                list.len(),
                3,
                "a failing item is attempted exactly 3 times: {list:?}"
            );
            assert!(list.iter().all(|d| d.status == 500));
            failing.insert(list[0].body["n"].as_u64().unwrap());
        } else {
            assert_eq!(list.len(), 1, "a good item is delivered once: {list:?}");
        }
    }
    assert!(
        failing.len() > total / 20 && failing.len() < total / 5,
        "about 10% fail: {}",
        failing.len()
    );
    let envelopes: Vec<String> = con
        .lrange(format!("{}:dead", list.name), 0, -1)
        .await
        .unwrap();
    let mut dead = BTreeSet::new();
    for text in &envelopes {
        let doc: Value = serde_json::from_str(text).unwrap();
        assert_eq!(doc["attempts"], 3, "{doc}");
        assert!(
            doc["error"].as_str().unwrap().starts_with("HTTP 500"),
            "{doc}"
        );
        let item: Value = serde_json::from_str(doc["item"].as_str().unwrap()).unwrap();
        dead.insert(item["n"].as_u64().unwrap());
    }
    assert_eq!(
        envelopes.len(),
        failing.len(),
        "each failing item dead-lettered once"
    );
    assert_eq!(dead, failing);
    assert_eq!(accepted_numbers(&handler).len() + failing.len(), total);
}

#[tokio::test]
async fn three_consumers_never_deliver_an_item_concurrently_twice() {
    let list = TestList::new("kp_three");
    let mut con = redis_con(&list.url).await;
    let total = 3000;
    push(&mut con, &list.name, &numbered(total)).await;
    let handler = Handler::start(0, &["--delay-ms=2"]);
    let env = settings(
        &list.name,
        &handler.url(),
        &list.url,
        &[("KIPPER_BATCH_SIZE", "50"), ("KIPPER_CONCURRENCY", "16")],
    );
    let _sidecars: Vec<Sidecar> = (0..3).map(|_| Sidecar::start(&env)).collect();
    wait_until("every item delivered", LONG, async || {
        accepted_numbers(&handler).len() == total
    })
    .await;
    let deliveries = handler.deliveries();
    assert!(
        concurrent_duplicates(&deliveries).is_empty(),
        "an item was held by two consumers at once"
    );
    assert_eq!(deliveries.len(), total, "and none was delivered twice");
    let consumers: BTreeSet<String> = redis::cmd("SMEMBERS")
        .arg(format!("{}:consumers", list.name))
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(
        consumers.len(),
        3,
        "three consumers registered: {consumers:?}"
    );
}

#[tokio::test]
async fn a_5_mb_item_and_non_json_items_arrive_intact() {
    let list = TestList::new("kp_big");
    let mut con = redis_con(&list.url).await;
    let blob = "x".repeat(5 * 1024 * 1024);
    let big = json!({ "blob": blob }).to_string().into_bytes();
    let items = vec![
        big,
        b"plain text, not JSON".to_vec(),
        vec![0xff, 0xfe, 0x00, b'a'],
        b"[1, 2, 3]".to_vec(),
    ];
    push(&mut con, &list.name, &items).await;
    let handler = Handler::start(0, &[]);
    let _sidecar = Sidecar::start(&settings(&list.name, &handler.url(), &list.url, &[]));
    wait_until("four deliveries", LONG, async || {
        accepted(&handler).len() == 4
    })
    .await;
    // Deliveries run concurrently: compare as a set, in any order.
    let mut bodies: Vec<Value> = accepted(&handler).into_iter().map(|d| d.body).collect();
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
        json!({"data": "plain text, not JSON"}),
        json!({"data": "//4AYQ==", "encoding": "base64"}),
        json!([1, 2, 3]),
    ] {
        assert!(
            bodies.contains(&expected),
            "{expected} missing from {bodies:?}"
        );
    }
}

#[tokio::test]
async fn sigterm_finishes_in_flight_items_and_gives_the_rest_back() {
    let list = TestList::new("kp_term");
    let mut con = redis_con(&list.url).await;
    let total = 500;
    push(&mut con, &list.name, &numbered(total)).await;
    let handler = Handler::start(0, &["--delay-ms=100"]);
    let env = settings(
        &list.name,
        &handler.url(),
        &list.url,
        &[
            ("KIPPER_BATCH_SIZE", "50"),
            ("KIPPER_CONCURRENCY", "8"),
            ("KIPPER_REDIS_LEASE", "60s"),
        ],
    );
    let mut sidecar = Sidecar::start(&env);
    wait_until("some deliveries", LONG, async || {
        accepted(&handler).len() >= 16
    })
    .await;
    let status = sidecar
        .terminate(Duration::from_secs(20))
        .expect("exits within the grace period");
    assert!(status.success(), "{}", sidecar.log());
    // Everything not delivered is back in the list at once (not after the 60 s lease), and
    // this consumer left the registry.
    let delivered = accepted_numbers(&handler);
    let left: Vec<String> = con.lrange(&list.name, 0, -1).await.unwrap();
    assert_eq!(
        delivered.len() + left.len(),
        total,
        "nothing lost, nothing held"
    );
    assert_eq!(backlog(&mut con, &list.name).await, left.len());
    let consumers: usize = con.scard(format!("{}:consumers", list.name)).await.unwrap();
    assert_eq!(consumers, 0);
    let left: BTreeSet<u64> = left
        .iter()
        .map(|t| {
            serde_json::from_str::<Value>(t).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(
        delivered.keys().all(|n| !left.contains(n)),
        "a delivered item was given back"
    );
}

/// A private redis-server with a password, on a free port; killed on drop.
struct PrivateRedis {
    child: std::process::Child,
    port: u16,
}

impl PrivateRedis {
    fn start(password: &str) -> Self {
        let port = support::free_port();
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
            .expect("redis-server must be installed (scripts/services.sh uses it)");
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
    let db5 = format!("redis://:s3cret-p%40ss@127.0.0.1:{}/5", server.port);
    let mut con = None;
    for _ in 0..50 {
        if let Ok(c) = redis::Client::open(db5.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
        {
            con = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut con = con.expect("the private redis-server did not start");
    push(&mut con, "jobs", &numbered(20)).await;
    let handler = Handler::start(0, &[]);
    let env = settings("jobs", &handler.url(), &db5, &[]);
    let mut by_url = Sidecar::start(&env);
    wait_until("20 deliveries via the URL", LONG, async || {
        accepted(&handler).len() == 20
    })
    .await;
    assert!(
        by_url
            .terminate(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    );
    assert!(
        !by_url.log().contains(password),
        "the password must never be logged"
    );

    // The service-binding variables, the password from a Secret-backed variable. A binding has
    // no database number, so that sidecar works on db 0 and db 5 keeps its items.
    push(&mut con, "jobs", &numbered(10)).await;
    let db0 = format!("redis://:s3cret-p%40ss@127.0.0.1:{}/0", server.port);
    let mut con0 = redis::Client::open(db0)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    push(&mut con0, "jobs", &numbered(10)).await;
    let mut binding = settings("jobs", &handler.url(), "", &[]);
    binding.retain(|(k, _)| k != "KIPPER_SOURCE_URL");
    binding.extend([
        ("REDIS_HOST".to_owned(), "127.0.0.1".to_owned()),
        ("REDIS_PORT".to_owned(), server.port.to_string()),
        ("REDIS_PASSWORD".to_owned(), password.to_owned()),
    ]);
    let by_binding = Sidecar::start(&binding);
    wait_until("10 more via the binding", LONG, async || {
        accepted(&handler).len() == 30
    })
    .await;
    assert!(!by_binding.log().contains(password));
    let left_in_db5: usize = con.llen("jobs").await.unwrap();
    assert_eq!(left_in_db5, 10, "db 5 is untouched by a sidecar on db 0");

    // A wrong password is waited out (a Secret may be rotating; exiting would be a restart
    // loop): one clear line and no secret in the log, the process keeps running, SIGTERM stops it.
    let port = server.port.to_string();
    let target = handler.url();
    let wrong: Vec<(String, String)> = [
        ("KIPPER_TRIGGER", "redis"),
        ("KIPPER_REDIS_LIST", "jobs"),
        ("KIPPER_TARGET_URL", target.as_str()),
        ("KIPPER_ADMIN_PORT", "0"),
        ("REDIS_HOST", "127.0.0.1"),
        ("REDIS_PORT", port.as_str()),
        ("REDIS_PASSWORD", "not-the-password"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut waiting = Sidecar::start(&wrong);
    wait_until("the outage logged", LONG, async || {
        waiting
            .log()
            .contains("\"error\":\"redis: connecting to 127.0.0.1")
    })
    .await;
    assert!(waiting.exited().is_none(), "{}", waiting.log());
    let status = waiting.terminate(Duration::from_secs(10)).expect("SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", waiting.log());
    assert!(
        !waiting.log().contains("not-the-password"),
        "{}",
        waiting.log()
    );
}

/// The queue operations directly: order kept, the backlog (what KEDA should scale on) counts
/// held items, a dead consumer's items come back at the head in their order.
#[tokio::test]
async fn queue_keeps_order_counts_held_items_and_recovers_orphans() {
    use kipper_poll::source::redis::queue::{DeadLetter, QueueKeys, RedisQueue};

    let list = TestList::new("kp_queue");
    let mut con = redis_con(&list.url).await;
    let items: Vec<Vec<u8>> = (0..10).map(|i| format!("i{i}").into_bytes()).collect();
    push(&mut con, &list.name, &items).await;
    let manager = || async {
        redis::Client::open(list.url.as_str())
            .unwrap()
            .get_connection_manager()
            .await
            .unwrap()
    };
    let a = RedisQueue::new(
        manager().await,
        QueueKeys::new(&list.name, None, "a"),
        Duration::from_millis(300),
    );
    let b = RedisQueue::new(
        manager().await,
        QueueKeys::new(&list.name, None, "b"),
        Duration::from_secs(30),
    );
    let got = a.claim(4).await.unwrap();
    assert_eq!(got, ["i0", "i1", "i2", "i3"].map(bytes::Bytes::from));
    assert_eq!(a.backlog().await.unwrap(), 10, "held items still count");
    a.ack(&got[..2]).await.unwrap();
    assert_eq!(a.backlog().await.unwrap(), 8);
    let letter = DeadLetter {
        item: got[2].clone(),
        error: "HTTP 500".into(),
        attempts: 3,
    };
    assert_eq!(a.dead_letter(&[letter]).await.unwrap(), 1);
    // a dies holding i3; once its heartbeat expires, b returns it to the head of the list.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(b.recover_orphans().await.unwrap(), 1);
    let got = b.claim(100).await.unwrap();
    assert_eq!(got.len(), 7);
    assert_eq!(got[0], "i3");
    b.release(&got[3..]).await.unwrap();
    b.ack(&got[..3]).await.unwrap();
    assert_eq!(b.leave().await.unwrap(), 0);
    let rest: Vec<String> = con.lrange(&list.name, 0, -1).await.unwrap();
    assert_eq!(
        rest,
        ["i6", "i7", "i8", "i9"],
        "released items keep their order at the head"
    );
    let dead: Vec<String> = con
        .lrange(format!("{}:dead", list.name), 0, -1)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].contains("\"item\":\"i2\""), "{dead:?}");
}
