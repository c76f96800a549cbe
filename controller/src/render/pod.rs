//! The pod: the runtime container (kipper-shim in front of the handler), the kipper-poll
//! native sidecar of event triggers, bindings, volumes; and the Deployment around it.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvFromSource, HTTPGetAction,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretEnvSource, SecurityContext, TCPSocketAction,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use kipper_contract::Trigger as TriggerName;
use kipper_contract::env as var;

use super::env::{binding_env, bindings_env, env, source_database};
use super::{Ctx, Problem, code, condition, deps};
use crate::crd::{FunctionSpec, Runtime, Trigger, TriggerType};
use crate::facts::{ServiceKind, lookup};

/// Name of the runtime container.
pub(crate) const RUNTIME_CONTAINER: &str = "function";
/// Name of the sidecar (init container with `restartPolicy: Always`).
pub(crate) const POLL_CONTAINER: &str = "kipper-poll";
/// Seconds an event-triggered pod gets to stop: kipper-poll stops claiming on SIGTERM and
/// finishes or releases what is in flight; a delivery may take up to its timeout (30 s) plus
/// a release round trip, so 60 s leaves room without holding a scale-down for long.
pub(crate) const EVENT_GRACE_SECONDS: i64 = 60;
/// Seconds an HTTP pod gets to finish in-flight requests.
pub(crate) const HTTP_GRACE_SECONDS: i64 = 30;
/// Non-root user of every container (the images run as it too).
const RUN_AS: i64 = 10001;

fn quantity(s: &str) -> Quantity {
    Quantity(s.to_owned())
}

pub(crate) fn resources(requests: (&str, &str), limits: (&str, &str)) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), quantity(requests.0)),
            ("memory".to_owned(), quantity(requests.1)),
        ])),
        limits: Some(BTreeMap::from([
            ("cpu".to_owned(), quantity(limits.0)),
            ("memory".to_owned(), quantity(limits.1)),
        ])),
        ..Default::default()
    }
}

pub(crate) fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".to_owned()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Default::default()
    }
}

fn tcp_probe(period: i32, failures: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("http".to_owned()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Default::default()
    }
}

/// How the pod tells that the function can serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Health {
    /// Inline code on kipper-shim: `/ready` (handler loaded) and `/health` (alive).
    Shim,
    /// An image with a health endpoint (`spec.healthPath`): `GET` of it, 2xx.
    Path(String),
    /// An image without one: a TCP connect to the port. The seed's `--image` examples serve
    /// only `POST /event`; an HTTP probe of any other path would keep them unready and unfed.
    Tcp,
}

impl Health {
    pub(crate) fn of(spec: &FunctionSpec) -> Self {
        match (&spec.image, &spec.health_path) {
            (None, _) => Health::Shim,
            (Some(_), Some(path)) => Health::Path(path.clone()),
            (Some(_), None) => Health::Tcp,
        }
    }

    /// Gates traffic; polled every second so a cold start is seen as soon as it is over.
    fn readiness(&self) -> Probe {
        match self {
            Health::Shim => http_probe("/ready", 1, 3),
            Health::Path(path) => http_probe(path, 1, 3),
            Health::Tcp => tcp_probe(1, 3),
        }
    }

    fn liveness(&self) -> Probe {
        match self {
            Health::Shim => http_probe("/health", 10, 3),
            Health::Path(path) => http_probe(path, 10, 3),
            Health::Tcp => tcp_probe(10, 3),
        }
    }

    /// kipper-poll's `KIPPER_TARGET_READY_URL`; `None` leaves it its TCP check.
    fn ready_url(&self, port: i32) -> Option<String> {
        match self {
            Health::Shim => Some(format!("http://localhost:{port}/ready")),
            Health::Path(path) => Some(format!("http://localhost:{port}{path}")),
            Health::Tcp => None,
        }
    }
}

/// How the runtime container runs.
pub(crate) enum Mode<'t> {
    /// Serves HTTP (`KIPPER_MODE=http`) for this trigger.
    Serve(&'t Trigger),
    /// Runs once (`KIPPER_MODE=batch`) with `KIPPER_TRIGGER` set to this trigger.
    Batch(TriggerName),
}

/// The runtime container.
pub(crate) fn runtime_container(
    ctx: &Ctx<'_>,
    mode: &Mode<'_>,
    problems: &mut Vec<Problem>,
) -> Container {
    let spec = &ctx.function.spec;
    let image = spec.image.clone().unwrap_or_else(|| match spec.runtime {
        Runtime::Python => ctx.settings.python_image.clone(),
        _ => ctx.settings.node_image.clone(),
    });
    let (kipper_mode, trigger) = match mode {
        Mode::Serve(t) => (var::mode::HTTP, t.kind.as_str()),
        Mode::Batch(t) => (var::mode::BATCH, t.as_str()),
    };
    let mut vars = vec![
        env(var::PORT, spec.port.to_string()),
        env(var::MODE, kipper_mode),
        env(var::TRIGGER, trigger),
    ];
    // Only inline code runs on our runtime images; a user image decides for itself.
    if spec.image.is_none() && spec.runtime.handler_file().is_some() {
        vars.push(env(var::RUNTIME, spec.runtime.as_str()));
    }
    vars.extend(spec.env.iter().map(|(k, v)| env(k, v.clone())));
    vars.extend(bindings_env(ctx, problems));

    let mut mounts = Vec::new();
    if code::config_map(ctx).is_some() {
        mounts.push(deps::code_mount());
    }
    if deps::declared(spec) {
        // The init step installed into the cache; the shim finds it there and installs
        // nothing (it would install itself only if the cache lost it meanwhile).
        vars.push(env(var::DEPS_CACHE, deps::DEPS_CACHE_PATH));
        mounts.push(deps::cache_mount());
    }
    for v in &spec.volumes {
        mounts.push(VolumeMount {
            name: format!("vol-{}", v.name),
            mount_path: v.mount_path.clone(),
            ..Default::default()
        });
    }
    let r = spec.resolved_resources();
    let serving = matches!(mode, Mode::Serve(_));
    Container {
        name: RUNTIME_CONTAINER.to_owned(),
        image: Some(image),
        ports: serving.then(|| {
            vec![ContainerPort {
                name: Some("http".to_owned()),
                container_port: spec.port,
                protocol: Some("TCP".to_owned()),
                ..Default::default()
            }]
        }),
        env: Some(vars),
        env_from: Some(vec![EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: secrets_name(&ctx.name),
                optional: Some(true),
            }),
            ..Default::default()
        }]),
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        resources: Some(resources(
            (&r.cpu_request, &r.memory_request),
            (&r.cpu_limit, &r.memory_limit),
        )),
        readiness_probe: serving.then(|| Health::of(spec).readiness()),
        liveness_probe: serving.then(|| Health::of(spec).liveness()),
        security_context: Some(container_security()),
        ..Default::default()
    }
}

/// Name of the write-only secrets of a function.
pub fn secrets_name(function: &str) -> String {
    format!("{function}-secrets")
}

/// The kipper-poll sidecar for an event trigger, or `None` (with a problem) when its source
/// service is unknown.
fn poll_sidecar(
    ctx: &Ctx<'_>,
    trigger: &Trigger,
    problems: &mut Vec<Problem>,
) -> Option<Container> {
    let source = trigger.get("source").unwrap_or_default();
    let facts = match lookup(ctx.services, source, &ctx.namespace) {
        Ok(f) => f,
        Err(e) => {
            problems.push(Problem {
                condition: condition::SERVICES_BOUND,
                reason: "UnknownService",
                message: format!("{} trigger source: {e}", trigger.kind.as_str()),
            });
            return None;
        }
    };
    let expected = ServiceKind::for_trigger(trigger.kind);
    if Some(facts.kind) != expected {
        problems.push(Problem {
            condition: condition::SERVICES_BOUND,
            reason: "WrongServiceType",
            message: format!(
                "{} trigger source {source:?} is a {} service: use a {} service",
                trigger.kind.as_str(),
                facts.kind.as_str(),
                expected.map_or("matching", ServiceKind::as_str)
            ),
        });
        return None;
    }
    let port = ctx.function.spec.port;
    let mut vars = vec![
        env(var::TRIGGER, trigger.kind.as_str()),
        env(var::TARGET_URL, format!("http://localhost:{port}/event")),
        env(var::FUNCTION_NAME, ctx.name.clone()),
    ];
    // The sidecar claims nothing until the handler says it can serve, so no event is taken
    // (and held) while the handler starts or after it failed to load. Without a ready URL it
    // checks that the port accepts connections, which a custom image only serving
    // POST /event passes.
    if let Some(url) = Health::of(&ctx.function.spec).ready_url(port) {
        vars.push(env(var::TARGET_READY_URL, url));
    }
    let mut setting = |key: &str, var: &str| {
        if let Some(v) = trigger.get(key) {
            vars.push(env(var, v));
        }
    };
    match trigger.kind {
        TriggerType::Postgres | TriggerType::Mysql => {
            setting("query", var::QUERY);
            setting("markDone", var::MARK_DONE);
        }
        TriggerType::Redis => setting("list", var::REDIS_LIST),
        TriggerType::Minio => setting("bucket", var::MINIO_BUCKET),
        _ => {}
    }
    // The sidecar always reads the type's default prefix: its env is its own, so a custom
    // prefix on the runtime container's binding does not matter here.
    let database = source_database(ctx, facts);
    vars.extend(binding_env(
        facts,
        facts.kind.default_prefix(),
        database.as_ref(),
    ));
    Some(Container {
        name: POLL_CONTAINER.to_owned(),
        image: Some(ctx.settings.poll_image.clone()),
        // A native sidecar: starts before the runtime container, stops after it, and does not
        // keep a Job or a scale-down waiting.
        restart_policy: Some("Always".to_owned()),
        env: Some(vars),
        resources: Some(resources(("10m", "32Mi"), ("200m", "64Mi"))),
        security_context: Some(container_security()),
        ..Default::default()
    })
}

/// Volumes of the pod: code ConfigMap, dependency cache and Kipper volumes.
fn volumes(ctx: &Ctx<'_>) -> Option<Vec<Volume>> {
    let mut vols = Vec::new();
    if code::config_map(ctx).is_some() {
        vols.push(deps::code_volume(ctx));
    }
    if deps::declared(&ctx.function.spec) {
        vols.push(deps::cache_volume(ctx));
    }
    for v in &ctx.function.spec.volumes {
        vols.push(Volume {
            name: format!("vol-{}", v.name),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: format!("shared-{}", v.name),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    (!vols.is_empty()).then_some(vols)
}

/// The pod spec shared by Deployments, CronJobs and test Jobs.
pub(crate) fn pod_spec(
    ctx: &Ctx<'_>,
    mode: &Mode<'_>,
    sidecar: Option<Container>,
    problems: &mut Vec<Problem>,
) -> PodSpec {
    let grace = if sidecar.is_some() {
        EVENT_GRACE_SECONDS
    } else {
        HTTP_GRACE_SECONDS
    };
    let runtime = runtime_container(ctx, mode, problems);
    // The install runs first, so the sidecar (started next) waits for a runtime that will
    // not install; both are init containers, started in this order.
    let mut init = Vec::new();
    if deps::declared(&ctx.function.spec) {
        init.push(deps::install_container(
            ctx,
            runtime.image.clone().unwrap_or_default(),
        ));
    }
    init.extend(sidecar);
    PodSpec {
        init_containers: (!init.is_empty()).then_some(init),
        containers: vec![runtime],
        volumes: volumes(ctx),
        termination_grace_period_seconds: Some(grace),
        restart_policy: matches!(mode, Mode::Batch(_)).then(|| "Never".to_owned()),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            fs_group: Some(RUN_AS),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Pod template annotations: a content hash of the code so that a code change rolls the pods
/// (a mounted ConfigMap updates in place, but the shim has already loaded the old code).
fn template_annotations(ctx: &Ctx<'_>) -> Option<BTreeMap<String, String>> {
    let source = ctx.function.spec.source.as_ref()?;
    let text = serde_json::to_string(source).ok()?;
    Some(BTreeMap::from([(
        "kipper.run/code-hash".to_owned(),
        super::fnv1a(text.as_bytes()),
    )]))
}

/// The pod template of a serving trigger (http or event), or `None` when it cannot run.
pub(crate) fn serving_pod(
    ctx: &Ctx<'_>,
    trigger: &Trigger,
    problems: &mut Vec<Problem>,
) -> Option<PodTemplateSpec> {
    let sidecar = if trigger.kind.is_event() {
        Some(poll_sidecar(ctx, trigger, problems)?)
    } else {
        None
    };
    Some(PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(ctx.labels(trigger.kind.as_str())),
            annotations: template_annotations(ctx),
            ..Default::default()
        }),
        spec: Some(pod_spec(ctx, &Mode::Serve(trigger), sidecar, problems)),
    })
}

/// A batch pod template (CronJob, test Job).
pub(crate) fn batch_pod(
    ctx: &Ctx<'_>,
    trigger: TriggerName,
    problems: &mut Vec<Problem>,
) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(ctx.labels(trigger.as_str())),
            annotations: template_annotations(ctx),
            ..Default::default()
        }),
        spec: Some(pod_spec(ctx, &Mode::Batch(trigger), None, problems)),
    }
}

/// Deployment `<fn>`. `replicas` is left unset on purpose: KEDA owns it, and a value here
/// would make every apply fight the autoscaler.
pub(crate) fn deployment(
    ctx: &Ctx<'_>,
    trigger: &Trigger,
    template: PodTemplateSpec,
) -> Deployment {
    Deployment {
        metadata: ctx.meta(ctx.name.clone(), trigger.kind.as_str()),
        spec: DeploymentSpec {
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([("app".to_owned(), ctx.name.clone())])),
                ..Default::default()
            },
            revision_history_limit: Some(2),
            template,
            ..Default::default()
        },
        ..Default::default()
    }
}
