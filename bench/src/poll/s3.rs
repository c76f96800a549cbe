//! The MinIO / S3 workload: a fresh bucket of N small objects on an S3-compatible server
//! (SeaweedFS here), detected by kipper-poll's poll mode (listing + checkpoint diff) and each
//! delivered as an S3 event record. The source ceiling runs the same source code (listing,
//! diff, records, checkpoint writes) without HTTP.

use anyhow::Context as _;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use futures::StreamExt as _;
use kipper_contract::checkpoint::{Checkpoint, checkpoint_key};
use kipper_poll::config::S3Config;
use kipper_poll::source::s3::S3Source;
use kipper_poll::source::s3::bucket::Bucket;

use super::{Workload, ceiling};

/// Objects written at once while seeding.
const SEED_CONCURRENCY: usize = 32;

/// An S3 bucket source.
#[derive(Debug)]
pub struct S3Workload {
    /// `http://accesskey:secretkey@host:port`.
    url: String,
    bucket: String,
    batch_size: usize,
}

impl S3Workload {
    /// A workload on the S3 server at `url` (credentials in the URL).
    pub fn new(url: String, batch_size: usize) -> Self {
        Self {
            url,
            bucket: String::new(),
            batch_size,
        }
    }

    fn config(&self) -> anyhow::Result<S3Config> {
        use clap::Parser as _;
        let mut argv = vec!["kipper-poll".to_owned()];
        for (k, v) in self.env("http://127.0.0.1:1/event") {
            argv.push(format!(
                "--{}={v}",
                k.trim_start_matches("KIPPER_")
                    .to_ascii_lowercase()
                    .replace('_', "-")
            ));
        }
        match kipper_poll::config::Args::try_parse_from(argv)?
            .into_config(&|_| None)?
            .source
        {
            kipper_poll::config::SourceConfig::S3(config) => Ok(config),
            _ => anyhow::bail!("not an S3 config"),
        }
    }

    fn handle(&self) -> anyhow::Result<Bucket> {
        Ok(Bucket::new(&self.config()?.connection, &self.bucket))
    }
}

impl Workload for S3Workload {
    fn name(&self) -> &'static str {
        "s3"
    }

    fn describe(&self) -> String {
        format!(
            "fresh bucket of small objects (~70 bytes) on SeaweedFS; poll mode: ListObjectsV2 + checkpoint diff, \
             checkpoint written with conditional PUTs as batches are acknowledged; kipper-poll batch {}",
            self.batch_size
        )
    }

    async fn seed(&mut self, rows: u64) -> anyhow::Result<()> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .subsec_nanos();
        self.bucket = format!("bench-s3-{}-{nanos:x}", std::process::id());
        let bucket = self.handle()?;
        let client = bucket.client();
        client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .with_context(|| format!("creating {}", self.bucket))?;
        let name = self.bucket.clone();
        let puts = futures::stream::iter(1..=rows).map(|i| {
            let (client, name) = (client.clone(), name.clone());
            async move {
                let body = format!(
                    r#"{{"id":{i},"customer":"c{i}","amount":{}.{:02},"status":"pending"}}"#,
                    i % 10_000,
                    i % 100
                );
                client
                    .put_object()
                    .bucket(&name)
                    .key(format!("orders/{i:08}.json"))
                    .body(ByteStream::from(body.into_bytes()))
                    .send()
                    .await
                    .map(|_| ())
            }
        });
        let results: Vec<_> = puts.buffer_unordered(SEED_CONCURRENCY).collect().await;
        for result in results {
            result.context("seeding an object")?;
        }
        Ok(())
    }

    fn env(&self, target_url: &str) -> Vec<(String, String)> {
        vec![
            ("KIPPER_TRIGGER".into(), "minio".into()),
            ("KIPPER_SOURCE_URL".into(), self.url.clone()),
            ("KIPPER_TARGET_URL".into(), target_url.into()),
            ("KIPPER_MINIO_BUCKET".into(), self.bucket.clone()),
            ("KIPPER_FUNCTION_NAME".into(), "bench".into()),
            ("KIPPER_POLL_INTERVAL".into(), "1s".into()),
            ("KIPPER_BATCH_SIZE".into(), self.batch_size.to_string()),
        ]
    }

    async fn remaining(&mut self) -> anyhow::Result<u64> {
        // What kipper-controller counts: the listing against the checkpoint.
        let bucket = self.handle()?;
        let checkpoint = match bucket.read(&checkpoint_key("bench")).await? {
            Some((body, _)) => serde_json::from_slice(&body)?,
            None => Checkpoint::empty(""),
        };
        Ok(checkpoint.diff(&bucket.list("").await?).len() as u64)
    }

    async fn source_ceiling(&mut self, rows: u64) -> anyhow::Result<f64> {
        let mut source = S3Source::connect(&self.config()?).await?;
        ceiling::measure(&mut source, self.batch_size, rows, "objects").await
    }

    async fn cleanup(&mut self) {
        if self.bucket.is_empty() {
            return;
        }
        let Ok(bucket) = self.handle() else { return };
        let client = bucket.client();
        loop {
            let Ok(page) = client.list_objects_v2().bucket(&self.bucket).send().await else {
                break;
            };
            let ids: Vec<ObjectIdentifier> = page
                .contents()
                .iter()
                .filter_map(|o| {
                    o.key()
                        .and_then(|k| ObjectIdentifier::builder().key(k).build().ok())
                })
                .collect();
            if ids.is_empty() {
                break;
            }
            let Ok(delete) = Delete::builder().set_objects(Some(ids)).quiet(true).build() else {
                break;
            };
            if client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = client.delete_bucket().bucket(&self.bucket).send().await;
    }
}
