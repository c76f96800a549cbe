//! The MinIO / S3 trigger (`KIPPER_TRIGGER=minio`), in two modes.
//! - Poll (default, any S3-compatible server): [`S3Source`] lists the bucket (under an optional
//!   prefix), diffs it against the checkpoint (its format is shared with kipper-controller, so
//!   it lives in [`kipper_contract::checkpoint`]), hands each created, overwritten or deleted
//!   object to the pump as an S3 event [`record`], and writes the checkpoint after each
//!   acknowledged batch. Only the replica holding the [`lease`] polls.
//! - Webhook (upstream-compatible): [`crate::webhook`] receives MinIO's notifications and
//!   delivers their records itself, beside the pump; it is no source and lives outside this
//!   module.
//!
//! A change that fails every attempt is logged, counted and checkpointed (CONTRACT section 2:
//! "S3: logged and counted"); it is not retried forever.
//!
//! Architecture Invariant: the checkpoint only ever gains a key at an etag after that change was
//! acknowledged (2xx or dead-lettered), and is written with a conditional PUT, so a crash replays
//! at most what was acknowledged since the last write (about a second) and never skips a change.

pub mod bucket;
pub mod lease;
pub mod record;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kipper_contract::checkpoint::{Change, Checkpoint, checkpoint_key};

use self::bucket::{Bucket, Written};
use self::lease::{Lease, LeaseKeeper};
use super::{Claimed, DeadLetter, Source};
use crate::config::{S3Config, S3Mode};
use crate::{Error, Result};

/// How many times a checkpoint write is merged and retried after another writer won the race.
const WRITE_TRIES: usize = 5;

/// While changes are in flight the checkpoint is written at most this often: it holds the whole
/// bucket state, so writing it per batch of a big bucket would upload it hundreds of times.
/// Whenever nothing is in flight (the end of a round, a shutdown) it is written at once, so a
/// graceful restart never replays; a crash replays at most this much of acknowledged work.
const SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// The poll-mode bucket source.
#[derive(Debug)]
pub struct S3Source {
    bucket: Bucket,
    prefix: String,
    checkpoint_key: String,
    start_now: bool,
    lease: LeaseKeeper,
    /// The lease generation whose checkpoint is loaded.
    lease_generation: u64,
    /// The delivered state: the last written checkpoint plus `unsaved`.
    checkpoint: Checkpoint,
    /// Etag of the checkpoint object as last read or written; `None`: it does not exist.
    checkpoint_etag: Option<String>,
    /// Whether `checkpoint` is known to match the stored one (else reload before a round).
    checkpoint_loaded: bool,
    /// Acknowledged changes not yet in the stored checkpoint.
    unsaved: Vec<Change>,
    /// Changes of the current round not yet claimed.
    pending: VecDeque<Change>,
    /// Changes claimed and not yet settled.
    held: usize,
    /// When the checkpoint was last written.
    saved_at: Instant,
}

impl S3Source {
    /// Checks that the bucket is reachable with the given keys; opens no poll round yet.
    pub async fn connect(config: &S3Config) -> Result<Self> {
        let S3Mode::Poll {
            prefix,
            start_now,
            lease,
        } = &config.mode
        else {
            return Err(Error::config(
                "KIPPER_MINIO_MODE",
                "webhook mode has no poll source; run the webhook receiver",
            ));
        };
        let bucket = Bucket::new(&config.connection, &config.bucket);
        bucket.check(prefix).await?;
        // The pod name: a restarted container of the same pod takes its own lease back at once.
        let holder = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| format!("kipper-poll-{:08x}", rand::random::<u32>()));
        let keeper = LeaseKeeper::start(
            Lease::new(&config.consumer, &holder, *lease),
            bucket.clone(),
            *lease,
        )
        .await?;
        tracing::info!(
            message = "S3 bucket reachable; polling it while this replica holds the lease.",
            bucket = %config.bucket,
            prefix = %prefix,
            endpoint = %config.connection.endpoint,
            lease_held = keeper.is_held(),
        );
        Ok(Self {
            bucket,
            prefix: prefix.clone(),
            checkpoint_key: checkpoint_key(&config.consumer),
            start_now: *start_now,
            lease: keeper,
            lease_generation: 0,
            checkpoint: Checkpoint::empty(prefix),
            checkpoint_etag: None,
            checkpoint_loaded: false,
            unsaved: Vec::new(),
            pending: VecDeque::new(),
            held: 0,
            saved_at: Instant::now(),
        })
    }

    /// Whether this replica may poll now; a newly gained lease means another replica may have
    /// advanced the checkpoint meanwhile, so it is reloaded.
    fn hold_lease(&mut self) -> bool {
        if !self.lease.is_held() {
            return false;
        }
        let generation = self.lease.generation();
        if generation != self.lease_generation {
            self.lease_generation = generation;
            self.checkpoint_loaded = false;
        }
        true
    }

    async fn load_checkpoint(&mut self) -> Result<()> {
        match self.bucket.read(&self.checkpoint_key).await? {
            Some((body, etag)) => {
                let stored: Checkpoint =
                    serde_json::from_slice(&body).map_err(|e| Error::Source {
                        kind: "s3",
                        message: format!(
                            "checkpoint {} is not valid JSON ({e}); delete it to start over",
                            self.checkpoint_key
                        ),
                    })?;
                if stored.prefix == self.prefix {
                    self.checkpoint = stored;
                } else {
                    // The watched prefix changed: keep what was delivered under the new one.
                    tracing::warn!(message = "Checkpoint was for another prefix; keeping its objects under the new one.", old = %stored.prefix, new = %self.prefix);
                    self.checkpoint = Checkpoint::empty(&self.prefix);
                    self.checkpoint.objects = stored
                        .objects
                        .into_iter()
                        .filter(|(k, _)| k.starts_with(&self.prefix))
                        .collect();
                }
                self.checkpoint_etag = Some(etag);
            }
            None => {
                self.checkpoint = Checkpoint::empty(&self.prefix);
                self.checkpoint_etag = None;
            }
        }
        self.checkpoint_loaded = true;
        Ok(())
    }

    /// Write the checkpoint conditionally; when another writer won, merge our unsaved changes
    /// into theirs and try again.
    async fn save_checkpoint(&mut self) -> Result<()> {
        for _ in 0..WRITE_TRIES {
            let body =
                Bytes::from(
                    serde_json::to_vec(&self.checkpoint).map_err(|e| Error::Source {
                        kind: "s3",
                        message: format!("encoding the checkpoint: {e}"),
                    })?,
                );
            match self
                .bucket
                .write_if(&self.checkpoint_key, body, self.checkpoint_etag.as_deref())
                .await?
            {
                Written::Ok(etag) => {
                    self.checkpoint_etag = Some(etag);
                    self.unsaved.clear();
                    self.saved_at = Instant::now();
                    return Ok(());
                }
                Written::Conflict => {
                    tracing::info!(message = "Checkpoint changed under us; merging.", key = %self.checkpoint_key);
                    let unsaved = std::mem::take(&mut self.unsaved);
                    self.load_checkpoint().await?;
                    self.checkpoint.apply(&unsaved);
                    self.unsaved = unsaved;
                }
            }
        }
        Err(Error::Source {
            kind: "s3",
            message: format!("checkpoint {} keeps changing under us", self.checkpoint_key),
        })
    }

    /// Write the checkpoint when nothing is in flight or [`SAVE_INTERVAL`] has passed.
    async fn save_if_due(&mut self) -> Result<()> {
        if !self.unsaved.is_empty() && (self.held == 0 || self.saved_at.elapsed() >= SAVE_INTERVAL)
        {
            self.save_checkpoint().await?;
        }
        Ok(())
    }

    /// Start a poll round: list the bucket and queue its changes since the checkpoint.
    async fn start_round(&mut self) -> Result<()> {
        if !self.unsaved.is_empty() {
            self.save_checkpoint().await?;
        }
        if !self.checkpoint_loaded {
            self.load_checkpoint().await?;
        }
        let listed = self.bucket.list(&self.prefix).await?;
        if self.checkpoint_etag.is_none() && self.start_now {
            // No checkpoint and "start from now": what is there now counts as delivered.
            self.checkpoint.adopt(&listed);
            self.save_checkpoint().await?;
            tracing::info!(
                message = "No checkpoint; starting from the bucket as it is now.",
                objects = listed.len()
            );
            return Ok(());
        }
        self.pending = self.checkpoint.diff(&listed).into();
        if !self.pending.is_empty() {
            tracing::debug!(
                message = "Bucket changes found.",
                changes = self.pending.len(),
                listed = listed.len()
            );
        }
        Ok(())
    }

    fn settle(&mut self, changes: impl IntoIterator<Item = Change>) {
        for change in changes {
            self.checkpoint.apply(std::iter::once(&change));
            self.unsaved.push(change);
            self.held = self.held.saturating_sub(1);
        }
    }
}

impl Source for S3Source {
    type Handle = Change;

    fn kind(&self) -> &'static str {
        "s3"
    }

    async fn claim(&mut self, max: usize) -> Result<Vec<Claimed<Change>>> {
        if !self.hold_lease() {
            // Another replica polls; drop what we had queued (it delivers it) and stay idle.
            self.pending.clear();
            self.checkpoint_loaded = false;
            return Ok(Vec::new());
        }
        if self.pending.is_empty() && self.held == 0 {
            self.start_round().await?;
        }
        let now = chrono::Utc::now();
        let take = max.min(self.pending.len());
        let claimed: Vec<Claimed<Change>> = self
            .pending
            .drain(..take)
            .map(|change| Claimed {
                id: change.id(self.bucket.name()),
                body: Bytes::from(
                    record::event_record(self.bucket.name(), &change, &now).to_string(),
                ),
                handle: change,
            })
            .collect();
        self.held += claimed.len();
        Ok(claimed)
    }

    async fn ack(&mut self, events: &[Claimed<Change>]) -> Result<()> {
        self.settle(events.iter().map(|e| e.handle.clone()));
        self.save_if_due().await
    }

    async fn dead_letter(&mut self, events: &[DeadLetter<Change>]) -> Result<()> {
        // The pump has logged each one; S3 has no place to park them, so they count as handled.
        self.settle(events.iter().map(|d| d.event.handle.clone()));
        self.save_if_due().await
    }

    async fn release(&mut self, events: &[Claimed<Change>]) -> Result<()> {
        self.held = self.held.saturating_sub(events.len());
        for event in events.iter().rev() {
            self.pending.push_front(event.handle.clone());
        }
        // A shutdown: what was acknowledged before is written now that nothing is in flight.
        self.save_if_due().await
    }

    async fn backlog(&mut self) -> Result<Option<u64>> {
        Ok(Some((self.pending.len() + self.held) as u64))
    }

    /// Gives the bucket lease up: another replica (or the next pod) takes over now, not after
    /// the lease expires.
    async fn close(&mut self) -> Result<()> {
        self.lease.give_up().await
    }
}
