//! Server-side apply of rendered objects and pruning of the ones a spec change left behind.

use std::collections::BTreeSet;
use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::info;

use crate::addons::http_addon::HTTPScaledObject;
use crate::addons::keda::{ScaledObject, TriggerAuthentication};
use crate::addons::traefik::Middleware;
use crate::crd::Function;
use crate::render::Object;
use crate::{Error, Result};

/// The field manager of every apply.
pub const FIELD_MANAGER: &str = "kipper-controller";

/// The field manager that owns a new Deployment's `spec.replicas: 0` and never writes again:
/// the controller's own applies leave `replicas` out, so they neither reset what KEDA scaled
/// to nor remove the zero a new function starts at (a field keeps its value while any
/// manager owns it; KEDA's scale update takes the ownership over).
pub const REPLICAS_SEED_MANAGER: &str = "kipper-controller-initial-replicas";

async fn apply_one<K>(client: &Client, namespace: &str, obj: &K) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    // force: we are the only writer of these fields; another manager's stale claim must not
    // block a spec change.
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&obj.name_any(), &params, &Patch::Apply(obj))
        .await?;
    Ok(())
}

/// Applies a Deployment; a new one is created at zero replicas (a function at rest runs no
/// pod until KEDA scales it), owned by [`REPLICAS_SEED_MANAGER`].
async fn apply_deployment(client: &Client, namespace: &str, dep: &Deployment) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let name = dep.name_any();
    if api.get_opt(&name).await?.is_some() {
        return apply_one(client, namespace, dep).await;
    }
    let mut first = dep.clone();
    first.spec.replicas = Some(0);
    apply_one(client, namespace, &first).await?;
    let seed = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": 0},
    });
    api.patch(
        &name,
        &PatchParams::apply(REPLICAS_SEED_MANAGER),
        &Patch::Apply(&seed),
    )
    .await?;
    // And let go of it at once, so the zero is the seed's alone from the start.
    apply_one(client, namespace, dep).await
}

/// Applies one object of any kind.
pub async fn apply_object(client: &Client, namespace: &str, object: &Object) -> Result<()> {
    match object {
        Object::ConfigMap(o) => apply_one(client, namespace, o).await,
        Object::PersistentVolumeClaim(o) => apply_one(client, namespace, o).await,
        Object::Deployment(o) => apply_deployment(client, namespace, o).await,
        Object::Service(o) => apply_one(client, namespace, o).await,
        Object::Ingress(o) => apply_one(client, namespace, o).await,
        Object::CronJob(o) => apply_one(client, namespace, o).await,
        Object::Job(o) => apply_one(client, namespace, o).await,
        Object::ScaledObject(o) => apply_one(client, namespace, o).await,
        Object::TriggerAuthentication(o) => apply_one(client, namespace, o).await,
        Object::HTTPScaledObject(o) => apply_one(client, namespace, o).await,
        Object::Middleware(o) => apply_one(client, namespace, o).await,
    }
}

/// Applies every object in order; stops at the first failure.
pub async fn apply_all(client: &Client, namespace: &str, objects: &[Object]) -> Result<()> {
    for object in objects {
        apply_object(client, namespace, object)
            .await
            .map_err(|e| match e {
                Error::Kube(kube::Error::Api(s)) => Error::Render {
                    part: object.kind(),
                    reason: format!("apply {}: {}", object.name(), s.message),
                },
                other => other,
            })?;
    }
    Ok(())
}

async fn prune_kind<K>(
    client: &Client,
    namespace: &str,
    selector: &str,
    owner_uid: &str,
    keep: &BTreeSet<(String, String)>,
) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + DeserializeOwned
        + Clone
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let kind = K::kind(&()).to_string();
    let list = match api.list(&ListParams::default().labels(selector)).await {
        Ok(list) => list,
        // The kind is not installed (e.g. no Traefik): nothing of it can be left over.
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for obj in list {
        let name = obj.name_any();
        let owned = obj.owner_references().iter().any(|o| o.uid == owner_uid);
        if owned && !keep.contains(&(kind.clone(), name.clone())) {
            info!(message = "Deleting an object the spec no longer needs.", %kind, %name, %namespace);
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Deletes the children of `function` (by label and owner) that `desired` does not contain.
/// Test-run Jobs are left alone: they clean themselves up.
pub async fn prune(
    client: &Client,
    namespace: &str,
    function: &Function,
    desired: &[Object],
) -> Result<()> {
    let uid = function.uid().unwrap_or_default();
    let selector = format!(
        "app={},app.kubernetes.io/managed-by=kipper",
        function.name_any()
    );
    let keep: BTreeSet<(String, String)> = desired
        .iter()
        .map(|o| (o.kind().to_owned(), o.name()))
        .collect();
    let s = selector.as_str();
    prune_kind::<Ingress>(client, namespace, s, &uid, &keep).await?;
    prune_kind::<Middleware>(client, namespace, s, &uid, &keep).await?;
    prune_kind::<HTTPScaledObject>(client, namespace, s, &uid, &keep).await?;
    prune_kind::<ScaledObject>(client, namespace, s, &uid, &keep).await?;
    prune_kind::<TriggerAuthentication>(client, namespace, s, &uid, &keep).await?;
    prune_kind::<CronJob>(client, namespace, s, &uid, &keep).await?;
    prune_kind::<Service>(client, namespace, s, &uid, &keep).await?;
    prune_kind::<Deployment>(client, namespace, s, &uid, &keep).await?;
    prune_kind::<ConfigMap>(client, namespace, s, &uid, &keep).await?;
    // After the Deployment: a claim in use stays (protected) until its pods are gone.
    prune_kind::<PersistentVolumeClaim>(client, namespace, s, &uid, &keep).await?;
    Ok(())
}
