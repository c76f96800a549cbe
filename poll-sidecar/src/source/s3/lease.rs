//! One poller per function: the replicas of a function (KEDA runs up to 10) take turns on the
//! bucket through a lease object, `.kipper/leases/<consumer>.json`, written with conditional
//! PUTs. Only the holder lists and delivers, so no change is delivered by two replicas at once;
//! a holder that dies stops renewing and another replica takes over when the lease expires.
//!
//! The expiry is wall-clock time written by the holder, so replicas' clocks must agree to well
//! within the lease (NTP-synchronised nodes do); a holder stalled longer than the lease may
//! overlap with its successor, which at worst delivers a change twice, never loses one.

use std::time::Duration;

use bytes::Bytes;
use kipper_contract::checkpoint::RESERVED_PREFIX;
use serde::{Deserialize, Serialize};

use super::bucket::{Bucket, Written};
use crate::Result;

/// The object key of `consumer`'s lease.
pub fn lease_key(consumer: &str) -> String {
    format!("{RESERVED_PREFIX}leases/{consumer}.json")
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeaseDoc {
    holder: String,
    /// Unix milliseconds after which the lease is free.
    expires_at: i64,
}

/// This replica's view of the lease.
#[derive(Debug)]
pub struct Lease {
    key: String,
    holder: String,
    duration: Duration,
}

impl Lease {
    /// The lease of `consumer` as seen by the replica `holder`.
    pub fn new(consumer: &str, holder: &str, duration: Duration) -> Self {
        Self {
            key: lease_key(consumer),
            holder: holder.to_owned(),
            duration,
        }
    }

    /// Take or renew the lease; true when this replica holds it now. Call well within the lease
    /// duration (a third of it) to keep it.
    pub async fn acquire(&self, bucket: &Bucket) -> Result<bool> {
        let now = chrono::Utc::now().timestamp_millis();
        let current = bucket.read(&self.key).await?;
        let expected = match &current {
            None => None,
            Some((body, etag)) => {
                let doc = serde_json::from_slice::<LeaseDoc>(body).ok();
                let free = doc
                    .as_ref()
                    .is_none_or(|d| d.holder == self.holder || d.expires_at < now);
                if !free {
                    return Ok(false);
                }
                Some(etag.clone())
            }
        };
        let millis = i64::try_from(self.duration.as_millis()).unwrap_or(i64::MAX);
        let doc = LeaseDoc {
            holder: self.holder.clone(),
            expires_at: now.saturating_add(millis),
        };
        let body = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
        // A conflict: another replica wrote the lease between our read and our write.
        Ok(matches!(
            bucket
                .write_if(&self.key, body, expected.as_deref())
                .await?,
            Written::Ok(_)
        ))
    }
}

impl Lease {
    /// Give the lease up if this replica holds it (shutdown), so that another replica takes
    /// over at once instead of after the expiry. A lost race leaves the lease to its new holder.
    pub async fn release(&self, bucket: &Bucket) -> Result<()> {
        let Some((body, etag)) = bucket.read(&self.key).await? else {
            return Ok(());
        };
        let ours = serde_json::from_slice::<LeaseDoc>(&body).is_ok_and(|d| d.holder == self.holder);
        if ours {
            let doc = LeaseDoc {
                holder: String::new(),
                expires_at: 0,
            };
            let body = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
            bucket.write_if(&self.key, body, Some(&etag)).await?;
        }
        Ok(())
    }
}

/// Keeps the lease renewed from a background task, so that a pump busy with slow deliveries
/// (and so not claiming) does not lose it to another replica that would then deliver the same
/// changes. Stopped by [`LeaseKeeper::give_up`], or when dropped.
#[derive(Debug)]
pub struct LeaseKeeper {
    state: std::sync::Arc<KeeperState>,
    /// The renewal task; `None` once given up.
    task: Option<tokio::task::JoinHandle<()>>,
    /// What [`LeaseKeeper::give_up`] needs to release the lease.
    release: (Lease, Bucket),
}
#[derive(Debug, Default)]
struct KeeperState {
    held: std::sync::atomic::AtomicBool,
    /// Bumped each time the lease is (re)gained: the holder must reload the checkpoint.
    gained: std::sync::atomic::AtomicU64,
}

impl LeaseKeeper {
    /// Try the lease once now, then keep renewing it every third of its duration.
    pub async fn start(lease: Lease, bucket: Bucket, duration: Duration) -> Result<Self> {
        use std::sync::atomic::Ordering;
        let state = std::sync::Arc::new(KeeperState::default());
        let held = lease.acquire(&bucket).await?;
        let release = (
            Lease {
                key: lease.key.clone(),
                holder: lease.holder.clone(),
                duration: lease.duration,
            },
            bucket.clone(),
        );
        state.held.store(held, Ordering::SeqCst);
        state.gained.store(u64::from(held), Ordering::SeqCst);
        let shared = state.clone();
        let task = tokio::spawn(async move {
            let mut renewed = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(duration / 3).await;
                let was = shared.held.load(Ordering::SeqCst);
                let now = match lease.acquire(&bucket).await {
                    Ok(now) => {
                        renewed = tokio::time::Instant::now();
                        now
                    }
                    Err(error) => {
                        tracing::warn!(message = "Lease renewal failed.", %error);
                        // Still ours until it would have expired; after that, assume not.
                        was && renewed.elapsed() < duration * 2 / 3
                    }
                };
                if now && !was {
                    shared.gained.fetch_add(1, Ordering::SeqCst);
                    tracing::info!(message = "Took the bucket lease; this replica polls now.");
                } else if was && !now {
                    tracing::info!(message = "Lost the bucket lease; another replica polls.");
                }
                shared.held.store(now, Ordering::SeqCst);
            }
        });
        Ok(Self {
            state,
            task: Some(task),
            release,
        })
    }

    /// Stops renewing and gives the lease up if this replica still holds it (shutdown), so
    /// that another replica polls at once rather than after the lease expires.
    pub async fn give_up(&mut self) -> Result<()> {
        // The renewal stops first: one running after the release would take the lease again.
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        self.state
            .held
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let (lease, bucket) = &self.release;
        lease.release(bucket).await
    }

    /// Whether this replica holds the lease.
    pub fn is_held(&self) -> bool {
        self.state.held.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many times the lease was gained so far (a change means: reload the checkpoint).
    pub fn generation(&self) -> u64 {
        self.state.gained.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
