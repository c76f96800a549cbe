//! Watches: a chunked stream of `{"type": ..., "object": ...}` lines. It starts with the
//! changes after the requested resourceVersion (or, without one, an ADDED per current object),
//! then follows live changes until `timeoutSeconds`. An object that stops matching the
//! selectors is reported DELETED, one that starts matching ADDED, as the real server does.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;

use super::query::{FieldSelector, LabelSelector};
use super::status::Failure;
use super::store::{Change, Store};
use super::target::Resource;

/// Without `timeoutSeconds` the real server picks 30-60 minutes.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// Which objects a list or watch is about.
pub(super) struct Filter {
    pub(super) resource: Resource,
    pub(super) namespace: Option<String>,
    pub(super) labels: LabelSelector,
    pub(super) fields: FieldSelector,
}

impl Filter {
    fn in_scope(&self, change: &Change) -> bool {
        change.location.resource == self.resource
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| change.location.namespace.as_deref() == Some(ns))
    }

    pub(super) fn matches(&self, object: &Value) -> bool {
        self.labels.matches(object) && self.fields.matches(object)
    }

    /// The event a watch with this filter sees for `change`, if any.
    fn event(&self, change: &Change) -> Option<Value> {
        if !self.in_scope(change) {
            return None;
        }
        let was = change.before.as_ref().is_some_and(|b| self.matches(b));
        let is = self.matches(&change.object);
        let kind = match (was, is, change.removed) {
            (_, true, true) | (true, false, true) => "DELETED",
            (true, true, false) => "MODIFIED",
            (false, true, false) => "ADDED",
            (true, false, false) => "DELETED",
            (false, false, _) => return None,
        };
        Some(json!({"type": kind, "object": change.object}))
    }
}

fn line(event: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(event).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

struct Watch {
    replay: VecDeque<Bytes>,
    live: broadcast::Receiver<Arc<Change>>,
    filter: Filter,
    deadline: Instant,
    ended: bool,
}

/// Starts a watch: subscribes and takes the replay under the caller's store lock, so no change
/// falls between them.
pub(super) fn start(
    store: &Store,
    filter: Filter,
    since: Option<u64>,
    timeout: Option<Duration>,
) -> impl Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + use<> {
    let live = store.subscribe();
    let replay: VecDeque<Bytes> = match since {
        Some(revision) => store
            .changes_since(revision)
            .iter()
            .filter_map(|change| filter.event(change))
            .map(|event| line(&event))
            .collect(),
        None => store
            .list(&filter.resource, filter.namespace.as_deref())
            .filter(|stored| filter.matches(&stored.object))
            .map(|stored| line(&json!({"type": "ADDED", "object": stored.object})))
            .collect(),
    };
    let watch = Watch {
        replay,
        live,
        filter,
        deadline: Instant::now() + timeout.unwrap_or(DEFAULT_TIMEOUT),
        ended: false,
    };
    futures::stream::unfold(watch, |mut watch| async move {
        let frame = |bytes| Ok(Frame::data(bytes));
        if let Some(bytes) = watch.replay.pop_front() {
            return Some((frame(bytes), watch));
        }
        while !watch.ended {
            match tokio::time::timeout_at(watch.deadline, watch.live.recv()).await {
                Ok(Ok(change)) => {
                    if let Some(event) = watch.filter.event(&change) {
                        return Some((frame(line(&event)), watch));
                    }
                }
                Ok(Err(RecvError::Lagged(_))) => {
                    watch.ended = true;
                    let expired = json!({"type": "ERROR", "object": Failure::expired().to_value()});
                    return Some((frame(line(&expired)), watch));
                }
                Ok(Err(RecvError::Closed)) | Err(_) => watch.ended = true,
            }
        }
        None
    })
}
