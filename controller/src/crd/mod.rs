//! The `kipper.run/v1alpha1` `Function` resource, schema-compatible with upstream's
//! (CONTRACT section 3), plus the defaults and validation every consumer shares.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Result;

/// Default listen port of a function (`spec.port`).
pub const DEFAULT_PORT: i32 = 8080;
/// Default idle timeout before scale-to-zero, seconds (seed: `--idle-timeout`, 300).
pub const DEFAULT_IDLE_TIMEOUT: i32 = 300;
/// Default CPU request/limit when neither of the pair is given.
pub const DEFAULT_CPU: &str = "50m";
/// Default memory request/limit when neither of the pair is given.
pub const DEFAULT_MEMORY: &str = "64Mi";

/// A serverless function: code or an image, triggers, bindings, env and resources.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kipper.run",
    version = "v1alpha1",
    kind = "Function",
    namespaced,
    status = "FunctionStatus",
    shortname = "fn",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".status.endpoint"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct FunctionSpec {
    /// Container image; when absent the runtime image of `runtime` runs `source.code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Port the function listens on (the runtime container gets it as `PORT`).
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Path of an `image`'s health endpoint (`GET`, 2xx when it can serve), e.g. `/health`.
    /// When absent the probes and kipper-poll's readiness gate use a TCP check of `port`,
    /// which a server that only knows `POST /event` passes. Inline code runs on the
    /// runtime images, whose kipper-shim serves `/ready`: not allowed there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_path: Option<String>,
    /// Language runtime of inline code.
    #[serde(default)]
    pub runtime: Runtime,
    /// Inline source code and its dependencies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// CPU and memory requests and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceSpec>,
    /// Plain environment variables (non-sensitive; secrets live in `<fn>-secrets`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Services whose connection details are injected as prefixed variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_bindings: Vec<ServiceBinding>,
    /// Kipper volumes (PVC `shared-<name>`) mounted into the pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeMount>,
    /// How the function is invoked; empty means one `http` trigger.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<Trigger>,
    /// Turns off the security-headers middleware of HTTP functions.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_security_headers: bool,
    /// Extra origins allowed by the Content-Security-Policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub csp_allowlist: Vec<String>,
    /// Seconds without work before scaling to zero (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub idle_timeout: Option<i32>,
}

/// The CustomResourceDefinition as YAML (what `crdgen` prints and `deploy/crd.yaml` holds).
pub fn crd_yaml() -> Result<String> {
    use kube::CustomResourceExt;
    crate::yaml::to_string(&Function::crd())
}

fn default_port() -> i32 {
    DEFAULT_PORT
}

/// Language runtime.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// Node.js (`index.js`, `package.json`).
    #[default]
    Node,
    /// Python (`handler.py`, `requirements.txt`).
    Python,
    /// Go: image only.
    Go,
    /// Anything else: image only.
    Custom,
}

impl Runtime {
    /// The name used in flags, `KIPPER_RUNTIME` and image names.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Node => "node",
            Runtime::Python => "python",
            Runtime::Go => "go",
            Runtime::Custom => "custom",
        }
    }

    /// File name of the handler inside `/app/function`, for runtimes that run inline code.
    pub fn handler_file(self) -> Option<&'static str> {
        match self {
            Runtime::Node => Some("index.js"),
            Runtime::Python => Some("handler.py"),
            Runtime::Go | Runtime::Custom => None,
        }
    }
}

/// Inline source.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// The handler's code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Name of the exported handler (informational; the shim finds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// Package name -> exact version.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dependencies: BTreeMap<String, String>,
}

/// CPU and memory; when one of a pair is given the other copies it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSpec {
    /// e.g. `50m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_request: Option<String>,
    /// e.g. `500m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_limit: Option<String>,
    /// e.g. `64Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_request: Option<String>,
    /// e.g. `256Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<String>,
}

/// Resources after defaults and pair copying: (cpu request, cpu limit, memory request, memory limit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedResources {
    /// CPU request.
    pub cpu_request: String,
    /// CPU limit.
    pub cpu_limit: String,
    /// Memory request.
    pub memory_request: String,
    /// Memory limit.
    pub memory_limit: String,
}

/// A service binding.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceBinding {
    /// The Kipper service's name.
    pub name: String,
    /// Variable prefix; default by service type (`DB_`, `REDIS_`, `S3_`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Database name for database services (`<service>_<function>_<env>` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

/// A volume mount.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    /// Kipper volume name (PVC `shared-<name>`).
    pub name: String,
    /// Absolute path in the container.
    pub mount_path: String,
}

/// A trigger.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    /// Trigger type.
    #[serde(rename = "type")]
    pub kind: TriggerType,
    /// Cron expression (cron triggers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Keys `source`, `query`, `markDone`, `list`, `bucket`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
}

impl Trigger {
    /// A config value, `None` when absent or blank.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.config
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }
}

/// Trigger types of the upstream schema: the subset of [`kipper_contract::Trigger`] a Function
/// may name (never `test`). The serde names are the contract's (a test checks every one).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TriggerType {
    /// Request-driven via the KEDA HTTP add-on.
    Http,
    /// A CronJob.
    Cron,
    /// S3 bucket changes.
    Minio,
    /// A PostgreSQL query.
    Postgres,
    /// A Redis list.
    Redis,
    /// A MySQL/MariaDB query.
    Mysql,
    /// In the upstream schema; not supported by kipper-poll (rendering reports it).
    Rabbitmq,
}

impl TriggerType {
    /// Lowercase name, as in labels and `KIPPER_TRIGGER`.
    pub fn as_str(self) -> &'static str {
        kipper_contract::Trigger::from(self).as_str()
    }

    /// Triggers served by the kipper-poll sidecar.
    pub fn is_event(self) -> bool {
        kipper_contract::Trigger::from(self).is_event()
    }
}

impl From<TriggerType> for kipper_contract::Trigger {
    fn from(t: TriggerType) -> Self {
        use kipper_contract::Trigger;
        match t {
            TriggerType::Http => Trigger::Http,
            TriggerType::Cron => Trigger::Cron,
            TriggerType::Minio => Trigger::Minio,
            TriggerType::Postgres => Trigger::Postgres,
            TriggerType::Redis => Trigger::Redis,
            TriggerType::Mysql => Trigger::Mysql,
            TriggerType::Rabbitmq => Trigger::Rabbitmq,
        }
    }
}

/// Observed state.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionStatus {
    /// Idle, Scaling, Running or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Ready replicas of the Deployment.
    #[serde(default)]
    pub replicas: i32,
    /// Public URL of HTTP functions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Rendered`, `HostnameAvailable`, `ServicesBound`, ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Per-function databases created (or found) for the bindings, as
    /// `<service>/<database>@<host>:<port>`: each is created once, not on every reconcile.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<String>,
}

/// Lifecycle phase.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// Rendered, zero replicas.
    Idle,
    /// Replicas wanted but not all ready.
    Scaling,
    /// At least one ready replica and none missing.
    Running,
    /// Something could not be rendered or applied.
    Failed,
}

impl FunctionSpec {
    /// The triggers, with the implicit `http` one when none is given.
    pub fn effective_triggers(&self) -> Vec<Trigger> {
        if self.triggers.is_empty() {
            vec![Trigger {
                kind: TriggerType::Http,
                schedule: None,
                config: BTreeMap::new(),
            }]
        } else {
            self.triggers.clone()
        }
    }

    /// The one trigger served by a Deployment (http or an event trigger), if any.
    pub fn serving_trigger(&self) -> Option<Trigger> {
        self.effective_triggers()
            .into_iter()
            .find(|t| t.kind != TriggerType::Cron)
    }

    /// The cron trigger, if any.
    pub fn cron_trigger(&self) -> Option<Trigger> {
        self.effective_triggers()
            .into_iter()
            .find(|t| t.kind == TriggerType::Cron)
    }

    /// The trigger named in the labels of objects shared by all triggers (ConfigMap).
    pub fn primary_trigger(&self) -> TriggerType {
        self.serving_trigger()
            .or_else(|| self.cron_trigger())
            .map_or(TriggerType::Http, |t| t.kind)
    }

    /// Idle timeout in seconds.
    pub fn idle_timeout(&self) -> i32 {
        self.idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT)
    }

    /// Resources with defaults and pair copying applied.
    pub fn resolved_resources(&self) -> ResolvedResources {
        let r = self.resources.clone().unwrap_or_default();
        let pair = |a: Option<String>, b: Option<String>, default: &str| match (a, b) {
            (Some(a), Some(b)) => (a, b),
            (Some(a), None) => (a.clone(), a),
            (None, Some(b)) => (b.clone(), b),
            (None, None) => (default.to_owned(), default.to_owned()),
        };
        let (cpu_request, cpu_limit) = pair(r.cpu_request, r.cpu_limit, DEFAULT_CPU);
        let (memory_request, memory_limit) = pair(r.memory_request, r.memory_limit, DEFAULT_MEMORY);
        ResolvedResources {
            cpu_request,
            cpu_limit,
            memory_request,
            memory_limit,
        }
    }
}

mod validate;

pub use validate::{
    default_database_name, validate_database_name, validate_env_name, validate_env_prefix,
    validate_function_name,
};

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn resources_copy_the_other_of_a_pair_and_default() {
        let s = FunctionSpec {
            image: Some("img".into()),
            port: 8080,
            resources: Some(ResourceSpec {
                cpu_limit: Some("500m".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let r = s.resolved_resources();
        assert_eq!(
            (r.cpu_request.as_str(), r.cpu_limit.as_str()),
            ("500m", "500m")
        );
        assert_eq!(
            (r.memory_request.as_str(), r.memory_limit.as_str()),
            ("64Mi", "64Mi")
        );
    }

    #[test]
    fn port_defaults_to_8080_when_absent() {
        let s: FunctionSpec = serde_json::from_str(r#"{"image":"x"}"#).unwrap();
        assert_eq!(s.port, 8080);
        assert_eq!(s.runtime, Runtime::Node);
        assert_eq!(s.effective_triggers()[0].kind, TriggerType::Http);
    }

    /// The serde names come from the derive, the contract names from `kipper-contract`: every
    /// type the CRD schema allows must be spelled the same in both, and `test` is never one.
    #[test]
    fn trigger_types_are_spelled_as_the_contract_says() {
        use kube::CustomResourceExt as _;
        let crd = serde_json::to_value(Function::crd()).unwrap();
        let allowed = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["triggers"]["items"]["properties"]["type"]["enum"];
        let allowed = allowed.as_array().expect("the trigger type is an enum");
        assert!(!allowed.is_empty(), "{crd}");
        for name in allowed {
            let kind: TriggerType = serde_json::from_value(name.clone()).unwrap();
            assert_eq!(kind.as_str(), name.as_str().unwrap());
            assert_eq!(serde_json::to_value(kind).unwrap(), *name);
        }
        assert!(!allowed.contains(&serde_json::json!("test")));
    }
}
