//! The minio pending-changes counter end to end against a real S3 server (SeaweedFS started
//! here on free loopback ports with its own data directory), through the Function and Secret
//! lookup (fake API server) and the `/pending/<ns>/<fn>` endpoint KEDA polls.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fixtures;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use http::Method;
use kipper_contract::checkpoint::{RESERVED_PREFIX, checkpoint_key};
use kipper_controller::metrics::Metrics;
use kipper_controller::pending::{self, BucketTarget};
use kipper_controller::server::{self, ServerState};
use kipper_fake_apiserver::ApiServer;
use serde_json::json;

const ACCESS: &str = "kipperkey";
const SECRET: &str = "kippersecret";

/// A SeaweedFS `weed mini` of this test; killed on drop.
struct Weed {
    child: Child,
    s3_port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Weed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_ports(n: usize) -> Vec<u16> {
    // Hold every listener until all are chosen so the ports differ.
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

fn start_weed() -> Weed {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("s3.json");
    std::fs::write(
        &config,
        json!({"identities": [{"name": "kipper",
            "credentials": [{"accessKey": ACCESS, "secretKey": SECRET}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]})
        .to_string(),
    )
    .unwrap();
    let p = free_ports(10);
    let flag = |name: &str, port: u16| format!("-{name}={port}");
    let child = Command::new("weed")
        .arg("mini")
        .arg(format!("-dir={}", dir.path().join("data").display()))
        .args([
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-admin.ui=false",
            "-webdav=false",
        ])
        .arg(format!("-s3.config={}", config.display()))
        .args([
            flag("master.port", p[0]),
            flag("master.port.grpc", p[1]),
            flag("volume.port", p[2]),
            flag("volume.port.grpc", p[3]),
            flag("filer.port", p[4]),
            flag("filer.port.grpc", p[5]),
            flag("s3.port", p[6]),
            flag("s3.port.grpc", p[7]),
            flag("s3.port.iceberg", p[8]),
            flag("s3.port.lance", p[9]),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start SeaweedFS `weed` ({e}): run scripts/install-deps.sh")
        });
    Weed {
        child,
        s3_port: p[6],
        _dir: dir,
    }
}

fn target(weed: &Weed, bucket: &str) -> BucketTarget {
    BucketTarget {
        endpoint: format!("http://127.0.0.1:{}", weed.s3_port),
        bucket: bucket.to_owned(),
        access_key: ACCESS.to_owned(),
        secret_key: SECRET.to_owned(),
    }
}

/// Creates the bucket, retrying while SeaweedFS starts (it takes a few seconds).
async fn create_bucket(t: &BucketTarget) -> aws_sdk_s3::Client {
    let client = pending::s3_client(t);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match client.create_bucket().bucket(&t.bucket).send().await {
            Ok(_) => return client,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!(
                "SeaweedFS did not come up on {}: {}",
                t.endpoint,
                aws_sdk_s3::error::DisplayErrorContext(e)
            ),
        }
    }
}

async fn put(client: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &str) {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.as_bytes().to_vec()))
        .send()
        .await
        .unwrap();
}

/// Writes the checkpoint kipper-poll would write after delivering the bucket as it is now.
async fn checkpoint_now(client: &aws_sdk_s3::Client, bucket: &str, function: &str) {
    let listed = pending::list_bucket(client, bucket, "").await.unwrap();
    let objects: serde_json::Map<String, serde_json::Value> = listed
        .into_iter()
        .filter(|(k, _)| !k.starts_with(RESERVED_PREFIX))
        .map(|(k, v)| (k, json!(v)))
        .collect();
    let body = json!({"version": 1, "prefix": "", "objects": objects}).to_string();
    put(client, bucket, &checkpoint_key(function), &body).await;
}

#[tokio::test]
async fn pending_changes_follow_the_bucket_and_the_checkpoint() {
    let weed = start_weed();
    let t = target(&weed, "uploads");
    let client = create_bucket(&t).await;

    assert_eq!(pending::count_pending(&t, "thumbnailer").await.unwrap(), 0);
    // 1200 objects: more than one listing page (1000), so pagination is exercised.
    for i in 0..1200 {
        put(&client, "uploads", &format!("img/{i:04}.png"), "x").await;
    }
    assert_eq!(
        pending::count_pending(&t, "thumbnailer").await.unwrap(),
        1200,
        "no checkpoint: all pending"
    );

    checkpoint_now(&client, "uploads", "thumbnailer").await;
    assert_eq!(
        pending::count_pending(&t, "thumbnailer").await.unwrap(),
        0,
        "caught up"
    );

    put(&client, "uploads", "img/0001.png", "changed").await; // overwritten
    put(&client, "uploads", "img/new.png", "y").await; // created
    client
        .delete_object()
        .bucket("uploads")
        .key("img/0002.png")
        .send()
        .await
        .unwrap(); // deleted
    put(&client, "uploads", ".kipper/other.json", "{}").await; // reserved: never counted
    assert_eq!(pending::count_pending(&t, "thumbnailer").await.unwrap(), 3);
    // Another function on the same bucket has its own checkpoint.
    assert_eq!(pending::count_pending(&t, "other-fn").await.unwrap(), 1200);

    // A corrupt checkpoint is an error, not a silent zero.
    put(&client, "uploads", &checkpoint_key("broken"), "not json").await;
    let e = pending::count_pending(&t, "broken")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not valid JSON"), "{e}");

    // Wrong credentials: an error naming the bucket.
    let mut bad = t.clone();
    bad.secret_key = "wrong".into();
    let e = pending::count_pending(&bad, "thumbnailer")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("s3://uploads"), "{e}");

    // End to end: Function + Secret from the API, the endpoint KEDA polls.
    let fake = ApiServer::start();
    let kube = fake.client().await;
    let (_, f) = fixtures::cases()
        .into_iter()
        .find(|(c, _)| *c == "minio")
        .unwrap();
    let mut fv = serde_json::to_value(&f).unwrap();
    fv["apiVersion"] = json!("kipper.run/v1alpha1");
    fv["kind"] = json!("Function");
    fake.insert(fv);
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    fake.insert(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "storage-credentials", "namespace": fixtures::NS,
                     "labels": {"kipper.run/service-type": "minio"}},
        "data": {"username": b64(ACCESS), "password": b64(SECRET), "endpoint": b64(&t.endpoint)}
    }));
    let resolved = pending::resolve(&kube, fixtures::NS, "thumbnailer")
        .await
        .unwrap();
    assert_eq!(resolved, t);

    let state = ServerState {
        metrics: Arc::new(Metrics::new()),
        pending: Arc::new(move |ns, function| {
            let kube = kube.clone();
            Box::pin(async move {
                let target = pending::resolve(&kube, &ns, &function).await?;
                pending::count_pending(&target, &function).await
            })
        }),
        api: kipper_controller::controller::ApiHealth::default(),
    };
    let body = |resp: http::Response<http_body_util::Full<bytes::Bytes>>| async move {
        use http_body_util::BodyExt;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status.as_u16(),
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(),
        )
    };
    let (code, v) =
        body(server::route(&state, &Method::GET, "/pending/shop-prod/thumbnailer").await).await;
    assert_eq!((code, v), (200, json!({"pending": 3})));
    let (code, _) =
        body(server::route(&state, &Method::GET, "/pending/shop-prod/nosuch").await).await;
    assert_eq!(code, 404);
    let (code, _) = body(server::route(&state, &Method::GET, "/pending/Bad_NS/x").await).await;
    assert_eq!(code, 400);
    let metrics = state.metrics.encode();
    assert!(
        metrics.contains("kipper_controller_pending_requests_total{result=\"ok\"} 1"),
        "{metrics}"
    );
}
