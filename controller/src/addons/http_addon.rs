//! KEDA HTTP add-on `HTTPScaledObject` (`http.keda.sh/v1alpha1`), from
//! `../shared/schemas/http.keda.sh_httpscaledobjects.yaml`.

use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// `HTTPScaledObject.spec`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "http.keda.sh",
    version = "v1alpha1",
    kind = "HTTPScaledObject",
    plural = "httpscaledobjects",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct HTTPScaledObjectSpec {
    /// Hosts the interceptor routes to this workload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// The workload and its Service.
    pub scale_target_ref: HttpScaleTargetRef,
    /// Replica bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<ReplicaStruct>,
    /// Seconds without traffic before scaling down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaledown_period: Option<i32>,
}

/// `HTTPScaledObject.spec.scaleTargetRef`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpScaleTargetRef {
    /// Workload name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Workload kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Workload apiVersion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Service the interceptor forwards to.
    pub service: String,
    /// Port of that Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

/// `HTTPScaledObject.spec.replicas`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ReplicaStruct {
    /// Minimum replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i32>,
    /// Maximum replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i32>,
}
