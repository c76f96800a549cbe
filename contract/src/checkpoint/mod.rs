//! The S3 checkpoint: the bucket state whose changes have all been delivered, stored in the
//! watched bucket as `.kipper/checkpoints/<consumer>.json` (`<consumer>` is the function name).
//! kipper-poll writes it after acknowledged changes; kipper-controller reads it to count the
//! pending changes that wake a minio function from zero replicas (KEDA has no S3 scaler).
//!
//! `{"version": 1, "prefix": "<watched prefix or empty>", "objects": {"<key>": "<etag>", ...}}`
//!
//! Etags are stored without the quotes S3 puts around them ([`unquote_etag`]). Pending = keys
//! listed now whose etag differs from or is absent in `objects` (created, overwritten) + keys in
//! `objects` no longer listed (deleted); no checkpoint = every listed object is pending. Keys
//! under [`RESERVED_PREFIX`] are Kipper's own: never an event, never pending.
//!
//! Both readings live here, side by side: [`Checkpoint::diff`] (kipper-poll: which changes to
//! deliver) and [`pending_changes`] (the controller: how many there are, without building them),
//! and a test holds them to the same answer.

mod pending;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use pending::pending_changes;

/// Everything under this prefix is Kipper's own (checkpoints, leases): never an event, never
/// pending.
pub const RESERVED_PREFIX: &str = ".kipper/";

/// The checkpoint format version this code writes and reads.
pub const VERSION: u32 = 1;

/// The object key of `consumer`'s checkpoint.
pub fn checkpoint_key(consumer: &str) -> String {
    format!("{RESERVED_PREFIX}checkpoints/{consumer}.json")
}

/// An etag without the quotes S3 puts around it in listings and headers: the checkpoint stores
/// it bare, and etags are compared bare.
#[inline]
pub fn unquote_etag(etag: &str) -> &str {
    etag.trim_matches('"')
}

/// The delivered state of the bucket under `prefix`. Every field is required: kipper-poll
/// always writes all three, and a checkpoint missing one is refused rather than guessed at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version, [`VERSION`].
    pub version: u32,
    /// The watched prefix ("" for the whole bucket).
    pub prefix: String,
    /// Key -> etag of every object whose latest change was delivered.
    pub objects: BTreeMap<String, String>,
}

/// One object as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectState {
    /// Entity tag, as listed (quotes removed).
    pub etag: String,
    /// Size in bytes.
    pub size: i64,
    /// Last-modified time, RFC 3339.
    pub last_modified: String,
}

/// What happened to a key since the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// Created or overwritten: the listing shows it with an etag the checkpoint lacks.
    Put(ObjectState),
    /// Deleted: in the checkpoint, absent from the listing.
    Delete,
}

/// One change to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The object key.
    pub key: String,
    /// What happened.
    pub kind: ChangeKind,
}

impl Change {
    /// The id of this change for the idempotency header: the same on every redelivery.
    pub fn id(&self, bucket: &str) -> String {
        match &self.kind {
            ChangeKind::Put(state) => format!("s3:{bucket}/{}@{}", self.key, state.etag),
            ChangeKind::Delete => format!("s3:{bucket}/{}@deleted", self.key),
        }
    }
}

impl Checkpoint {
    /// An empty checkpoint for `prefix`: every listed object is pending.
    pub fn empty(prefix: &str) -> Self {
        Self {
            version: VERSION,
            prefix: prefix.to_owned(),
            objects: BTreeMap::new(),
        }
    }

    /// The changes between this checkpoint and `listed`, keys in order. Reserved keys and keys
    /// outside `prefix` are never changes.
    pub fn diff(&self, listed: &BTreeMap<String, ObjectState>) -> Vec<Change> {
        let watched =
            |key: &str| key.starts_with(&self.prefix) && !key.starts_with(RESERVED_PREFIX);
        let mut changes: Vec<Change> = listed
            .iter()
            .filter(|(key, state)| {
                watched(key) && self.objects.get(key.as_str()) != Some(&state.etag)
            })
            .map(|(key, state)| Change {
                key: key.clone(),
                kind: ChangeKind::Put(state.clone()),
            })
            .collect();
        changes.extend(
            self.objects
                .keys()
                .filter(|key| watched(key) && !listed.contains_key(key.as_str()))
                .map(|key| Change {
                    key: key.clone(),
                    kind: ChangeKind::Delete,
                }),
        );
        changes.sort_by(|a, b| a.key.cmp(&b.key));
        changes
    }

    /// Record `changes` as delivered.
    pub fn apply<'a>(&mut self, changes: impl IntoIterator<Item = &'a Change>) {
        for change in changes {
            match &change.kind {
                ChangeKind::Put(state) => {
                    self.objects.insert(change.key.clone(), state.etag.clone());
                }
                ChangeKind::Delete => {
                    self.objects.remove(&change.key);
                }
            }
        }
    }

    /// Mark every listed object delivered without delivering it (start from "now").
    pub fn adopt(&mut self, listed: &BTreeMap<String, ObjectState>) {
        let changes = self.diff(listed);
        self.apply(&changes);
    }
}
