//! The reconcile loop (kube-rs runtime `Controller`): look up the services a Function uses,
//! render, refuse a hostname someone else owns, server-side apply every object, delete what
//! the spec no longer needs, write `status`, requeue with backoff on errors.
//!
//! Single replica by design: reconciling is idempotent (server-side apply with one field
//! manager), so two overlapping controllers during a rollout converge to the same objects;
//! the Deployment uses `strategy: Recreate` and one replica rather than leader election.

mod apply;
mod status;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tracing::{info, warn};

use crate::crd::Function;
use crate::database::DatabaseServer;
use crate::facts::{
    SERVICE_TYPE_LABEL, ServiceCatalog, ServiceFacts, ServiceKind, credentials_secret,
};
use crate::metrics::Metrics;
use crate::render::{self, Problem, RenderSettings, Rendered, condition};
use crate::{Error, Result};

pub use apply::FIELD_MANAGER;

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Renderer settings.
    pub settings: RenderSettings,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Creates per-function databases (a stub in tests without database servers).
    pub provision: Provisioner,
    /// Consecutive failures per `namespace/name`, for the backoff.
    failures: Mutex<HashMap<String, u32>>,
}

/// Creates a database on a server unless it exists; `Ok(true)` when it created it.
pub type Provisioner = Arc<
    dyn Fn(DatabaseServer, String) -> Pin<Box<dyn Future<Output = Result<bool>> + Send>>
        + Send
        + Sync,
>;

impl Context {
    /// A context with no failures recorded.
    pub fn new(client: Client, settings: RenderSettings, metrics: Arc<Metrics>) -> Self {
        let provision: Provisioner = Arc::new(|server, name| {
            Box::pin(async move { crate::database::ensure_database(&server, &name).await })
        });
        Self::with_provisioner(client, settings, metrics, provision)
    }

    /// A context with another way of creating databases.
    pub fn with_provisioner(
        client: Client,
        settings: RenderSettings,
        metrics: Arc<Metrics>,
        provision: Provisioner,
    ) -> Self {
        Self {
            client,
            settings,
            metrics,
            provision,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        // A poisoned map only holds counters: keep using it.
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Resync interval of a healthy Function.
const RESYNC: Duration = Duration::from_secs(300);
/// Retry interval of a Function with a problem the user must fix (a service may appear).
const PROBLEM_RETRY: Duration = Duration::from_secs(60);
/// First and last delay of the error backoff.
const BACKOFF_MIN: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

fn key(f: &Function) -> String {
    format!("{}/{}", f.namespace().unwrap_or_default(), f.name_any())
}

/// Reads the facts of every service the Function binds or reads from; absent services are
/// left out and reported by the renderer.
pub async fn service_catalog(
    client: &Client,
    namespace: &str,
    function: &Function,
) -> Result<ServiceCatalog> {
    let mut names: BTreeSet<String> = function
        .spec
        .service_bindings
        .iter()
        .map(|b| b.name.clone())
        .collect();
    for t in function.spec.effective_triggers() {
        if let Some(source) = t.get("source") {
            names.insert(source.to_owned());
        }
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut catalog = ServiceCatalog::new();
    for name in names {
        let Some(secret) = secrets.get_opt(&credentials_secret(&name)).await? else {
            continue;
        };
        let kind = secret
            .labels()
            .get(SERVICE_TYPE_LABEL)
            .and_then(|k| ServiceKind::parse(k));
        if let Some(kind) = kind {
            catalog.insert(
                name.clone(),
                ServiceFacts::conventional(&name, kind, namespace),
            );
        }
    }
    Ok(catalog)
}

fn secret_field(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// Creates the per-function databases of the Function's database bindings; each failure is
/// a problem (ServicesBound False, reason DatabaseNotCreated), not an error of the reconcile.
async fn provision_databases(
    ctx: &Context,
    namespace: &str,
    function: &Function,
    catalog: &ServiceCatalog,
) -> Result<Vec<Problem>> {
    let mut problems = Vec::new();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    for binding in &function.spec.service_bindings {
        let Some(facts) = catalog.get(&binding.name) else {
            continue; // reported by the renderer as UnknownService
        };
        if !matches!(facts.kind, ServiceKind::Postgres | ServiceKind::Mysql) {
            continue;
        }
        let name = binding.database.clone().unwrap_or_else(|| {
            crate::crd::default_database_name(
                &binding.name,
                &function.name_any(),
                function
                    .labels()
                    .get(crate::render::ENVIRONMENT_LABEL)
                    .map(String::as_str),
            )
        });
        let Some(secret) = secrets.get_opt(&facts.secret).await? else {
            continue;
        };
        let server = DatabaseServer {
            kind: facts.kind,
            host: facts.host.clone(),
            port: facts.port,
            user: secret_field(&secret, crate::facts::keys::USERNAME).unwrap_or_default(),
            password: secret_field(&secret, crate::facts::keys::PASSWORD).unwrap_or_default(),
        };
        match (ctx.provision)(server, name.clone()).await {
            Ok(true) => {
                info!(message = "Created a per-function database.", database = %name, service = %binding.name)
            }
            Ok(false) => {}
            Err(e) => problems.push(Problem {
                condition: condition::SERVICES_BOUND,
                reason: "DatabaseNotCreated",
                message: e.to_string(),
            }),
        }
    }
    Ok(problems)
}

/// Who, other than `function`, serves `host` through an Ingress (`Kind namespace/name`).
async fn host_owner(client: &Client, host: &str, function: &Function) -> Result<Option<String>> {
    let uid = function.uid().unwrap_or_default();
    let ingresses: Api<Ingress> = Api::all(client.clone());
    for ing in ingresses.list(&ListParams::default()).await? {
        let serves = ing
            .spec
            .as_ref()
            .and_then(|s| s.rules.as_ref())
            .is_some_and(|rules| rules.iter().any(|r| r.host.as_deref() == Some(host)));
        let ours = ing.owner_references().iter().any(|o| o.uid == uid);
        if serves && !ours {
            return Ok(Some(format!(
                "Ingress {}/{}",
                ing.namespace().unwrap_or_default(),
                ing.name_any()
            )));
        }
    }
    Ok(None)
}

/// Drops the objects that claim the public hostname (route, interceptor host, headers).
fn drop_public_route(rendered: &mut Rendered) {
    rendered.objects.retain(|o| {
        let public = matches!(o.kind(), "Ingress" | "HTTPScaledObject" | "Middleware");
        let proxy = o.kind() == "Service" && o.name().ends_with("-proxy");
        !(public || proxy)
    });
    rendered.host = None;
}

/// One reconcile of one Function.
pub async fn reconcile(function: Arc<Function>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile_inner(&function, &ctx).await;
    ctx.metrics
        .observe_reconcile(started.elapsed(), result.as_ref().err());
    if result.is_ok() {
        ctx.failures().remove(&key(&function));
    }
    result
}

async fn reconcile_inner(function: &Function, ctx: &Context) -> Result<Action> {
    if function.metadata.deletion_timestamp.is_some() {
        // Children carry owner references: the garbage collector deletes them.
        return Ok(Action::await_change());
    }
    let namespace = function
        .namespace()
        .ok_or_else(|| Error::Invalid("Function without a namespace".into()))?;
    let name = function.name_any();
    let catalog = service_catalog(&ctx.client, &namespace, function).await?;
    let mut rendered = render::render(function, &catalog, &ctx.settings);

    let mut problems = rendered.problems.clone();
    problems.extend(provision_databases(ctx, &namespace, function, &catalog).await?);
    let mut host_checked = false;
    if let Some(host) = rendered.host.clone() {
        host_checked = true;
        if let Some(owner) = host_owner(&ctx.client, &host, function).await? {
            let e = Error::HostnameConflict { host, owner };
            problems.push(Problem {
                condition: condition::HOSTNAME_AVAILABLE,
                reason: "HostnameConflict",
                message: e.to_string(),
            });
            drop_public_route(&mut rendered);
        }
    }

    let applied = apply::apply_all(&ctx.client, &namespace, &rendered.objects).await;
    let pruned = match &applied {
        Ok(()) => apply::prune(&ctx.client, &namespace, function, &rendered.objects).await,
        Err(_) => Ok(()),
    };
    let apply_error = applied.and(pruned).err();
    if let Some(e) = &apply_error {
        warn!(message = "Failed to apply a Function's objects.", function = %name, %namespace, error = %e);
    }
    status::write(
        &ctx.client,
        function,
        &rendered,
        &problems,
        host_checked,
        apply_error.as_ref(),
    )
    .await?;
    if let Some(e) = apply_error {
        return Err(e);
    }
    info!(message = "Reconciled.", function = %name, %namespace, objects = rendered.objects.len(), problems = problems.len());
    Ok(Action::requeue(if problems.is_empty() {
        RESYNC
    } else {
        PROBLEM_RETRY
    }))
}

/// Requeue after an error with exponential backoff per Function (5 s doubling to 5 min).
pub fn error_policy(function: Arc<Function>, error: &Error, ctx: Arc<Context>) -> Action {
    let mut failures = ctx.failures();
    let n = failures.entry(key(&function)).or_insert(0);
    let delay = BACKOFF_MIN
        .saturating_mul(2u32.saturating_pow(*n))
        .min(BACKOFF_MAX);
    *n = n.saturating_add(1);
    warn!(message = "Reconcile failed; requeueing.", function = %key(&function), reason = error.reason(), %error, retry_in_secs = delay.as_secs());
    Action::requeue(delay)
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    settings: RenderSettings,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let ctx = Arc::new(Context::new(client.clone(), settings, metrics));
    let functions: Api<Function> = Api::all(client.clone());
    let cfg = watcher::Config::default().labels("app.kubernetes.io/managed-by=kipper");
    Controller::new(functions, watcher::Config::default())
        .owns(Api::<Deployment>::all(client.clone()), cfg.clone())
        .owns(Api::<CronJob>::all(client.clone()), cfg.clone())
        .owns(Api::<Service>::all(client.clone()), cfg.clone())
        .owns(Api::<ConfigMap>::all(client.clone()), cfg)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}
