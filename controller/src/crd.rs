//! The `kipper.run/v1alpha1` `Function` resource, schema-compatible with upstream's
//! (CONTRACT section 3), plus the defaults and validation every consumer shares.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

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
    Ok(serde_yaml::to_string(&Function::crd())?)
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

/// Trigger types of the upstream schema.
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
        match self {
            TriggerType::Http => "http",
            TriggerType::Cron => "cron",
            TriggerType::Minio => "minio",
            TriggerType::Postgres => "postgres",
            TriggerType::Redis => "redis",
            TriggerType::Mysql => "mysql",
            TriggerType::Rabbitmq => "rabbitmq",
        }
    }

    /// Triggers served by the kipper-poll sidecar.
    pub fn is_event(self) -> bool {
        matches!(
            self,
            TriggerType::Minio | TriggerType::Postgres | TriggerType::Redis | TriggerType::Mysql
        )
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

    /// Checks what the schema cannot: the combinations. Errors name the field and the fix.
    pub fn validate(&self, name: &str) -> Result<()> {
        validate_function_name(name)?;
        let code = self.source.as_ref().and_then(|s| s.code.as_deref());
        match (&self.image, code) {
            (None, None) => {
                return Err(Error::Invalid(
                    "spec.image or spec.source.code is required: give --image or --code-file"
                        .into(),
                ));
            }
            (None, Some(_)) if self.runtime.handler_file().is_none() => {
                return Err(Error::Invalid(format!(
                    "spec.runtime {} cannot run inline code: use node or python, or give an image",
                    self.runtime.as_str()
                )));
            }
            _ => {}
        }
        if !(1..=65535).contains(&self.port) {
            return Err(Error::Invalid(format!(
                "spec.port {} is out of range: use 1-65535",
                self.port
            )));
        }
        let triggers = self.effective_triggers();
        let serving = triggers
            .iter()
            .filter(|t| t.kind != TriggerType::Cron)
            .count();
        let crons = triggers.len() - serving;
        if serving > 1 || crons > 1 {
            return Err(Error::Invalid(
                "spec.triggers: at most one http or event trigger and one cron trigger".into(),
            ));
        }
        for t in &triggers {
            validate_trigger(t)?;
        }
        for v in &self.volumes {
            if !v.mount_path.starts_with('/') {
                return Err(Error::Invalid(format!(
                    "spec.volumes {}: mountPath {:?} must be an absolute path",
                    v.name, v.mount_path
                )));
            }
            validate_dns_label("spec.volumes name", &v.name, 56)?;
        }
        for b in &self.service_bindings {
            validate_dns_label("spec.serviceBindings name", &b.name, 63)?;
            if let Some(db) = &b.database {
                validate_database_name(db)?;
            }
            if let Some(p) = &b.prefix {
                validate_env_prefix(p)?;
            }
        }
        for key in self.env.keys() {
            validate_env_name("spec.env", key)?;
            if key == "PORT" || key.starts_with("KIPPER_") {
                return Err(Error::Invalid(format!(
                    "spec.env {key} is set by Kipper: use spec.port (--port) for PORT; KIPPER_* names are reserved"
                )));
            }
        }
        for origin in &self.csp_allowlist {
            // Each entry becomes a CSP source token: no separators or quotes may slip in.
            let ok = !origin.is_empty()
                && !origin
                    .chars()
                    .any(|c| c.is_whitespace() || matches!(c, ';' | ',' | '\'' | '"'));
            if !ok {
                return Err(Error::Invalid(format!(
                    "spec.cspAllowlist {origin:?} is not a CSP source: use an origin such as https://cdn.example.com"
                )));
            }
        }
        Ok(())
    }
}

fn validate_trigger(t: &Trigger) -> Result<()> {
    let need = |key: &str, flag: &str| {
        t.get(key).map(|_| ()).ok_or_else(|| {
            Error::Invalid(format!(
                "trigger {} needs {flag} (spec.triggers[].config.{key})",
                t.kind.as_str()
            ))
        })
    };
    match t.kind {
        TriggerType::Http => Ok(()),
        TriggerType::Cron => {
            let schedule = t.schedule.as_deref().ok_or_else(|| {
                Error::Invalid(
                    "trigger cron needs --schedule (spec.triggers[].schedule), e.g. \"0 2 * * *\""
                        .into(),
                )
            })?;
            crate::schedule::Schedule::parse(schedule).map(|_| ())
        }
        TriggerType::Postgres | TriggerType::Mysql => {
            need("source", "--source")?;
            need("query", "--query")
        }
        TriggerType::Redis => {
            need("source", "--source")?;
            need("list", "--list")
        }
        TriggerType::Minio => {
            need("source", "--source")?;
            need("bucket", "--bucket")
        }
        TriggerType::Rabbitmq => Err(Error::Invalid(
            "trigger rabbitmq is not supported by kipper-poll: use postgres, mysql, redis or minio"
                .into(),
        )),
    }
}

/// A function name must be a DNS label short enough for every derived name:
/// `<fn>-test-<8 hex>` (Job, 63) and `<fn>-cron` plus the CronJob's 11-character suffix (63).
pub fn validate_function_name(name: &str) -> Result<()> {
    validate_dns_label("function name", name, 47)
}

fn validate_dns_label(what: &str, value: &str, max: usize) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{what} {value:?} is not valid: use at most {max} lowercase letters, digits and '-', starting and ending with a letter or digit"
        )))
    }
}

/// Database names are spliced into `CREATE DATABASE`, so only `[a-z_][a-z0-9_]{0,62}` passes.
pub fn validate_database_name(name: &str) -> Result<()> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "database name {name:?} is not valid: use at most 63 lowercase letters, digits and '_', not starting with a digit (--database)"
        )))
    }
}

/// Binding prefixes become variable name prefixes: `[A-Z_][A-Z0-9_]*`.
pub fn validate_env_prefix(prefix: &str) -> Result<()> {
    let ok = prefix
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_uppercase() || b == b'_')
        && prefix
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "--prefix {prefix:?} is not valid: use uppercase letters, digits and '_', e.g. ORDERS_DB_"
        )))
    }
}

/// Environment variable names: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn validate_env_name(what: &str, key: &str) -> Result<()> {
    let ok = key
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{what}: {key:?} is not a valid variable name: use letters, digits and '_', not starting with a digit"
        )))
    }
}

/// The per-function database name `<service>_<function>_<env>` (`_<env>` only with an environment).
pub fn default_database_name(service: &str, function: &str, environment: Option<&str>) -> String {
    let mut name = format!("{service}_{function}");
    if let Some(env) = environment.filter(|e| !e.is_empty()) {
        name.push('_');
        name.push_str(env);
    }
    name.replace('-', "_")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn spec() -> FunctionSpec {
        FunctionSpec {
            image: Some("img".into()),
            port: 8080,
            ..Default::default()
        }
    }

    #[test]
    fn resources_copy_the_other_of_a_pair_and_default() {
        let mut s = spec();
        s.resources = Some(ResourceSpec {
            cpu_limit: Some("500m".into()),
            ..Default::default()
        });
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

    #[test]
    fn validation_names_the_missing_setting() {
        let mut s = spec();
        s.triggers = vec![Trigger {
            kind: TriggerType::Postgres,
            schedule: None,
            config: [("source".to_owned(), "db".to_owned())].into(),
        }];
        let e = s.validate("f").unwrap_err().to_string();
        assert!(e.contains("--query"), "{e}");
        let mut s = spec();
        s.image = None;
        assert!(
            s.validate("f")
                .unwrap_err()
                .to_string()
                .contains("--code-file")
        );
        assert!(spec().validate("Bad_Name").is_err());
        assert!(spec().validate(&"a".repeat(48)).is_err());
        let mut s = spec();
        s.env.insert("KIPPER_TRIGGER".into(), "x".into());
        assert!(
            s.validate("f")
                .unwrap_err()
                .to_string()
                .contains("reserved")
        );
        let mut s = spec();
        s.csp_allowlist.push("https://a.com; script-src *".into());
        assert!(
            s.validate("f")
                .unwrap_err()
                .to_string()
                .contains("cspAllowlist")
        );
    }

    #[test]
    fn database_names_are_derived_and_validated() {
        assert_eq!(
            default_database_name("eventdb", "domain-sync", Some("dev")),
            "eventdb_domain_sync_dev"
        );
        assert_eq!(default_database_name("db", "api", None), "db_api");
        assert!(validate_database_name("ok_name1").is_ok());
        for bad in ["", "1abc", "x;drop", "Upper", &"a".repeat(64)] {
            assert!(validate_database_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prefixes_and_env_names_are_checked() {
        assert!(validate_env_prefix("ORDERS_").is_ok());
        assert!(validate_env_prefix("orders").is_err());
        assert!(validate_env_name("env", "A_1").is_ok());
        assert!(validate_env_name("env", "1A").is_err());
    }
}
