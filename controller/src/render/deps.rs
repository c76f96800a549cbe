//! Dependencies of inline code: the install step and the cache that outlives the pod.
//!
//! Why an init container: `npm install` of the seed's `pg@8.11.5 axios@1.6.7` peaks at about
//! 160 MiB resident (pip of `psycopg2-binary` + `requests` at about 75 MiB; see
//! `bench/deps/README.md`), while a function's default memory limit is 64Mi. Installing in
//! the serving container would have it OOM-killed during its cold start, and raising every
//! function's limit for a one-off peak would reserve that memory for as long as the pod
//! runs. The init container `deps` runs the same runtime image with `KIPPER_MODE=install`
//! under a limit of its own ([`INSTALL_LIMITS`]); the node only needs that memory during the
//! install (a pod's effective request is the larger of its init containers' and the sum of
//! its containers'), and the serving container keeps the function's limit.
//!
//! Why a PersistentVolumeClaim: the install lands in `<cache>/<runtime>-<content hash>`,
//! which must survive a scale to zero for the next cold start to skip it (about 2-5 s of
//! npm, against the seed's "cold start 2-3 seconds"). An `emptyDir` dies with the pod; the
//! image cannot hold it (the code is a ConfigMap, not a build). So each function with
//! dependencies gets `<fn>-deps` (owned by the Function, deleted with it). With the default
//! `ReadWriteOnce` access mode the replicas of a function run on the node that holds the
//! volume; `--deps-cache-access-mode ReadWriteMany` lifts that where the storage supports it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kipper_contract::env as var;

use super::env::env;
use super::{Ctx, code};
use crate::crd::FunctionSpec;

/// Name of the install init container.
pub(crate) const DEPS_CONTAINER: &str = "deps";
/// Name of the cache volume in the pod.
pub(crate) const DEPS_VOLUME: &str = "deps-cache";
/// Where the cache is mounted, in the install and the runtime containers
/// (`KIPPER_DEPS_CACHE`).
pub(crate) const DEPS_CACHE_PATH: &str = "/var/cache/kipper/deps";
/// Requests and limits of the install: (cpu, memory) each. The limit is about three times
/// the measured npm peak (160 MiB), room for packages heavier than the seed's; the request
/// is a little over the peak, so the install is scheduled where it fits. A whole core as
/// the CPU limit because the install is on the cold start's path.
pub(crate) const INSTALL_LIMITS: ((&str, &str), (&str, &str)) = (("100m", "192Mi"), ("1", "512Mi"));

/// Name of the cache claim of `function`.
pub fn claim_name(function: &str) -> String {
    format!("{function}-deps")
}

/// Whether the pod installs dependencies: inline code on a runtime image that declares some.
pub(crate) fn declared(spec: &FunctionSpec) -> bool {
    spec.image.is_none()
        && spec.runtime.handler_file().is_some()
        && spec
            .source
            .as_ref()
            .is_some_and(|s| s.code.is_some() && !s.dependencies.is_empty())
}

/// The cache claim `<fn>-deps`, when the function declares dependencies.
pub(crate) fn cache_claim(ctx: &Ctx<'_>) -> Option<PersistentVolumeClaim> {
    let spec = &ctx.function.spec;
    if !declared(spec) {
        return None;
    }
    let settings = &ctx.settings.deps_cache;
    Some(PersistentVolumeClaim {
        metadata: ctx.meta(claim_name(&ctx.name), spec.primary_trigger().as_str()),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec![settings.access_mode.clone()]),
            storage_class_name: settings.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(settings.size.clone()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The pod volume of the cache claim.
pub(crate) fn cache_volume(ctx: &Ctx<'_>) -> Volume {
    Volume {
        name: DEPS_VOLUME.to_owned(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim_name(&ctx.name),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The cache's mount, in the install and the runtime containers.
pub(crate) fn cache_mount() -> VolumeMount {
    VolumeMount {
        name: DEPS_VOLUME.to_owned(),
        mount_path: DEPS_CACHE_PATH.to_owned(),
        ..Default::default()
    }
}

/// The code's read-only mount.
pub(crate) fn code_mount() -> VolumeMount {
    VolumeMount {
        name: "code".to_owned(),
        mount_path: "/app/function".to_owned(),
        read_only: Some(true),
        ..Default::default()
    }
}

/// The code ConfigMap as a pod volume.
pub(crate) fn code_volume(ctx: &Ctx<'_>) -> Volume {
    Volume {
        name: "code".to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: code::config_map_name(&ctx.name),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The install init container: the runtime image in `KIPPER_MODE=install`. It exits once
/// the cache holds the install (at once when an earlier pod installed the same manifest).
pub(crate) fn install_container(ctx: &Ctx<'_>, image: String) -> Container {
    let spec = &ctx.function.spec;
    let ((cpu_req, mem_req), (cpu_lim, mem_lim)) = INSTALL_LIMITS;
    Container {
        name: DEPS_CONTAINER.to_owned(),
        image: Some(image),
        env: Some(vec![
            env(var::MODE, var::mode::INSTALL),
            env(var::RUNTIME, spec.runtime.as_str()),
            env(var::DEPS_CACHE, DEPS_CACHE_PATH),
        ]),
        volume_mounts: Some(vec![code_mount(), cache_mount()]),
        resources: Some(super::pod::resources(
            (cpu_req, mem_req),
            (cpu_lim, mem_lim),
        )),
        security_context: Some(super::pod::container_security()),
        ..Default::default()
    }
}
