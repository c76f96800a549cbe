//! Black-box tests of the MinIO / S3 trigger: the real kipper-poll binary, a real S3 server
//! (SeaweedFS on 127.0.0.1:8333 with the identities of `scripts/seaweedfs-s3.json`, started by
//! `scripts/services.sh`; or `KIPPER_TEST_S3_URL`) and the real handler process of
//! `tests/handler.py`. Each test makes its own bucket and deletes it.
// Helpers outside #[test] functions may unwrap too: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use kipper_poll::config::{S3Connection, Secret};
use kipper_poll::source::s3::bucket::Bucket;
use serde_json::{Value, json};
use support::{Delivery, Handler, Sidecar, base_env, run_to_exit, wait_until};

const LONG: Duration = Duration::from_secs(60);

const DEFAULT_S3: &str =
    "http://kipper-test-access:kipper-test-secret-only-for-local-tests@127.0.0.1:8333";

/// A bucket-safe unique name: lowercase, digits and dashes.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

fn s3_url() -> String {
    std::env::var("KIPPER_TEST_S3_URL").unwrap_or_else(|_| DEFAULT_S3.into())
}

fn connection() -> S3Connection {
    let url = url::Url::parse(&s3_url()).unwrap();
    S3Connection {
        endpoint: format!(
            "{}://{}:{}",
            url.scheme(),
            url.host_str().unwrap(),
            url.port().unwrap_or(80)
        ),
        access_key: url.username().to_owned(),
        secret_key: Secret::new(url.password().unwrap_or_default()),
    }
}

/// A fresh bucket, emptied and deleted when the test ends (also on panic).
struct TestBucket {
    bucket: Bucket,
}

impl TestBucket {
    async fn new() -> Self {
        let name = unique("kp-s3");
        let bucket = Bucket::new(&connection(), &name);
        let mut last = None;
        // A server that just started may refuse the first bucket for a moment.
        for _ in 0..40 {
            match bucket.client().create_bucket().bucket(&name).send().await {
                Ok(_) => return Self { bucket },
                Err(e) => last = Some(format!("{e:?}")),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!(
            "an S3 server is required at {} (run scripts/services.sh): {last:?}",
            connection().endpoint
        );
    }

    fn name(&self) -> &str {
        self.bucket.name()
    }

    async fn put(&self, key: &str, body: &str) {
        self.bucket
            .client()
            .put_object()
            .bucket(self.name())
            .key(key)
            .body(ByteStream::from(body.as_bytes().to_vec()))
            .send()
            .await
            .unwrap();
    }

    async fn delete(&self, key: &str) {
        self.bucket
            .client()
            .delete_object()
            .bucket(self.name())
            .key(key)
            .send()
            .await
            .unwrap();
    }
}

impl Drop for TestBucket {
    fn drop(&mut self) {
        let name = self.bucket.name().to_owned();
        // Drop cannot await: clean up on a runtime of its own, in a thread of its own, with a
        // client of its own (the test's client has its connections on the test's runtime,
        // which is blocked here).
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let bucket = Bucket::new(&connection(), &name);
                let client = bucket.client();
                if let Ok(listed) = client.list_objects_v2().bucket(bucket.name()).send().await {
                    for object in listed.contents() {
                        if let Some(key) = object.key() {
                            let _ = client
                                .delete_object()
                                .bucket(bucket.name())
                                .key(key)
                                .send()
                                .await;
                        }
                    }
                }
                let _ = client.delete_bucket().bucket(bucket.name()).send().await;
            });
        })
        .join();
    }
}

fn settings(
    bucket: &str,
    function: &str,
    target: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut env = base_env("minio", &s3_url(), target);
    env.push(("KIPPER_MINIO_BUCKET".into(), bucket.into()));
    env.push(("KIPPER_FUNCTION_NAME".into(), function.into()));
    env.push(("KIPPER_MINIO_LEASE".into(), "2s".into()));
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    env
}

fn accepted(handler: &Handler) -> Vec<Delivery> {
    handler
        .deliveries()
        .into_iter()
        .filter(|d| d.status < 300)
        .collect()
}

/// (eventName, key, eTag) of every accepted delivery, in arrival order.
fn events(handler: &Handler) -> Vec<(String, String, String)> {
    accepted(handler)
        .iter()
        .map(|d| {
            let r = &d.body;
            (
                r["eventName"].as_str().unwrap_or_default().to_owned(),
                r["s3"]["object"]["key"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                r["s3"]["object"]["eTag"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

/// One raw HTTP/1.1 request; returns the status and the body.
fn http(port: u16, method: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!(
        "{method} /minio/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let _ = stream.write_all(body);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

fn minio_payload(bucket: &str, keys: &[&str]) -> Vec<u8> {
    let records: Vec<Value> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            json!({
                "eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "",
                "eventTime": "2026-11-24T06:00:00.000Z", "eventName": "s3:ObjectCreated:Put",
                "userIdentity": {"principalId": "minio"},
                "s3": {"s3SchemaVersion": "1.0", "configurationId": "Config",
                       "bucket": {"name": bucket, "ownerIdentity": {"principalId": "minio"}, "arn": format!("arn:aws:s3:::{bucket}")},
                       "object": {"key": k, "size": 3, "eTag": format!("etag{i}"), "contentType": "text/plain", "sequencer": "1880A8F0B2C1D2E3"}},
                "source": {"host": "127.0.0.1", "port": "", "userAgent": "MinIO"}
            })
        })
        .collect();
    json!({"EventName": "s3:ObjectCreated:Put", "Key": format!("{bucket}/{}", keys[0]), "Records": records})
        .to_string()
        .into_bytes()
}

#[tokio::test]
async fn put_overwrite_and_delete_reach_the_handler_once_each_across_a_restart() {
    let bucket = TestBucket::new().await;
    let function = unique("fn");
    bucket.put("a.txt", "one").await;
    bucket.put("dir/b c.txt", "two").await;
    let handler = Handler::start(0, &[]);
    let env = settings(bucket.name(), &function, &handler.url(), &[]);
    let mut first = Sidecar::start(&env);
    wait_until("the two existing objects", LONG, async || {
        events(&handler).len() == 2
    })
    .await;
    // The checkpoint is written after the acknowledged batch; then a graceful restart.
    let checkpoint_key = format!(".kipper/checkpoints/{function}.json");
    wait_until("the checkpoint", LONG, async || {
        bucket
            .bucket
            .read(&checkpoint_key)
            .await
            .unwrap()
            .is_some_and(|(body, _)| {
                serde_json::from_slice::<Value>(&body)
                    .is_ok_and(|v| v["objects"].as_object().is_some_and(|o| o.len() == 2))
            })
    })
    .await;
    assert!(
        first
            .terminate(Duration::from_secs(10))
            .is_some_and(|s| s.success()),
        "{}",
        first.log()
    );
    // A graceful stop gives the lease up, so the next sidecar need not wait for it to expire.
    let lease_key = format!(".kipper/leases/{function}.json");
    let (lease, _) = bucket
        .bucket
        .read(&lease_key)
        .await
        .unwrap()
        .expect("the lease object");
    let lease: Value = serde_json::from_slice(&lease).unwrap();
    assert_eq!(lease["holder"], "", "{lease}");

    // Changes while no sidecar runs: an overwrite, a delete, a new object.
    bucket.put("a.txt", "one, overwritten").await;
    bucket.delete("dir/b c.txt").await;
    bucket.put("c.txt", "three").await;
    let _second = Sidecar::start(&env);
    wait_until("the three changes", LONG, async || {
        events(&handler).len() >= 5
    })
    .await;
    // A few more poll rounds: nothing is delivered again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let seen = events(&handler);
    assert_eq!(seen.len(), 5, "each change exactly once: {seen:?}");
    let count = |name: &str, key: &str| {
        seen.iter()
            .filter(|(n, k, _)| n == name && k == key)
            .count()
    };
    assert_eq!(
        count("s3:ObjectCreated:Put", "a.txt"),
        2,
        "put, then overwrite: {seen:?}"
    );
    assert_eq!(
        count("s3:ObjectCreated:Put", "dir%2Fb+c.txt"),
        1,
        "{seen:?}"
    );
    assert_eq!(
        count("s3:ObjectRemoved:Delete", "dir%2Fb+c.txt"),
        1,
        "{seen:?}"
    );
    assert_eq!(count("s3:ObjectCreated:Put", "c.txt"), 1, "{seen:?}");
    let etags: Vec<&str> = seen
        .iter()
        .filter(|(_, k, _)| k == "a.txt")
        .map(|(_, _, e)| e.as_str())
        .collect();
    assert_ne!(etags[0], etags[1], "the overwrite carries the new etag");
    assert!(
        seen.iter().all(|(_, k, _)| !k.starts_with(".kipper")),
        "reserved objects are never events"
    );
    // Records carry the notification shape.
    let record = &accepted(&handler)[0].body;
    assert_eq!(record["s3"]["bucket"]["name"], bucket.name());
    assert!(
        record["eventTime"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{record}"
    );

    // The checkpoint is the shared format and says what the bucket holds now.
    let (body, _) = bucket.bucket.read(&checkpoint_key).await.unwrap().unwrap();
    let checkpoint: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(checkpoint["version"], 1);
    assert_eq!(checkpoint["prefix"], "");
    let keys: Vec<&str> = checkpoint["objects"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["a.txt", "c.txt"]);
}

#[tokio::test]
async fn sigkill_mid_round_then_restart_delivers_every_object() {
    let bucket = TestBucket::new().await;
    let function = unique("fn");
    let total = 150;
    for i in 0..total {
        bucket.put(&format!("o/{i:04}"), &format!("body {i}")).await;
    }
    let handler = Handler::start(0, &["--delay-ms=20"]);
    let env = settings(
        bucket.name(),
        &function,
        &handler.url(),
        &[("KIPPER_BATCH_SIZE", "20"), ("KIPPER_CONCURRENCY", "4")],
    );
    let mut first = Sidecar::start(&env);
    wait_until("some deliveries", LONG, async || {
        events(&handler).len() >= 30
    })
    .await;
    first.kill();
    assert!(events(&handler).len() < total, "killed mid-round");
    let _second = Sidecar::start(&env);
    let keys = || {
        events(&handler)
            .into_iter()
            .map(|(_, k, _)| k)
            .collect::<std::collections::BTreeSet<_>>()
    };
    wait_until("every object", LONG, async || keys().len() == total).await;
}

#[tokio::test]
async fn two_replicas_never_deliver_a_change_concurrently() {
    let bucket = TestBucket::new().await;
    let function = unique("fn");
    let total = 100;
    for i in 0..total {
        bucket.put(&format!("r/{i:04}"), "x").await;
    }
    let handler = Handler::start(0, &["--delay-ms=10"]);
    let env = settings(
        bucket.name(),
        &function,
        &handler.url(),
        &[("KIPPER_BATCH_SIZE", "10")],
    );
    let _replicas: Vec<Sidecar> = (0..2).map(|_| Sidecar::start(&env)).collect();
    wait_until("every object", LONG, async || {
        events(&handler).len() >= total
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let deliveries = handler.deliveries();
    assert!(
        support::concurrent_duplicates(&deliveries).is_empty(),
        "two replicas held one change at once"
    );
    assert_eq!(
        deliveries.len(),
        total,
        "only the lease holder polls: each change once"
    );
}

#[tokio::test]
async fn start_now_skips_what_was_there_and_a_prefix_limits_the_watch() {
    let bucket = TestBucket::new().await;
    let function = unique("fn");
    bucket.put("in/old.txt", "old").await;
    let handler = Handler::start(0, &[]);
    let env = settings(
        bucket.name(),
        &function,
        &handler.url(),
        &[
            ("KIPPER_MINIO_START", "now"),
            ("KIPPER_MINIO_PREFIX", "in/"),
        ],
    );
    let sidecar = Sidecar::start(&env);
    let checkpoint_key = format!(".kipper/checkpoints/{function}.json");
    wait_until("the first checkpoint", LONG, async || {
        bucket.bucket.read(&checkpoint_key).await.unwrap().is_some()
    })
    .await;
    bucket.put("in/new.txt", "new").await;
    bucket.put("out/ignored.txt", "elsewhere").await;
    wait_until("the new object", LONG, async || {
        !events(&handler).is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let seen = events(&handler);
    assert_eq!(seen.len(), 1, "{seen:?}\n{}", sidecar.log());
    assert_eq!(seen[0].1, "in%2Fnew.txt");
}

fn webhook_sidecar(target: &str, port: u16, extra: &[(&str, &str)]) -> Sidecar {
    let mut env = base_env("minio", "", target);
    // No KIPPER_SOURCE_URL: in webhook mode MinIO calls us, we never call S3.
    env.retain(|(k, _)| k != "KIPPER_SOURCE_URL");
    for (k, v) in [
        ("KIPPER_MINIO_MODE", "webhook"),
        ("KIPPER_MINIO_BUCKET", "photos"),
        ("KIPPER_MINIO_WEBHOOK_PORT", &port.to_string()),
        ("KIPPER_MINIO_WEBHOOK_TOKEN", "minio-auth-token"),
        ("KIPPER_MINIO_WEBHOOK_MAX_BODY", "65536"),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    {
        env.push((k.to_owned(), v.to_owned()));
    }
    let sidecar = Sidecar::start(&env);
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return sidecar;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the webhook receiver did not listen on {port}");
}

#[tokio::test]
async fn webhook_mode_delivers_minio_records_and_refuses_bad_tokens() {
    let handler = Handler::start(0, &[]);
    let port = support::free_port();
    let sidecar = webhook_sidecar(&handler.url(), port, &[]);
    let token = [
        ("Authorization", "Bearer minio-auth-token"),
        ("Content-Type", "application/json"),
    ];
    let payload = minio_payload("photos", &["cats%2Fa.jpg", "b.jpg"]);

    // MinIO probes the endpoint when the target is set up.
    assert_eq!(http(port, "HEAD", &[], b"").0, 200);
    // No token, a wrong token: refused, nothing delivered.
    let (status, body) = http(
        port,
        "POST",
        &[("Content-Type", "application/json")],
        &payload,
    );
    assert_eq!(status, 401, "{body}");
    let (status, body) = http(port, "POST", &[("Authorization", "Bearer nope")], &payload);
    assert_eq!(status, 403, "{body}");
    assert!(handler.deliveries().is_empty());
    // Not a MinIO event, a body over the limit: 4xx with a reason.
    let (status, body) = http(port, "POST", &token, b"{\"hello\": 1}");
    assert_eq!(status, 400);
    assert!(body.contains("Records"), "{body}");
    let (status, _) = http(port, "POST", &token, &vec![b' '; 70_000]);
    assert_eq!(status, 413);

    // A real payload: 200 once the function accepted both records, which arrive unchanged.
    let (status, body) = http(port, "POST", &token, &payload);
    assert_eq!(status, 200, "{body}");
    let sent: Value = serde_json::from_slice(&payload).unwrap();
    let got = accepted(&handler);
    assert_eq!(got.len(), 2);
    for record in sent["Records"].as_array().unwrap() {
        assert!(
            got.iter().any(|d| &d.body == record),
            "{record} not delivered as is"
        );
    }
    let keys: BTreeMap<String, u64> = got.iter().map(|d| (d.key.clone(), d.attempt)).collect();
    assert!(
        keys.contains_key("s3:photos/cats/a.jpg@etag0:s3:ObjectCreated:Put"),
        "{keys:?}"
    );
    assert!(
        !sidecar.log().contains("minio-auth-token"),
        "the token is never logged"
    );
}

#[tokio::test]
async fn webhook_mode_answers_minio_non_2xx_when_the_function_refuses() {
    let handler = Handler::start(0, &["--status=500"]);
    let port = support::free_port();
    let _sidecar = webhook_sidecar(&handler.url(), port, &[("KIPPER_MAX_ATTEMPTS", "2")]);
    let token = [("Authorization", "Bearer minio-auth-token")];
    let (status, body) = http(port, "POST", &token, &minio_payload("photos", &["x.jpg"]));
    assert_eq!(status, 502, "MinIO must keep and retry the event: {body}");
    assert!(body.contains("HTTP 500"), "{body}");
    assert_eq!(handler.deliveries().len(), 2, "both attempts were made");
}

#[tokio::test]
async fn webhook_mode_without_a_token_does_not_start() {
    let (code, stderr) = run_to_exit(&[
        ("KIPPER_TRIGGER", "minio"),
        ("KIPPER_MINIO_MODE", "webhook"),
        ("KIPPER_MINIO_BUCKET", "photos"),
    ]);
    assert_eq!(code, 2);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("kipper-poll: KIPPER_MINIO_WEBHOOK_TOKEN: required in webhook mode"),
        "{stderr}"
    );
}
