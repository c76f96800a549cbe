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
use serde::{Deserialize, Serialize};

use super::bucket::{Bucket, Written};
use super::checkpoint::RESERVED_PREFIX;
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
    /// Etag of the lease object as last read or written by us.
    etag: Option<String>,
    held: bool,
}

impl Lease {
    /// The lease of `consumer` as seen by the replica `holder`.
    pub fn new(consumer: &str, holder: &str, duration: Duration) -> Self {
        Self {
            key: lease_key(consumer),
            holder: holder.to_owned(),
            duration,
            etag: None,
            held: false,
        }
    }

    /// Whether this replica held the lease at the last [`Lease::acquire`].
    pub fn is_held(&self) -> bool {
        self.held
    }

    /// Take or renew the lease; true when this replica holds it now. Call well within the lease
    /// duration (a third of it) to keep it.
    pub async fn acquire(&mut self, bucket: &Bucket) -> Result<bool> {
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
                    self.held = false;
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
        match bucket
            .write_if(&self.key, body, expected.as_deref())
            .await?
        {
            Written::Ok(etag) => {
                self.etag = Some(etag);
                self.held = true;
            }
            Written::Conflict => self.held = false,
        }
        Ok(self.held)
    }

    /// Give the lease up (shutdown), so that another replica need not wait for it to expire.
    pub async fn release(&mut self, bucket: &Bucket) -> Result<()> {
        if !self.held {
            return Ok(());
        }
        self.held = false;
        let doc = LeaseDoc {
            holder: String::new(),
            expires_at: 0,
        };
        let body = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
        bucket
            .write_if(&self.key, body, self.etag.as_deref())
            .await?;
        Ok(())
    }
}
