//! Both readings of the checkpoint, and the test that holds them to the same answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

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

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn etags_are_stored_bare() {
    assert_eq!(unquote_etag("\"abc\""), "abc");
    assert_eq!(unquote_etag("abc"), "abc");
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
fn checkpoint_parses_the_shared_format_and_refuses_a_partial_one() {
    let cp: Checkpoint =
        serde_json::from_str(r#"{"version":1,"prefix":"in/","objects":{"in/a":"\"e1\""}}"#)
            .unwrap();
    assert_eq!(cp.prefix, "in/");
    assert_eq!(cp.objects["in/a"], "\"e1\"");
    assert!(serde_json::from_str::<Checkpoint>(r#"{"version":1,"objects":{}}"#).is_err());
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

#[test]
fn without_a_checkpoint_every_visible_object_is_pending() {
    let listed = map(&[
        ("a.png", "\"1\""),
        ("b.png", "\"2\""),
        (".kipper/checkpoints/f.json", "\"x\""),
    ]);
    assert_eq!(pending_changes(&listed, None), 2);
    assert_eq!(pending_changes(&BTreeMap::new(), None), 0);
}

#[test]
fn created_overwritten_and_deleted_objects_are_pending() {
    let cp = Checkpoint {
        version: 1,
        prefix: String::new(),
        objects: map(&[
            ("same", "1"),
            ("changed", "2"),
            ("gone", "3"),
            (".kipper/x", "9"),
        ]),
    };
    let listed = map(&[("same", "\"1\""), ("changed", "\"22\""), ("new", "\"4\"")]);
    // changed + new + gone; `.kipper/x` is reserved even when missing from the listing.
    assert_eq!(pending_changes(&listed, Some(&cp)), 3);
    let caught_up = map(&[("same", "\"1\""), ("changed", "\"2\""), ("gone", "\"3\"")]);
    assert_eq!(pending_changes(&caught_up, Some(&cp)), 0);
}

/// A small deterministic generator (xorshift64): the crate depends on serde alone.
struct Xorshift(u64);

impl Xorshift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    /// Up to 40 keys from a pool of 30 (one in ten reserved), with one of three etags.
    fn bucket(&mut self) -> BTreeMap<String, String> {
        (0..self.below(40))
            .map(|_| {
                let dir = if self.below(10) == 0 { ".kipper/" } else { "" };
                (
                    format!("{dir}k{}", self.below(30)),
                    self.below(3).to_string(),
                )
            })
            .collect()
    }
}

#[test]
fn the_merge_pass_agrees_with_a_lookup_per_key_and_with_the_diff() {
    let mut rng = Xorshift(0x9E37_79B9_7F4A_7C15);
    for _ in 0..500 {
        let listed = rng.bucket();
        let objects = rng.bucket();
        let visible = |k: &str| !k.starts_with(RESERVED_PREFIX);
        let naive = listed
            .iter()
            .filter(|(k, v)| visible(k) && objects.get(*k) != Some(v))
            .count()
            + objects
                .keys()
                .filter(|k| visible(k) && !listed.contains_key(*k))
                .count();
        let cp = Checkpoint {
            version: VERSION,
            prefix: String::new(),
            objects,
        };
        // The controller lists etags quoted; kipper-poll unquotes them before diffing.
        let quoted: BTreeMap<String, String> = listed
            .iter()
            .map(|(k, v)| (k.clone(), format!("\"{v}\"")))
            .collect();
        let states: BTreeMap<String, ObjectState> =
            listed.iter().map(|(k, v)| (k.clone(), state(v))).collect();
        let pending = pending_changes(&quoted, Some(&cp));
        assert_eq!(pending, naive as u64, "{listed:?} vs {cp:?}");
        assert_eq!(
            pending,
            cp.diff(&states).len() as u64,
            "{listed:?} vs {cp:?}"
        );
    }
}
