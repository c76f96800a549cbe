//! Field ownership, the heart of server-side apply: which field manager owns each leaf of an
//! object, how an apply moves ownership and prunes what its manager stopped sending, and how an
//! update (create, replace, merge patch, `/scale`) takes the leaves it changed.
//!
//! A leaf is a path to a scalar, an array (arrays are atomic: the fake has no list-map keys) or
//! a map reached by no further key; maps are recursed. Identity and bookkeeping fields
//! (`apiVersion`, `kind`, `metadata.name`, `.uid`, `.resourceVersion`, ...) belong to no one.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// A leaf path: the keys from the object's root.
pub(super) type FieldPath = Vec<String>;

/// Who owns each leaf; a leaf may be shared by managers that applied the same value.
pub(super) type Owners = BTreeMap<FieldPath, BTreeSet<String>>;

/// What a write may touch: the main resource (everything but `status`) or `/status`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    Main,
    Status,
}

impl Scope {
    fn covers(self, path: &[String]) -> bool {
        let in_status = path.first().is_some_and(|k| k == "status");
        in_status == (self == Scope::Status)
    }
}

const UNOWNED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

fn is_ownable(path: &[String]) -> bool {
    match path {
        [top] => top != "apiVersion" && top != "kind",
        [meta, field, ..] if meta == "metadata" => !UNOWNED_METADATA.contains(&field.as_str()),
        _ => true,
    }
}

/// The ownable leaves of `value` within `scope`, with their values.
pub(super) fn leaves(value: &Value, scope: Scope) -> BTreeMap<FieldPath, Value> {
    fn walk(value: &Value, path: &mut FieldPath, out: &mut BTreeMap<FieldPath, Value>) {
        match value {
            Value::Object(map) if !map.is_empty() || path.is_empty() => {
                for (key, child) in map {
                    path.push(key.clone());
                    walk(child, path, out);
                    path.pop();
                }
            }
            leaf => {
                out.insert(path.clone(), leaf.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(value, &mut Vec::new(), &mut out);
    out.retain(|path, _| is_ownable(path) && scope.covers(path));
    out
}

/// `.spec.replicas`: how the real server names a field in conflict messages.
pub(super) fn dotted(path: &[String]) -> String {
    path.iter().map(|k| format!(".{k}")).collect()
}

pub(super) fn get<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(key))
}

/// Sets `path` to `leaf`, making maps on the way (a non-map in the way is replaced).
fn set(value: &mut Value, path: &[String], leaf: Value) {
    let Some((last, parents)) = path.split_last() else {
        *value = leaf;
        return;
    };
    let mut node = value;
    for key in parents {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let Value::Object(map) = node else { return };
        node = map
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !node.is_object() {
        *node = Value::Object(Map::new());
    }
    if let Value::Object(map) = node {
        map.insert(last.clone(), leaf);
    }
}

/// Removes `path`, then every map on the way that this left empty.
fn remove(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let Some(Value::Object(parent)) = parents.iter().try_fold(&mut *value, |v, k| v.get_mut(k))
    else {
        return;
    };
    parent.remove(last);
    if parent.is_empty() && !parents.is_empty() {
        remove(value, parents);
    }
}

/// Drops ownership of paths that are no longer leaves of `object` (removed, or turned into a
/// map or from one), and of leaves no manager owns.
pub(super) fn retain_present(owners: &mut Owners, object: &Value) {
    let Value::Object(_) = object else { return };
    let present: BTreeSet<FieldPath> = [Scope::Main, Scope::Status]
        .into_iter()
        .flat_map(|scope| leaves(object, scope).into_keys())
        .collect();
    owners.retain(|path, managers| !managers.is_empty() && present.contains(path));
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Server-side apply of `config` by `manager` onto `object`. On conflicts (another manager owns
/// a leaf the config sets to a different value) and without `force`, returns them as
/// `(manager, .field)` and changes nothing.
pub(super) fn apply(
    object: &mut Value,
    owners: &mut Owners,
    manager: &str,
    config: &Value,
    scope: Scope,
    force: bool,
) -> Result<(), Vec<(String, String)>> {
    let applied = leaves(config, scope);
    let mut conflicts = Vec::new();
    for (path, value) in &applied {
        for (owned, managers) in owners.iter() {
            if !overlaps(owned, path) {
                continue;
            }
            let same = owned == path && get(object, path) == Some(value);
            for other in managers.iter().filter(|m| *m != manager) {
                if !same {
                    conflicts.push((other.clone(), owned.clone()));
                }
            }
        }
    }
    if !conflicts.is_empty() && !force {
        conflicts.sort();
        conflicts.dedup();
        return Err(conflicts
            .into_iter()
            .map(|(m, p)| (m, dotted(&p)))
            .collect());
    }
    // Forced: the other managers lose the contested leaves.
    for (other, path) in &conflicts {
        if let Some(managers) = owners.get_mut(path) {
            managers.remove(other);
        }
    }
    // What the manager owned and no longer sends: it lets go, and a leaf nobody holds goes.
    let dropped: Vec<FieldPath> = owners
        .iter()
        .filter(|(path, managers)| {
            scope.covers(path) && managers.contains(manager) && !applied.contains_key(*path)
        })
        .map(|(path, _)| path.clone())
        .collect();
    for path in dropped {
        let orphaned = owners.get_mut(&path).is_some_and(|managers| {
            managers.remove(manager);
            managers.is_empty()
        });
        if orphaned {
            owners.remove(&path);
            remove(object, &path);
        }
    }
    for (path, value) in applied {
        set(object, &path, value);
        owners.entry(path).or_default().insert(manager.to_owned());
    }
    retain_present(owners, object);
    Ok(())
}

/// An update by `manager` from `old` to `new`: it becomes the sole owner of every leaf it
/// changed or added within `scope`.
pub(super) fn record_update(
    owners: &mut Owners,
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    scope: Scope,
) {
    let before = old.map(|o| leaves(o, scope)).unwrap_or_default();
    for (path, value) in leaves(new, scope) {
        if before.get(&path) != Some(&value) {
            owners.insert(path, BTreeSet::from([manager.to_owned()]));
        }
    }
    retain_present(owners, new);
}

/// RFC 7386 JSON merge patch: maps merge, `null` deletes, anything else replaces.
pub(super) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else {
        return;
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}
