//! The verbs on objects: get, list, create, replace, patch (merge, strategic as merge, JSON
//! patch, and server-side apply), delete, on the main resource and its `/status` and `/scale`
//! subresources. Each answers `(HTTP code, body)` or a [`Failure`].

use http::Method;
use json_patch::PatchOperation;
use serde_json::{Value, json};

use super::fields::{self, Owners, Scope};
use super::query::{self, FieldSelector, LabelSelector};
use super::status::Failure;
use super::store::{NamespaceState, Store, Stored};
use super::target::{Location, Resource, Target};
use super::watch::Filter;

/// Metadata a client cannot set through a write; the server keeps its own.
const SERVER_METADATA: &[&str] = &[
    "uid",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "resourceVersion",
];

/// One API request, its body read.
pub(super) struct Call<'a> {
    pub(super) method: &'a Method,
    pub(super) query: &'a str,
    pub(super) content_type: &'a str,
    pub(super) body: &'a [u8],
}

impl Call<'_> {
    /// The field manager of an update: `fieldManager`, else `unknown`.
    fn manager(&self) -> String {
        query::param(self.query, "fieldManager").unwrap_or_else(|| "unknown".to_owned())
    }

    fn body(&self) -> Result<Value, Failure> {
        serde_json::from_slice(self.body)
            .or_else(|_| serde_yaml::from_slice(self.body))
            .map_err(|e| Failure::bad_request(format!("the request body is not JSON: {e}")))
    }
}

type Answer = Result<(u16, Value), Failure>;

pub(super) fn answer(store: &mut Store, target: &Target, call: &Call<'_>) -> Answer {
    let not_allowed = || Err(Failure::method_not_allowed(call.method.as_str()));
    match target {
        Target::Collection {
            resource,
            namespace,
        } => match *call.method {
            Method::GET => list(store, resource, namespace.as_deref(), call.query),
            Method::POST => create(store, resource, namespace.as_deref(), call),
            _ => not_allowed(),
        },
        Target::Object {
            location,
            subresource,
        } => {
            let subresource = subresource.as_deref();
            match *call.method {
                Method::GET => get(store, location, subresource),
                Method::PUT => replace(store, location, subresource, call),
                Method::PATCH => patch(store, location, subresource, call),
                Method::DELETE if subresource.is_none() => store
                    .delete(&location.key())
                    .map(|object| (200, object))
                    .ok_or_else(|| Failure::not_found(&location.resource, &location.name)),
                _ => not_allowed(),
            }
        }
    }
}

fn get(store: &Store, location: &Location, subresource: Option<&str>) -> Answer {
    let object = &existing(store, location)?.object;
    match subresource {
        None | Some("status") => Ok((200, object.clone())),
        Some("scale") => Ok((200, scale_of(object))),
        Some(other) => Err(Failure::path_not_found(other)),
    }
}

/// The list or watch filter of a request on a collection.
pub(super) fn filter(
    resource: &Resource,
    namespace: Option<&str>,
    query: &str,
) -> Result<Filter, Failure> {
    let labels = LabelSelector::parse(&query::param(query, "labelSelector").unwrap_or_default())
        .map_err(Failure::bad_request)?;
    let fields = FieldSelector::parse(&query::param(query, "fieldSelector").unwrap_or_default())
        .map_err(Failure::bad_request)?;
    Ok(Filter {
        resource: resource.clone(),
        namespace: namespace.map(str::to_owned),
        labels,
        fields,
    })
}

fn list(store: &Store, resource: &Resource, namespace: Option<&str>, query: &str) -> Answer {
    let filter = filter(resource, namespace, query)?;
    let items: Vec<&Value> = store
        .list(resource, namespace)
        .map(|stored| &stored.object)
        .filter(|object| filter.matches(object))
        .collect();
    let kind = store
        .kind_of(resource)
        .map_or_else(|| "List".to_owned(), |kind| format!("{kind}List"));
    Ok((
        200,
        json!({"kind": kind, "apiVersion": resource.api_version(),
               "metadata": {"resourceVersion": store.revision().to_string()}, "items": items}),
    ))
}

fn existing<'a>(store: &'a Store, location: &Location) -> Result<&'a Stored, Failure> {
    store
        .get(&location.key())
        .ok_or_else(|| Failure::not_found(&location.resource, &location.name))
}

fn require_namespace(store: &Store, location: &Location) -> Result<(), Failure> {
    let Some(namespace) = &location.namespace else {
        return Ok(());
    };
    match store.namespace_state(namespace) {
        NamespaceState::Active => Ok(()),
        NamespaceState::Missing => Err(Failure::namespace_not_found(namespace)),
        NamespaceState::Terminating => Err(Failure::namespace_terminating(
            &location.resource,
            &location.name,
            namespace,
        )),
    }
}

/// A 409 when the body names a resourceVersion other than the current one.
fn check_revision(body: &Value, current: &Value, location: &Location) -> Result<(), Failure> {
    match body["metadata"]["resourceVersion"].as_str() {
        Some(rv)
            if !rv.is_empty() && Some(rv) != current["metadata"]["resourceVersion"].as_str() =>
        {
            Err(Failure::stale(&location.resource, &location.name))
        }
        _ => Ok(()),
    }
}

/// `new` with the server's metadata and (for a main-resource write) `status` of `old`.
fn keep_server_fields(mut new: Value, old: &Value) -> Value {
    if !new.is_object() {
        new = json!({});
    }
    if !new["metadata"].is_object() {
        new["metadata"] = json!({});
    }
    for field in SERVER_METADATA {
        match old["metadata"].get(*field) {
            Some(value) => new["metadata"][*field] = value.clone(),
            None => {
                if let Some(meta) = new["metadata"].as_object_mut() {
                    meta.remove(*field);
                }
            }
        }
    }
    match (old.get("status"), new.as_object_mut()) {
        (Some(status), _) => new["status"] = status.clone(),
        (None, Some(map)) => {
            map.remove("status");
        }
        (None, None) => {}
    }
    new
}

fn create(
    store: &mut Store,
    resource: &Resource,
    namespace: Option<&str>,
    call: &Call<'_>,
) -> Answer {
    let mut object = call.body()?;
    let name = match object["metadata"]["name"].as_str() {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => match object["metadata"]["generateName"].as_str() {
            Some(prefix) => format!("{prefix}{:05x}", rand::random::<u32>() & 0xf_ffff),
            None => {
                return Err(Failure::invalid(
                    resource,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
        },
    };
    if let (Some(ns), Some(body_ns)) = (namespace, object["metadata"]["namespace"].as_str())
        && ns != body_ns
    {
        return Err(Failure::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let location = Location {
        resource: resource.clone(),
        namespace: namespace.map(str::to_owned),
        name,
    };
    require_namespace(store, &location)?;
    if store.get(&location.key()).is_some() {
        return Err(Failure::already_exists(resource, &location.name));
    }
    object = keep_server_fields(object, &json!({}));
    let mut owners = Owners::new();
    fields::record_update(&mut owners, None, &object, &call.manager(), Scope::Main);
    Ok((201, store.write(&location, object, owners)))
}

fn replace(
    store: &mut Store,
    location: &Location,
    subresource: Option<&str>,
    call: &Call<'_>,
) -> Answer {
    let body = call.body()?;
    let stored = existing(store, location)?;
    check_revision(&body, &stored.object, location)?;
    let old = stored.object.clone();
    let (new, scope) = match subresource {
        None => (keep_server_fields(body, &old), Scope::Main),
        Some("status") => (with_status(&old, body.get("status")), Scope::Status),
        Some("scale") => (with_replicas(&old, &body["spec"]["replicas"]), Scope::Main),
        Some(other) => return Err(Failure::path_not_found(other)),
    };
    let mut owners = stored.owners.clone();
    fields::record_update(&mut owners, Some(&old), &new, &call.manager(), scope);
    let written = store.write(location, new, owners);
    Ok((200, view(&written, subresource)))
}

fn patch(
    store: &mut Store,
    location: &Location,
    subresource: Option<&str>,
    call: &Call<'_>,
) -> Answer {
    let content_type = call
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    match content_type {
        "application/apply-patch+yaml" => apply(store, location, subresource, call),
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            let patch = call.body()?;
            let stored = existing(store, location)?;
            check_revision(&patch, &stored.object, location)?;
            update_with(store, location, subresource, call, |target| {
                fields::merge_patch(target, &patch);
                Ok(())
            })
        }
        "application/json-patch+json" => {
            let operations: json_patch::Patch = serde_json::from_slice(call.body)
                .map_err(|e| Failure::bad_request(format!("the JSON patch is invalid: {e}")))?;
            update_with(store, location, subresource, call, |target| {
                json_patch(target, &operations).map_err(|e| {
                    Failure::invalid(&location.resource, &location.name, e.to_string())
                })
            })
        }
        other => Err(Failure::unsupported_media_type(other)),
    }
}

/// RFC 6902 as the real server's library reads it: a `test` for `null` passes on a missing
/// path (kube's finalizer helper tests `/metadata/finalizers` so before adding the first).
fn json_patch(
    target: &mut Value,
    operations: &json_patch::Patch,
) -> Result<(), json_patch::PatchError> {
    let operations: Vec<PatchOperation> = operations
        .iter()
        .filter(|op| {
            !matches!(op, PatchOperation::Test(test)
                if test.value.is_null() && target.pointer(test.path.as_str()).is_none())
        })
        .cloned()
        .collect();
    json_patch::patch(target, &operations)
}

/// An update (not an apply) that `edit` makes to the object, its `/status` or its `/scale`.
fn update_with(
    store: &mut Store,
    location: &Location,
    subresource: Option<&str>,
    call: &Call<'_>,
    edit: impl FnOnce(&mut Value) -> Result<(), Failure>,
) -> Answer {
    let stored = existing(store, location)?;
    let old = stored.object.clone();
    let (new, scope) = match subresource {
        None => {
            let mut new = old.clone();
            edit(&mut new)?;
            (keep_server_fields(new, &old), Scope::Main)
        }
        Some("status") => {
            let mut edited = old.clone();
            edit(&mut edited)?;
            (with_status(&old, edited.get("status")), Scope::Status)
        }
        Some("scale") => {
            let mut scale = scale_of(&old);
            edit(&mut scale)?;
            (with_replicas(&old, &scale["spec"]["replicas"]), Scope::Main)
        }
        Some(other) => return Err(Failure::path_not_found(other)),
    };
    let mut owners = stored.owners.clone();
    fields::record_update(&mut owners, Some(&old), &new, &call.manager(), scope);
    let written = store.write(location, new, owners);
    Ok((200, view(&written, subresource)))
}

fn apply(
    store: &mut Store,
    location: &Location,
    subresource: Option<&str>,
    call: &Call<'_>,
) -> Answer {
    let Some(manager) = query::param(call.query, "fieldManager").filter(|m| !m.is_empty()) else {
        return Err(Failure::bad_request(
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    };
    let scope = match subresource {
        None => Scope::Main,
        Some("status") => Scope::Status,
        Some(other) => {
            return Err(Failure::unsupported_media_type(&format!(
                "apply on /{other}"
            )));
        }
    };
    let config = call.body()?;
    let force = query::flag(call.query, "force");
    let Some(stored) = store.get(&location.key()) else {
        if scope == Scope::Status {
            return Err(Failure::not_found(&location.resource, &location.name));
        }
        require_namespace(store, location)?;
        let object = keep_server_fields(config, &json!({}));
        let owners = fields::leaves(&object, Scope::Main)
            .into_keys()
            .map(|path| (path, [manager.clone()].into()))
            .collect();
        return Ok((201, store.write(location, object, owners)));
    };
    check_revision(&config, &stored.object, location)?;
    let (mut object, mut owners) = (stored.object.clone(), stored.owners.clone());
    fields::apply(&mut object, &mut owners, &manager, &config, scope, force).map_err(
        |conflicts| Failure::apply_conflicts(&location.resource, &location.name, &conflicts),
    )?;
    Ok((200, store.write(location, object, owners)))
}

fn with_status(old: &Value, status: Option<&Value>) -> Value {
    let mut new = old.clone();
    match (status, new.as_object_mut()) {
        (Some(status), _) => new["status"] = status.clone(),
        (None, Some(map)) => {
            map.remove("status");
        }
        (None, None) => {}
    }
    new
}

fn with_replicas(old: &Value, replicas: &Value) -> Value {
    let mut new = old.clone();
    new["spec"]["replicas"] = replicas.clone();
    new
}

fn view(object: &Value, subresource: Option<&str>) -> Value {
    match subresource {
        Some("scale") => scale_of(object),
        _ => object.clone(),
    }
}

/// The `autoscaling/v1` Scale of a Deployment-like object.
fn scale_of(object: &Value) -> Value {
    let meta = &object["metadata"];
    let selector: Vec<String> = object["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
                     "resourceVersion": meta["resourceVersion"],
                     "creationTimestamp": meta["creationTimestamp"]},
        "spec": {"replicas": object["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {"replicas": object["status"]["replicas"].as_i64().unwrap_or(0),
                   "selector": selector.join(",")},
    })
}
