//! Kipper volumes (`kip volume create|list|delete`): the PVC `shared-<name>` that a function's
//! `--volume <name>:/path` mounts (CONTRACT section 3).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{validate_dns_label, validate_storage};
use crate::Result;
use crate::render::{ENVIRONMENT_LABEL, PROJECT_LABEL};

/// Label on a volume's PVC: the volume's name.
pub const VOLUME_LABEL: &str = "kipper.run/volume";
/// Default size of `kip volume create`.
pub const DEFAULT_SIZE: &str = "1Gi";
/// Longest volume name: `shared-<name>` must be a DNS label (63).
pub const MAX_NAME: usize = 56;

/// The PVC a volume is.
pub fn claim_name(volume: &str) -> String {
    format!("shared-{volume}")
}

/// What `kip volume create` was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeSpec {
    /// Volume name.
    pub name: String,
    /// Project.
    pub project: String,
    /// Environment.
    pub environment: Option<String>,
    /// Size.
    pub size: String,
    /// `ReadWriteOnce` (default; one node) or `ReadWriteMany` (functions spread over nodes).
    pub access_mode: String,
    /// StorageClass (the cluster's default when `None`).
    pub storage_class: Option<String>,
}

impl VolumeSpec {
    /// Checks every field; errors name the flag and the fix.
    pub fn validate(&self) -> Result<()> {
        validate_dns_label("volume name", &self.name, MAX_NAME)?;
        validate_storage("--size", &self.size)?;
        if let Some(class) = &self.storage_class {
            validate_dns_label("--storage-class", class, 253)?;
        }
        Ok(())
    }
}

/// The PVC `shared-<name>`.
pub fn claim(spec: &VolumeSpec) -> PersistentVolumeClaim {
    let mut labels = BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "kipper".to_owned(),
        ),
        ("kipper.run/resource-type".to_owned(), "volume".to_owned()),
        (VOLUME_LABEL.to_owned(), spec.name.clone()),
        (PROJECT_LABEL.to_owned(), spec.project.clone()),
    ]);
    if let Some(env) = spec.environment.as_ref().filter(|e| !e.is_empty()) {
        labels.insert(ENVIRONMENT_LABEL.to_owned(), env.clone());
    }
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(claim_name(&spec.name)),
            namespace: Some(super::namespace(&spec.project, spec.environment.as_deref())),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec![spec.access_mode.clone()]),
            storage_class_name: spec.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(spec.size.clone()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
