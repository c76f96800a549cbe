//! The controller's reading of the checkpoint: how many changes are pending, counted in one
//! merge pass over two sorted maps, without building the changes kipper-poll would deliver.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::{Checkpoint, RESERVED_PREFIX, unquote_etag};

/// Number of changes in `listed` (key -> etag, the bucket now, quoted or not) not yet in
/// `checkpoint`. Both maps are sorted, so one merge pass counts them (no lookup per key).
pub fn pending_changes(listed: &BTreeMap<String, String>, checkpoint: Option<&Checkpoint>) -> u64 {
    let visible = |k: &String| !k.starts_with(RESERVED_PREFIX);
    let Some(cp) = checkpoint else {
        return listed.keys().filter(|k| visible(k)).count() as u64;
    };
    let mut now = listed.iter().filter(|(k, _)| visible(k)).peekable();
    let mut then = cp.objects.iter().filter(|(k, _)| visible(k)).peekable();
    let mut pending = 0u64;
    loop {
        match (now.peek(), then.peek()) {
            (None, None) => return pending,
            // Listed, not checkpointed: created.
            (Some(_), None) => {
                pending += 1;
                now.next();
            }
            // Checkpointed, not listed: deleted.
            (None, Some(_)) => {
                pending += 1;
                then.next();
            }
            (Some((k_now, tag_now)), Some((k_then, tag_then))) => match k_now.cmp(k_then) {
                Ordering::Less => {
                    pending += 1;
                    now.next();
                }
                Ordering::Greater => {
                    pending += 1;
                    then.next();
                }
                Ordering::Equal => {
                    // Overwritten when the etag moved.
                    if unquote_etag(tag_now) != unquote_etag(tag_then) {
                        pending += 1;
                    }
                    now.next();
                    then.next();
                }
            },
        }
    }
}
