//! The poll-mode checkpoint: the bucket state whose changes have all been delivered, stored in
//! the watched bucket as `.kipper/checkpoints/<consumer>.json` (`<consumer>` is the function
//! name). The format is shared with kipper-controller, which counts pending changes from it to
//! scale the function from zero:
//!
//! `{"version": 1, "prefix": "<watched prefix or empty>", "objects": {"<key>": "<etag>", ...}}`
//!
//! Etags are stored without the quotes S3 puts around them. Pending = keys listed now whose etag
//! differs from or is absent in `objects` (created, overwritten) + keys in `objects` no longer
//! listed (deleted); no checkpoint = every listed object is pending. Keys under `.kipper/` are
//! reserved: never an event, never pending.
//!
//! Architecture Invariant: the checkpoint only ever gains a key at an etag after that change was
//! acknowledged (2xx or dead-lettered), and is written with a conditional PUT, so a crash replays
//! at most what was acknowledged since the last write (about a second) and never skips a change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Everything under this prefix is Kipper's own: never an event, never pending.
pub const RESERVED_PREFIX: &str = ".kipper/";

/// The checkpoint format version this code writes and reads.
pub const VERSION: u32 = 1;

/// The object key of `consumer`'s checkpoint.
pub fn checkpoint_key(consumer: &str) -> String {
    format!("{RESERVED_PREFIX}checkpoints/{consumer}.json")
}

/// The delivered state of the bucket under `prefix`.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn state(etag: &str) -> ObjectState {
        ObjectState {
            etag: etag.into(),
            size: 1,
            last_modified: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn listing(entries: &[(&str, &str)]) -> BTreeMap<String, ObjectState> {
        entries
            .iter()
            .map(|(k, e)| ((*k).to_owned(), state(e)))
            .collect()
    }

    #[test]
    fn diff_finds_created_overwritten_and_deleted() {
        let mut cp = Checkpoint::empty("");
        cp.objects.insert("same".into(), "e1".into());
        cp.objects.insert("overwritten".into(), "e1".into());
        cp.objects.insert("deleted".into(), "e1".into());
        let now = listing(&[("same", "e1"), ("overwritten", "e2"), ("created", "e3")]);
        let changes = cp.diff(&now);
        let summary: Vec<(&str, Option<&str>)> = changes
            .iter()
            .map(|c| match &c.kind {
                ChangeKind::Put(s) => (c.key.as_str(), Some(s.etag.as_str())),
                ChangeKind::Delete => (c.key.as_str(), None),
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("created", Some("e3")),
                ("deleted", None),
                ("overwritten", Some("e2"))
            ]
        );
        cp.apply(&changes);
        assert!(cp.diff(&now).is_empty());
        assert_eq!(cp.objects.len(), 3);
    }

    #[test]
    fn reserved_and_out_of_prefix_keys_are_never_changes() {
        let mut cp = Checkpoint::empty("in/");
        cp.objects.insert("in/gone".into(), "e".into());
        let now = listing(&[
            (".kipper/checkpoints/f.json", "x"),
            ("out/a", "e"),
            ("in/a", "e"),
        ]);
        let keys: Vec<String> = cp.diff(&now).into_iter().map(|c| c.key).collect();
        assert_eq!(keys, ["in/a", "in/gone"]);
        let root = Checkpoint::empty("");
        assert_eq!(
            root.diff(&listing(&[(".kipper/leases/f.json", "x")])),
            Vec::new()
        );
    }

    #[test]
    fn adopt_makes_the_listing_delivered() {
        let mut cp = Checkpoint::empty("");
        let now = listing(&[("a", "1"), ("b", "2")]);
        cp.adopt(&now);
        assert!(cp.diff(&now).is_empty());
    }

    #[test]
    fn serialized_form_is_the_shared_spec() {
        let mut cp = Checkpoint::empty("p/");
        cp.objects.insert("p/a".into(), "abc".into());
        let json = serde_json::to_value(&cp).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"version": 1, "prefix": "p/", "objects": {"p/a": "abc"}})
        );
        assert_eq!(checkpoint_key("fn"), ".kipper/checkpoints/fn.json");
    }

    #[test]
    fn change_ids_are_stable_per_version() {
        let put = Change {
            key: "k".into(),
            kind: ChangeKind::Put(state("e1")),
        };
        assert_eq!(put.id("b"), "s3:b/k@e1");
        assert_eq!(
            Change {
                key: "k".into(),
                kind: ChangeKind::Delete
            }
            .id("b"),
            "s3:b/k@deleted"
        );
    }
}
