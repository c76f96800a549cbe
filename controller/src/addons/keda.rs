//! KEDA `ScaledObject` and `TriggerAuthentication` (`keda.sh/v1alpha1`), from
//! `../shared/schemas/keda.sh_scaledobjects.yaml` and `keda.sh_triggerauthentications.yaml`.

use std::collections::BTreeMap;

use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// `ScaledObject.spec`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "keda.sh",
    version = "v1alpha1",
    kind = "ScaledObject",
    plural = "scaledobjects",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct ScaledObjectSpec {
    /// The workload KEDA scales.
    pub scale_target_ref: ScaleTargetRef,
    /// Seconds between checks of the triggers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polling_interval: Option<i32>,
    /// Seconds after the last active trigger before scaling to zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_period: Option<i32>,
    /// Lower bound of replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replica_count: Option<i32>,
    /// Upper bound of replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replica_count: Option<i32>,
    /// What KEDA watches.
    pub triggers: Vec<ScaleTrigger>,
}

/// `ScaledObject.spec.scaleTargetRef`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScaleTargetRef {
    /// Workload name.
    pub name: String,
    /// Workload kind (default Deployment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Workload apiVersion (default apps/v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Container whose env resolves `*FromEnv` trigger fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_source_container_name: Option<String>,
}

/// `ScaledObject.spec.triggers[]`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScaleTrigger {
    /// Scaler type (`postgresql`, `mysql`, `redis`, `metrics-api`, ...).
    #[serde(rename = "type")]
    pub type_: String,
    /// Trigger name, unique in the ScaledObject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Scaler settings (all strings).
    pub metadata: BTreeMap<String, String>,
    /// Where secret parameters come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_ref: Option<AuthenticationRef>,
    /// `AverageValue` (default), `Value` or `Utilization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_type: Option<String>,
}

/// `ScaledObject.spec.triggers[].authenticationRef`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticationRef {
    /// TriggerAuthentication name.
    pub name: String,
    /// `TriggerAuthentication` (default) or `ClusterTriggerAuthentication`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// `TriggerAuthentication.spec`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "keda.sh",
    version = "v1alpha1",
    kind = "TriggerAuthentication",
    plural = "triggerauthentications",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct TriggerAuthenticationSpec {
    /// Trigger parameters read from Secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_target_ref: Vec<SecretTargetRef>,
}

/// `TriggerAuthentication.spec.secretTargetRef[]`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretTargetRef {
    /// Trigger parameter set from the Secret (`password`, `userName`, ...).
    pub parameter: String,
    /// Secret name.
    pub name: String,
    /// Key in the Secret.
    pub key: String,
}
