//! Pending changes of a minio function's bucket, for KEDA's `metrics-api` trigger.
//!
//! KEDA has no S3 scaler. kipper-poll keeps a checkpoint of the bucket state it has delivered
//! (`.kipper/checkpoints/<function>.json`); its format and the pending count over it
//! ([`pending_changes`]) are in [`kipper_contract::checkpoint`], beside kipper-poll's own reading
//! of it. This module lists the bucket, reads the checkpoint and keeps counts briefly. A count
//! above zero wakes the function from zero replicas; at zero KEDA lets it scale down.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kipper_contract::checkpoint::{Checkpoint, checkpoint_key, pending_changes};
use kube::api::Api;

use crate::crd::{Function, TriggerType};
use crate::facts::{ServiceFacts, ServiceKind, credentials_secret, keys};
use crate::{Error, Result};

/// Where a function's bucket is and how to log in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketTarget {
    /// `http://host:port`.
    pub endpoint: String,
    /// Bucket name.
    pub bucket: String,
    /// Access key (the service's user name).
    pub access_key: String,
    /// Secret key (the service's password).
    pub secret_key: String,
}

/// An S3 client for `target` (kipper-poll builds its own with the same [`kipper_tls::s3_client`]).
pub fn s3_client(target: &BucketTarget) -> aws_sdk_s3::Client {
    kipper_tls::s3_client(
        &target.endpoint,
        &target.access_key,
        &target.secret_key,
        "kipper-service-binding",
    )
}

fn s3_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::S3(format!("{what}: {e}"))
}

/// Reads the checkpoint of `function`, `None` when kipper-poll has not written one yet.
pub async fn read_checkpoint(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    function: &str,
) -> Result<Option<Checkpoint>> {
    let key = checkpoint_key(function);
    let out = match client.get_object().bucket(bucket).key(&key).send().await {
        Ok(out) => out,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
        Err(e) => {
            return Err(s3_error(
                &format!("get s3://{bucket}/{key}"),
                aws_sdk_s3::error::DisplayErrorContext(e),
            ));
        }
    };
    let bytes = out
        .body
        .collect()
        .await
        .map_err(|e| s3_error("read checkpoint", e))?
        .into_bytes();
    let cp = serde_json::from_slice(&bytes).map_err(|e| {
        s3_error(
            &format!("checkpoint s3://{bucket}/{key} is not valid JSON"),
            e,
        )
    })?;
    Ok(Some(cp))
}

/// Lists `bucket` under `prefix`: key -> etag.
pub async fn list_bucket(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<BTreeMap<String, String>> {
    let mut listed = BTreeMap::new();
    let mut token = None;
    loop {
        let mut req = client.list_objects_v2().bucket(bucket);
        if !prefix.is_empty() {
            req = req.prefix(prefix);
        }
        if let Some(t) = token.take() {
            req = req.continuation_token(t);
        }
        let page = req.send().await.map_err(|e| {
            s3_error(
                &format!("list s3://{bucket}/{prefix}"),
                aws_sdk_s3::error::DisplayErrorContext(e),
            )
        })?;
        for obj in page.contents() {
            if let Some(key) = obj.key() {
                listed.insert(key.to_owned(), obj.e_tag().unwrap_or_default().to_owned());
            }
        }
        match page.next_continuation_token() {
            Some(t) if page.is_truncated().unwrap_or(false) => token = Some(t.to_owned()),
            _ => break,
        }
    }
    Ok(listed)
}

/// Pending changes of `function` in the bucket of `target`.
pub async fn count_pending(target: &BucketTarget, function: &str) -> Result<u64> {
    let client = s3_client(target);
    let checkpoint = read_checkpoint(&client, &target.bucket, function).await?;
    let prefix = checkpoint
        .as_ref()
        .map(|c| c.prefix.clone())
        .unwrap_or_default();
    let listed = list_bucket(&client, &target.bucket, &prefix).await?;
    Ok(pending_changes(&listed, checkpoint.as_ref()))
}

/// Recent counts per `(namespace, function)`. KEDA polls each ScaledObject every few
/// seconds (and its metrics adapter asks again); the endpoint is reachable from the whole
/// cluster, so a short-lived cache bounds the S3 listings any caller can cause.
pub struct PendingCache {
    ttl: std::time::Duration,
    entries:
        std::sync::Mutex<std::collections::HashMap<(String, String), (std::time::Instant, u64)>>,
}

impl PendingCache {
    /// A cache keeping counts for `ttl`.
    pub fn new(ttl: std::time::Duration) -> Self {
        Self {
            ttl,
            entries: std::sync::Mutex::default(),
        }
    }

    /// The cached count, or `count()`'s (cached on success; errors are never cached).
    pub async fn get_or_count<F>(&self, namespace: &str, function: &str, count: F) -> Result<u64>
    where
        F: std::future::Future<Output = Result<u64>>,
    {
        let key = (namespace.to_owned(), function.to_owned());
        let now = std::time::Instant::now();
        {
            let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, n)) = entries.get(&key)
                && now.duration_since(*at) < self.ttl
            {
                return Ok(*n);
            }
        }
        let n = count.await?;
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        // Drop stale entries so deleted functions do not accumulate.
        entries.retain(|_, (at, _)| now.duration_since(*at) < self.ttl);
        entries.insert(key, (now, n));
        Ok(n)
    }
}

/// Resolves a Function's minio trigger to its bucket and the source service's credentials.
pub async fn resolve(
    client: &kube::Client,
    namespace: &str,
    function: &str,
) -> Result<BucketTarget> {
    let functions: Api<Function> = Api::namespaced(client.clone(), namespace);
    let f = functions
        .get_opt(function)
        .await?
        .ok_or_else(|| Error::Invalid(format!("no Function {namespace}/{function}")))?;
    let trigger = f
        .spec
        .effective_triggers()
        .into_iter()
        .find(|t| t.kind == TriggerType::Minio)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "Function {namespace}/{function} has no minio trigger"
            ))
        })?;
    let (Some(source), Some(bucket)) = (trigger.get("source"), trigger.get("bucket")) else {
        return Err(Error::Invalid(format!(
            "Function {namespace}/{function}: the minio trigger needs source and bucket"
        )));
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets
        .get_opt(&credentials_secret(source))
        .await?
        .ok_or_else(|| Error::UnknownService {
            service: source.to_owned(),
            namespace: namespace.to_owned(),
        })?;
    // The Secret's `host`/`port` when it has them (a server outside the cluster).
    let facts = ServiceFacts::from_secret(source, namespace, &secret)?
        .unwrap_or_else(|| ServiceFacts::conventional(source, ServiceKind::Minio, namespace));
    let field = |key: &str| -> Result<String> {
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .ok_or_else(|| Error::MalformedObject {
                object: format!("Secret {}", facts.secret),
                problem: format!("has no key {key:?}"),
            })?;
        String::from_utf8(bytes.0.clone()).map_err(|_| Error::MalformedObject {
            object: format!("Secret {}", facts.secret),
            problem: format!("key {key:?} is not UTF-8"),
        })
    };
    // A service Secret may say where S3 is (e.g. an external endpoint); else the convention.
    let endpoint =
        field("endpoint").unwrap_or_else(|_| format!("http://{}:{}", facts.host, facts.port));
    Ok(BucketTarget {
        endpoint,
        bucket: bucket.to_owned(),
        access_key: field(keys::USERNAME)?,
        secret_key: field(keys::PASSWORD)?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_cache_answers_within_its_ttl_and_never_caches_errors() {
        let cache = PendingCache::new(std::time::Duration::from_secs(60));
        assert_eq!(
            cache
                .get_or_count("ns", "f", async { Ok(3) })
                .await
                .unwrap(),
            3
        );
        assert_eq!(
            cache
                .get_or_count("ns", "f", async { Ok(9) })
                .await
                .unwrap(),
            3
        );
        assert_eq!(
            cache
                .get_or_count("ns", "g", async { Ok(9) })
                .await
                .unwrap(),
            9
        );
        let fail = || async { Err(Error::S3("down".into())) };
        assert!(cache.get_or_count("ns", "h", fail()).await.is_err());
        assert_eq!(
            cache
                .get_or_count("ns", "h", async { Ok(1) })
                .await
                .unwrap(),
            1
        );
        let none = PendingCache::new(std::time::Duration::ZERO);
        assert_eq!(
            none.get_or_count("ns", "f", async { Ok(3) }).await.unwrap(),
            3
        );
        assert_eq!(
            none.get_or_count("ns", "f", async { Ok(4) }).await.unwrap(),
            4
        );
    }
}
