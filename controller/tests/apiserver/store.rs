//! The objects of the fake cluster: where each lives, its field owners, the global
//! resourceVersion counter, the history of changes that watches replay, and deletion with
//! finalizers, garbage collection of dependents and of a deleted namespace's content.
//!
//! Everything here runs under the one store mutex, so a write, its event and the history entry
//! are one atomic step and a watch that subscribes under the same lock misses nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::Seen;
use super::fields::{self, Owners};
use super::target::{Location, Resource};

/// Watches further behind than this many changes are told to list again (HTTP 410).
const EVENT_BUFFER: usize = 16_384;

/// One stored object and who owns its fields.
pub(super) struct Stored {
    pub(super) object: Value,
    pub(super) owners: Owners,
    pub(super) location: Location,
}

/// One write, as watches see it: the object before and after (after removal: its last state).
pub(super) struct Change {
    pub(super) revision: u64,
    pub(super) location: Location,
    pub(super) before: Option<Value>,
    pub(super) object: Value,
    pub(super) removed: bool,
}

/// Whether a namespace can take new objects.
pub(super) enum NamespaceState {
    Missing,
    Terminating,
    Active,
}

pub(super) struct Store {
    objects: BTreeMap<String, Stored>,
    revision: u64,
    uids: u64,
    /// Kind of each resource seen, to name lists (`ConfigMapList`).
    kinds: BTreeMap<Resource, String>,
    history: Vec<Arc<Change>>,
    events: broadcast::Sender<Arc<Change>>,
    pub(super) log: Vec<Seen>,
    pub(super) failures: Vec<(http::Method, String, u16)>,
    /// Uids of removed objects: a dependent created later with only such owners is collected
    /// at once, as the garbage collector collects dependents of owners that are gone.
    removed_uids: std::collections::HashSet<String>,
}

/// Now, as the API server writes timestamps (RFC 3339, seconds).
pub(super) fn timestamp() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = json!({});
    }
    let metadata = &mut object["metadata"];
    if !metadata.is_object() {
        *metadata = json!({});
    }
    match metadata {
        Value::Object(map) => map,
        // Made a map just above.
        _ => unreachable!("metadata is a map"),
    }
}

fn is_finalized(object: &Value) -> bool {
    object["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty())
}

impl Store {
    pub(super) fn new() -> Self {
        Self {
            objects: BTreeMap::new(),
            revision: 1,
            uids: 0,
            kinds: BTreeMap::new(),
            history: Vec::new(),
            events: broadcast::channel(EVENT_BUFFER).0,
            log: Vec::new(),
            failures: Vec::new(),
            removed_uids: std::collections::HashSet::new(),
        }
    }

    /// The current resourceVersion (of the last write).
    pub(super) fn revision(&self) -> u64 {
        self.revision
    }

    pub(super) fn get(&self, key: &str) -> Option<&Stored> {
        self.objects.get(key)
    }

    pub(super) fn keys(&self) -> Vec<String> {
        self.objects.keys().cloned().collect()
    }

    /// Objects of `resource`, in `namespace` or everywhere.
    pub(super) fn list<'a>(
        &'a self,
        resource: &'a Resource,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Stored> + 'a {
        self.objects.values().filter(move |s| {
            s.location.resource == *resource
                && namespace.is_none_or(|ns| s.location.namespace.as_deref() == Some(ns))
        })
    }

    pub(super) fn kind_of(&self, resource: &Resource) -> Option<&str> {
        self.kinds.get(resource).map(String::as_str)
    }

    pub(super) fn namespace_state(&self, namespace: &str) -> NamespaceState {
        match self
            .objects
            .get(&Location::namespace_object(namespace).key())
        {
            None => NamespaceState::Missing,
            Some(ns) if !ns.object["metadata"]["deletionTimestamp"].is_null() => {
                NamespaceState::Terminating
            }
            Some(_) => NamespaceState::Active,
        }
    }

    /// Creates the Namespace object `name` unless it exists.
    pub(super) fn ensure_namespace(&mut self, name: &str) {
        let location = Location::namespace_object(name);
        if !self.objects.contains_key(&location.key()) {
            let namespace = json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name}, "status": {"phase": "Active"}});
            self.write(&location, namespace, Owners::new());
        }
    }

    pub(super) fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.events.subscribe()
    }

    /// The changes after resourceVersion `since`, oldest first.
    pub(super) fn changes_since(&self, since: u64) -> Vec<Arc<Change>> {
        let start = self.history.partition_point(|c| c.revision <= since);
        self.history[start..].to_vec()
    }

    fn new_uid(&mut self) -> String {
        self.uids += 1;
        let random: u64 = rand::random();
        format!(
            "{:08x}-{:04x}-4000-8000-{:012x}",
            random >> 32,
            random & 0xffff,
            self.uids
        )
    }

    /// Stores `object` at `location` as the new state, with its field owners. Fills in what
    /// the server owns (uid, creationTimestamp, generation, resourceVersion); bumps generation
    /// when `spec` changed; a write that changes nothing is no write (no new resourceVersion,
    /// no event), as on a real server. An object being deleted whose last finalizer this write
    /// removed goes away. Returns the object as stored (or as last seen, when it went away).
    pub(super) fn write(
        &mut self,
        location: &Location,
        mut object: Value,
        mut owners: Owners,
    ) -> Value {
        let key = location.key();
        let metadata = metadata_mut(&mut object);
        metadata.insert("name".to_owned(), json!(location.name));
        match &location.namespace {
            Some(ns) => metadata.insert("namespace".to_owned(), json!(ns)),
            None => metadata.remove("namespace"),
        };
        metadata.remove("managedFields");
        metadata.remove("selfLink");
        if object.get("apiVersion").is_none() {
            object["apiVersion"] = json!(location.resource.api_version());
        }
        let previous = self.objects.get(&key);
        if let Some(previous) = previous {
            let old = &previous.object["metadata"];
            for field in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "resourceVersion",
            ] {
                if !old[field].is_null() {
                    object["metadata"][field] = old[field].clone();
                }
            }
            let generation = old["generation"].as_u64().unwrap_or(1);
            let changed = previous.object.get("spec") != object.get("spec");
            object["metadata"]["generation"] = json!(generation + u64::from(changed));
            fields::retain_present(&mut owners, &object);
            if previous.object == object && previous.owners == owners {
                return object;
            }
        } else {
            fields::retain_present(&mut owners, &object);
            let uid = self.new_uid();
            let metadata = metadata_mut(&mut object);
            metadata.entry("uid").or_insert_with(|| json!(uid));
            metadata
                .entry("creationTimestamp")
                .or_insert_with(|| json!(timestamp()));
            metadata.entry("generation").or_insert_with(|| json!(1));
        }
        self.revision += 1;
        object["metadata"]["resourceVersion"] = json!(self.revision.to_string());
        if let Some(kind) = object["kind"].as_str() {
            self.kinds
                .insert(location.resource.clone(), kind.to_owned());
        }
        if !object["metadata"]["deletionTimestamp"].is_null() && !is_finalized(&object) {
            return self.remove_as(&key, object);
        }
        let stored = Stored {
            object: object.clone(),
            owners,
            location: location.clone(),
        };
        let before = self.objects.insert(key.clone(), stored).map(|s| s.object);
        self.record(location, before, object.clone(), false);
        if self.owners_all_removed(&object) {
            self.delete(&key);
        }
        object
    }

    /// True when the object has owners and every one of them was removed.
    fn owners_all_removed(&self, object: &Value) -> bool {
        object["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|refs| {
                !refs.is_empty()
                    && refs.iter().all(|r| {
                        r["uid"]
                            .as_str()
                            .is_some_and(|uid| self.removed_uids.contains(uid))
                    })
            })
    }

    /// Deletes as the DELETE verb does: an object with finalizers only gets its
    /// deletionTimestamp; any other goes at once, with its dependents.
    pub(super) fn delete(&mut self, key: &str) -> Option<Value> {
        let stored = self.objects.get(key)?;
        let mut object = stored.object.clone();
        if is_finalized(&object) {
            if !object["metadata"]["deletionTimestamp"].is_null() {
                return Some(object);
            }
            object["metadata"]["deletionTimestamp"] = json!(timestamp());
            object["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            let (location, owners) = (stored.location.clone(), stored.owners.clone());
            return Some(self.write(&location, object, owners));
        }
        self.revision += 1;
        object["metadata"]["resourceVersion"] = json!(self.revision.to_string());
        Some(self.remove_as(key, object))
    }

    /// Removes the object at `key`, `object` being its last state (with the new
    /// resourceVersion), then garbage-collects what depended on it.
    fn remove_as(&mut self, key: &str, object: Value) -> Value {
        let Some(stored) = self.objects.remove(key) else {
            return object;
        };
        self.record(&stored.location, Some(stored.object), object.clone(), true);
        let uid = object["metadata"]["uid"].as_str().unwrap_or_default();
        self.removed_uids.insert(uid.to_owned());
        let namespace = (stored.location.resource == Resource::namespaces())
            .then_some(stored.location.name.as_str());
        let dependents: Vec<String> = self
            .objects
            .iter()
            .filter(|(_, s)| {
                let owned = s.object["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"].as_str() == Some(uid)));
                let contained = namespace.is_some() && s.location.namespace.as_deref() == namespace;
                owned || contained
            })
            .map(|(key, _)| key.clone())
            .collect();
        for dependent in dependents {
            self.delete(&dependent);
        }
        object
    }

    fn record(&mut self, location: &Location, before: Option<Value>, object: Value, removed: bool) {
        let change = Arc::new(Change {
            revision: self.revision,
            location: location.clone(),
            before,
            object,
            removed,
        });
        self.history.push(Arc::clone(&change));
        // An error only says no watch is open.
        let _ = self.events.send(change);
    }
}
