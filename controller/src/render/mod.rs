//! The pure renderer: a `Function` plus the facts of the services it uses becomes the list of
//! objects that run it (CONTRACT section 4). No cluster, no I/O: the controller applies the
//! result, `kip function create --dry-run` prints it, and the tests snapshot and validate it.
//!
//! **Architecture Invariant:** a part that cannot be rendered is returned as a [`Problem`]
//! (a False condition with a reason), never skipped silently.

mod batch;
mod code;
pub(crate) mod deps;
pub(crate) mod env;
mod http;
mod object;
pub(crate) mod pod;
mod scaling;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::crd::{Function, TriggerType};
use crate::facts::ServiceCatalog;

pub use batch::{test_job, test_job_from_cron};
pub use object::Object;

/// Cluster-wide settings of the renderer (controller flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderSettings {
    /// Public domain of function URLs: `fn-<name>-<cluster_domain>`.
    pub cluster_domain: String,
    /// Runtime image of `runtime: node`.
    pub node_image: String,
    /// Runtime image of `runtime: python`.
    pub python_image: String,
    /// The kipper-poll sidecar image.
    pub poll_image: String,
    /// Base URL at which KEDA reaches this controller's `/pending/...` endpoint.
    pub pending_url: String,
    /// DNS name of the KEDA HTTP add-on interceptor proxy Service.
    pub interceptor_host: String,
    /// Port of the interceptor proxy Service.
    pub interceptor_port: i32,
    /// IngressClass of public function routes.
    pub ingress_class: String,
    /// The dependency cache volume (`<fn>-deps`) of functions that declare dependencies.
    pub deps_cache: DepsCacheSettings,
}

/// The PersistentVolumeClaim that keeps installed dependencies across scale-to-zero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepsCacheSettings {
    /// `ReadWriteOnce` (default: every storage class has it; the replicas of a function then
    /// share its node) or `ReadWriteMany` (when the storage class supports it).
    pub access_mode: String,
    /// Requested size.
    pub size: String,
    /// StorageClass; `None` uses the cluster's default class.
    pub storage_class: Option<String>,
}

impl Default for DepsCacheSettings {
    fn default() -> Self {
        Self {
            access_mode: "ReadWriteOnce".into(),
            size: "1Gi".into(),
            storage_class: None,
        }
    }
}

impl Default for RenderSettings {
    fn default() -> Self {
        Self {
            cluster_domain: "kipper.local".into(),
            node_image: "kipper-runtime-node:0.1.0".into(),
            python_image: "kipper-runtime-python:0.1.0".into(),
            poll_image: "kipper-poll:0.1.0".into(),
            pending_url: "http://kipper-controller.kipper-system.svc.cluster.local:8080".into(),
            interceptor_host: "keda-add-ons-http-interceptor-proxy.keda.svc.cluster.local".into(),
            interceptor_port: 8080,
            ingress_class: "traefik".into(),
            deps_cache: DepsCacheSettings::default(),
        }
    }
}

/// Condition types the renderer can set to False.
pub mod condition {
    /// The spec is valid and every part rendered.
    pub const RENDERED: &str = "Rendered";
    /// Every bound and source service exists.
    pub const SERVICES_BOUND: &str = "ServicesBound";
    /// The public hostname is free (set by the controller).
    pub const HOSTNAME_AVAILABLE: &str = "HostnameAvailable";
    /// Every per-function database of a binding exists (set by the controller; a False one
    /// does not make the phase Failed: the function runs, its database calls fail).
    pub const DATABASES_READY: &str = "DatabasesReady";
    /// Everything applied and the workload is healthy (set by the controller).
    pub const READY: &str = "Ready";
}

/// A part that could not be rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Condition type it sets to False.
    pub condition: &'static str,
    /// CamelCase reason.
    pub reason: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// The renderer's output.
#[derive(Clone, Debug, Default)]
pub struct Rendered {
    /// Objects to apply, in apply order (config before workloads before scalers).
    pub objects: Vec<Object>,
    /// Parts that could not be rendered.
    pub problems: Vec<Problem>,
    /// Public host of an HTTP function.
    pub host: Option<String>,
}

impl Rendered {
    /// Every object as JSON, in order.
    pub fn to_values(&self) -> crate::Result<Vec<serde_json::Value>> {
        self.objects.iter().map(Object::to_value).collect()
    }

    /// A multi-document YAML stream of every object (`kip function create --dry-run -o yaml`).
    pub fn to_yaml(&self) -> crate::Result<String> {
        let mut out = String::new();
        for value in self.to_values()? {
            out.push_str("---\n");
            out.push_str(&crate::yaml::to_string(&value)?);
        }
        Ok(out)
    }
}

/// Everything the parts of the renderer share.
pub(crate) struct Ctx<'a> {
    pub name: String,
    pub namespace: String,
    pub function: &'a Function,
    pub services: &'a ServiceCatalog,
    pub settings: &'a RenderSettings,
    pub owner: Option<OwnerReference>,
}

impl Ctx<'_> {
    /// The labels every child carries.
    pub fn labels(&self, trigger: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app".to_owned(), self.name.clone()),
            (
                "app.kubernetes.io/managed-by".to_owned(),
                "kipper".to_owned(),
            ),
            ("kipper.run/resource-type".to_owned(), "function".to_owned()),
            ("kipper.run/trigger".to_owned(), trigger.to_owned()),
        ])
    }

    /// Metadata of a child named `name`.
    pub fn meta(&self, name: String, trigger: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels(trigger)),
            owner_references: self.owner.clone().map(|o| vec![o]),
            ..Default::default()
        }
    }

    /// The Function's environment, from its `kipper.run/environment` label (set by `kip`).
    pub fn environment(&self) -> Option<String> {
        self.function
            .labels()
            .get(ENVIRONMENT_LABEL)
            .filter(|e| !e.is_empty())
            .cloned()
    }
}

/// Label kip puts on a Function: its project.
pub const PROJECT_LABEL: &str = "kipper.run/project";
/// Label kip puts on a Function: its environment (used in per-function database names).
pub const ENVIRONMENT_LABEL: &str = "kipper.run/environment";

/// Public host of an HTTP function.
pub fn function_host(name: &str, settings: &RenderSettings) -> String {
    format!("fn-{name}-{}", settings.cluster_domain)
}

/// Renders every object of `function`.
pub fn render(
    function: &Function,
    services: &ServiceCatalog,
    settings: &RenderSettings,
) -> Rendered {
    let name = function.name_any();
    let ctx = Ctx {
        namespace: function.namespace().unwrap_or_else(|| "default".to_owned()),
        owner: function
            .meta()
            .uid
            .as_ref()
            .and_then(|_| function.controller_owner_ref(&())),
        name,
        function,
        services,
        settings,
    };
    let mut out = Rendered::default();
    let spec = &function.spec;
    if let Err(e) = spec.validate(&ctx.name) {
        out.problems.push(Problem {
            condition: condition::RENDERED,
            reason: "InvalidSpec",
            message: e.to_string(),
        });
        return out;
    }

    if let Some(cm) = code::config_map(&ctx) {
        out.objects.push(Object::ConfigMap(cm));
    }
    if let Some(claim) = deps::cache_claim(&ctx) {
        out.objects.push(Object::PersistentVolumeClaim(claim));
    }
    if let Some(trigger) = spec.serving_trigger() {
        match pod::serving_pod(&ctx, &trigger, &mut out.problems) {
            Some(template) => {
                out.objects.push(Object::Deployment(pod::deployment(
                    &ctx, &trigger, template,
                )));
                if trigger.kind == TriggerType::Http {
                    out.host = Some(function_host(&ctx.name, settings));
                    out.objects.extend(http::objects(&ctx));
                } else {
                    out.objects
                        .extend(scaling::objects(&ctx, &trigger, &mut out.problems));
                }
            }
            None => out.problems.push(Problem {
                condition: condition::RENDERED,
                reason: "WorkloadNotRendered",
                message: format!(
                    "the {} trigger's Deployment was not rendered: see the ServicesBound condition",
                    trigger.kind.as_str()
                ),
            }),
        }
    }
    if let Some(trigger) = spec.cron_trigger() {
        out.objects.push(Object::CronJob(batch::cron_job(
            &ctx,
            &trigger,
            &mut out.problems,
        )));
    }
    out
}

/// FNV-1a, stable across Rust releases (unlike `DefaultHasher`), for content annotations.
pub(crate) fn fnv1a(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
