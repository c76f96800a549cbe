//! The reconcile loop (kube-rs runtime `Controller`): look up the services a Function uses,
//! render, refuse a hostname someone else owns, create per-function databases, server-side
//! apply every object, delete what the spec no longer needs, write `status`, requeue with
//! backoff on errors.
//!
//! **Architecture Invariant:** a reconcile that cannot render the whole Function (an invalid
//! spec, a missing or unusable credentials Secret) applies and deletes nothing: what runs keeps
//! running, and the status names the field or Secret at fault. Every child kind and every
//! credentials Secret is watched, so a fix or a deleted child is reconciled within seconds.
//!
//! Single replica by design: reconciling is idempotent (server-side apply with one field
//! manager), so two overlapping controllers during a rollout converge to the same objects;
//! the Deployment uses `strategy: Recreate` and one replica rather than leader election.

mod apply;
mod catalog;
mod databases;
mod hosts;
mod run;
mod status;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};
use tracing::{info, warn};

use crate::crd::Function;
use crate::database::DatabaseServer;
use crate::metrics::Metrics;
use crate::render::{self, Problem, RenderSettings, Rendered, condition};
use crate::{Error, Result};

pub use apply::{FIELD_MANAGER, REPLICAS_SEED_MANAGER};
pub use catalog::{Catalog, service_catalog, service_names};
pub use hosts::HostIndex;
pub use run::{ApiHealth, run};
pub use status::Outcome;

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Renderer settings.
    pub settings: RenderSettings,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Creates per-function databases (a recorder in tests that check what would be created).
    pub provision: Provisioner,
    /// Which Ingress serves which host.
    pub hosts: HostIndex,
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
    /// A context with no failures recorded; starts the host index's watch.
    pub fn new(client: Client, settings: RenderSettings, metrics: Arc<Metrics>) -> Self {
        let provision: Provisioner = Arc::new(|server, name| {
            Box::pin(async move { crate::database::ensure_database(&server, &name).await })
        });
        Self::with_provisioner(client, settings, metrics, provision)
    }

    /// A context with another way of creating databases; starts the host index's watch.
    pub fn with_provisioner(
        client: Client,
        settings: RenderSettings,
        metrics: Arc<Metrics>,
        provision: Provisioner,
    ) -> Self {
        Self {
            hosts: HostIndex::spawn(client.clone()),
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
/// How long a reconcile waits for the host index's first list.
const HOST_INDEX_WAIT: Duration = Duration::from_secs(10);

fn key(f: &Function) -> String {
    format!("{}/{}", f.namespace().unwrap_or_default(), f.name_any())
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
    let namespace = function.namespace().ok_or_else(|| Error::MalformedObject {
        object: format!("Function {}", function.name_any()),
        problem: "has no namespace".into(),
    })?;
    let name = function.name_any();
    let catalog = service_catalog(&ctx.client, &namespace, function).await?;
    let mut rendered = render::render(function, &catalog.services, &ctx.settings);
    let mut outcome = Outcome {
        problems: rendered.problems.clone(),
        ..Default::default()
    };
    outcome.problems.extend(catalog.problems);
    let complete = outcome.problems.is_empty();
    let mut apply_error = None;
    if complete {
        let provisioned =
            databases::provision(ctx, &namespace, function, &catalog.services).await?;
        outcome.databases = provisioned.databases;
        outcome.database_problems = provisioned.problems;
        if let Some(host) = rendered.host.clone() {
            outcome.host_checked = true;
            if tokio::time::timeout(HOST_INDEX_WAIT, ctx.hosts.wait_ready())
                .await
                .is_err()
            {
                return Err(Error::Unavailable(
                    "the Ingress host index has not listed the cluster yet".into(),
                ));
            }
            let uid = function.uid().unwrap_or_default();
            if let Some(owner) = ctx.hosts.owner_other_than(&host, &uid) {
                let e = Error::HostnameConflict { host, owner };
                outcome.problems.push(Problem {
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
        apply_error = applied.and(pruned).err();
        if let Some(e) = &apply_error {
            warn!(message = "Failed to apply a Function's objects.", function = %name, %namespace, error = %e);
        }
    } else {
        // Keep what runs: the last good objects stay until the spec or Secret is fixed.
        outcome.kept_last_good = true;
        outcome.databases = function
            .status
            .as_ref()
            .map(|s| s.databases.clone())
            .unwrap_or_default();
        warn!(message = "Kept the Function's objects: it cannot be rendered.", function = %name, %namespace, problem = %outcome.problems[0].message);
    }
    outcome.apply_error = apply_error.as_ref();
    status::write(&ctx.client, function, &rendered, &outcome).await?;
    if let Some(e) = apply_error {
        return Err(e);
    }
    let problems = outcome.problems.len() + outcome.database_problems.len();
    info!(message = "Reconciled.", function = %name, %namespace, objects = rendered.objects.len(), problems);
    Ok(Action::requeue(if problems == 0 {
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
