//! `kip service list`, `info` and `delete`.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams};

use super::add::connection_lines;
use super::{post_params, unknown_service};
use crate::cli::{Io, io_error};
use crate::crd::Function;
use crate::facts::{SERVICE_TYPE_LABEL, ServiceKind, credentials_secret, keys};
use crate::services::binding::{self, BINDINGS_ANNOTATION};
use crate::services::render::{data_claim_name, host, init_config_map_name};
use crate::services::{Credentials, SERVICE_LABEL};
use crate::{Error, Result};

/// A service's credentials Secret and type; the one-line error when it does not exist.
pub(crate) async fn service_secret(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<(Secret, ServiceKind)> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret = secrets
        .get_opt(&credentials_secret(name))
        .await?
        .ok_or_else(|| unknown_service(name, ns))?;
    let kind = secret
        .labels()
        .get(SERVICE_TYPE_LABEL)
        .and_then(|k| ServiceKind::parse(k))
        .ok_or_else(|| Error::MalformedObject {
            object: format!("{} in {ns}", credentials_secret(name)),
            problem: format!("has no valid {SERVICE_TYPE_LABEL} label: it is not a Kipper service"),
        })?;
    Ok((secret, kind))
}

/// A text key of a Secret.
pub(crate) fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
}

fn status(set: Option<&StatefulSet>) -> (String, String, String) {
    let Some(set) = set else {
        // Credentials without a StatefulSet: a service kip did not create (or half-deleted).
        return ("external".into(), "-".into(), "-".into());
    };
    let want = set.spec.replicas.unwrap_or(1);
    let ready = set
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    let state = if want == 0 {
        "stopped"
    } else if ready >= want {
        "running"
    } else {
        "starting"
    };
    let storage = set
        .spec
        .volume_claim_templates
        .as_ref()
        .and_then(|t| t.first())
        .and_then(|c| c.spec.as_ref())
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map_or_else(|| "-".to_owned(), |q| q.0.clone());
    (state.into(), format!("{ready}/{want}"), storage)
}

/// The page's table: NAME TYPE STATUS READY STORAGE.
pub(super) async fn list(client: &kube::Client, ns: &str, io: &mut Io<'_>) -> Result<()> {
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let sets = sets
        .list(&ListParams::default().labels("kipper.run/resource-type=service"))
        .await?;
    // Every Secret carrying the type label, including services kip did not create.
    let mut credentials = secrets.list(&ListParams::default()).await?;
    credentials
        .items
        .retain(|s| s.labels().contains_key(SERVICE_TYPE_LABEL));
    let mut rows = vec![["NAME", "TYPE", "STATUS", "READY", "STORAGE"].map(str::to_owned)];
    let mut names = BTreeSet::new();
    for s in &credentials {
        if let Some(name) = s.name_any().strip_suffix("-credentials") {
            names.insert(name.to_owned());
        }
    }
    for s in &sets {
        names.insert(s.name_any());
    }
    for name in names {
        let set = sets.items.iter().find(|s| s.name_any() == name);
        let secret = credentials
            .items
            .iter()
            .find(|s| s.name_any() == credentials_secret(&name));
        let kind = secret
            .and_then(|s| s.labels().get(SERVICE_TYPE_LABEL).cloned())
            .or_else(|| set.and_then(|s| s.labels().get(SERVICE_TYPE_LABEL).cloned()))
            .unwrap_or_else(|| "-".to_owned());
        let (state, ready, storage) = status(set);
        rows.push([name, kind, state, ready, storage]);
    }
    crate::cli::write_table(io.out, &rows)?;
    Ok(())
}

/// Connection details; the password only with `--show-password`.
pub(super) async fn info(
    client: &kube::Client,
    ns: &str,
    name: &str,
    show_password: bool,
    io: &mut Io<'_>,
) -> Result<()> {
    let (secret, kind) = service_secret(client, ns, name).await?;
    let text = |key: &str| secret_text(&secret, key);
    let credentials = Credentials {
        username: text(keys::USERNAME).unwrap_or_default(),
        password: text(keys::PASSWORD).unwrap_or_default(),
        database: text(keys::DATABASE).unwrap_or_default(),
    };
    let host = text(keys::HOST).unwrap_or_else(|| host(name, ns));
    let port = text(keys::PORT).unwrap_or_else(|| kind.default_port().to_string());
    let password = if show_password {
        credentials.password.clone()
    } else {
        format!("******** (shown with: kip service info {name} --show-password)")
    };
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let (state, ready, storage) = status(sets.get_opt(name).await?.as_ref());
    writeln!(io.out, "Service: {name} ({})", kind.as_str()).map_err(io_error)?;
    writeln!(io.out, "Status: {state} {ready}, storage {storage}").map_err(io_error)?;
    for line in connection_lines(kind, &host, &port, &credentials, &password) {
        writeln!(io.out, "{line}").map_err(io_error)?;
    }
    Ok(())
}

fn gone(e: kube::Error) -> Result<bool> {
    match e {
        kube::Error::Api(s) if s.code == 404 => Ok(false),
        other => Err(other.into()),
    }
}

async fn delete_named<K>(api: &Api<K>, name: &str) -> Result<bool>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(e) => gone(e),
    }
}

/// Unbinds the service from every function and app of the namespace (their per-service
/// databases stay on the server), then deletes its objects and its volume.
pub(super) async fn delete(
    client: &kube::Client,
    ns: &str,
    name: &str,
    io: &mut Io<'_>,
) -> Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    if secrets.get_opt(&credentials_secret(name)).await?.is_none()
        && sets.get_opt(name).await?.is_none()
    {
        return Err(unknown_service(name, ns));
    }

    let functions: Api<Function> = Api::namespaced(client.clone(), ns);
    for mut f in functions.list(&ListParams::default()).await? {
        let fname = f.name_any();
        if f.spec
            .effective_triggers()
            .iter()
            .any(|t| t.get("source") == Some(name))
        {
            writeln!(
                io.err,
                "warning: function {fname} reads its trigger from {name}: it stays, reporting ServicesBound=False, until its --source changes"
            )
            .map_err(io_error)?;
        }
        let before = f.spec.service_bindings.len();
        f.spec.service_bindings.retain(|b| b.name != name);
        if f.spec.service_bindings.len() != before {
            functions.replace(&fname, &post_params(), &f).await?;
            writeln!(io.out, "unbound {name} from function {fname}").map_err(io_error)?;
        }
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    for mut d in deployments.list(&ListParams::default()).await? {
        let bound = d
            .annotations()
            .get(BINDINGS_ANNOTATION)
            .is_some_and(|a| a.contains(&format!("\"{name}\"")));
        if bound && binding::unbind_app(&mut d, name)? {
            let app = d.name_any();
            deployments.replace(&app, &post_params(), &d).await?;
            writeln!(io.out, "unbound {name} from app {app}").map_err(io_error)?;
        }
    }

    delete_named(&sets, name).await?;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    delete_named(&services, name).await?;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    delete_named(&maps, &init_config_map_name(name)).await?;
    delete_named(&secrets, &credentials_secret(name)).await?;
    // The StatefulSet leaves its claims behind on purpose; --delete-data is the user's word.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let mut deleted = BTreeSet::new();
    let labelled = claims
        .list(&ListParams::default().labels(&format!("{SERVICE_LABEL}={name}")))
        .await?;
    for c in labelled.items.iter().map(ResourceExt::name_any) {
        if delete_named(&claims, &c).await? {
            deleted.insert(c);
        }
    }
    let conventional = data_claim_name(name);
    if !deleted.contains(&conventional) && delete_named(&claims, &conventional).await? {
        deleted.insert(conventional);
    }
    let claims: Vec<String> = deleted.into_iter().collect();
    writeln!(
        io.out,
        "service {name} deleted with its data (volumes: {})",
        if claims.is_empty() {
            "none found".to_owned()
        } else {
            claims.join(", ")
        }
    )
    .map_err(io_error)
}

/// The requests and limits the flags set, validated; an error when no flag is given.
pub(super) fn resources_patch(
    cpu_request: &Option<String>,
    cpu_limit: &Option<String>,
    memory_request: &Option<String>,
    memory_limit: &Option<String>,
) -> Result<serde_json::Value> {
    use crate::services::{validate_cpu, validate_memory};
    let mut requests = serde_json::Map::new();
    let mut limits = serde_json::Map::new();
    for (flag, value, cpu, limit) in [
        ("--cpu-request", cpu_request, true, false),
        ("--cpu-limit", cpu_limit, true, true),
        ("--memory-request", memory_request, false, false),
        ("--memory-limit", memory_limit, false, true),
    ] {
        let Some(v) = value else { continue };
        if cpu {
            validate_cpu(flag, v)?;
        } else {
            validate_memory(flag, v)?;
        }
        let target = if limit { &mut limits } else { &mut requests };
        target.insert(
            if cpu { "cpu" } else { "memory" }.to_owned(),
            serde_json::Value::String(v.clone()),
        );
    }
    if requests.is_empty() && limits.is_empty() {
        return Err(Error::Invalid(
            "give at least one of --cpu-request, --cpu-limit, --memory-request, --memory-limit"
                .into(),
        ));
    }
    let mut resources = serde_json::Map::new();
    if !requests.is_empty() {
        resources.insert("requests".into(), requests.into());
    }
    if !limits.is_empty() {
        resources.insert("limits".into(), limits.into());
    }
    Ok(resources.into())
}

/// Changes the container's requests and limits: read, change, replace with the version read
/// (a concurrent edit fails instead of being lost). The pod restarts.
pub(super) async fn resources(
    client: &kube::Client,
    ns: &str,
    name: &str,
    resources: &serde_json::Value,
    io: &mut Io<'_>,
) -> Result<()> {
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let mut set = sets
        .get_opt(name)
        .await?
        .ok_or_else(|| unknown_service(name, ns))?;
    let container = set
        .spec
        .template
        .spec
        .as_mut()
        .and_then(|p| p.containers.first_mut())
        .ok_or_else(|| Error::MalformedObject {
            object: format!("StatefulSet {name} in {ns}"),
            problem: "has no container".into(),
        })?;
    let current = container.resources.get_or_insert_default();
    let changes: k8s_openapi::api::core::v1::ResourceRequirements =
        serde_json::from_value(resources.clone())?;
    for (mine, theirs) in [
        (&mut current.requests, changes.requests),
        (&mut current.limits, changes.limits),
    ] {
        if let Some(theirs) = theirs {
            mine.get_or_insert_default().extend(theirs);
        }
    }
    sets.replace(name, &post_params(), &set).await?;
    writeln!(
        io.out,
        "resources of {name} updated: its pod restarts now (a brief downtime for databases)"
    )
    .map_err(io_error)
}
