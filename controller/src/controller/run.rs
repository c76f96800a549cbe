//! The controller's run loop: the kube-rs `Controller` over Functions, woken by every child
//! kind it applies and by the credentials Secrets the Functions read, plus the probe that
//! tells `/ready` whether the API server answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tracing::{info, warn};

use super::{Context, catalog::service_names, error_policy, reconcile};
use crate::addons::http_addon::HTTPScaledObject;
use crate::addons::keda::{ScaledObject, TriggerAuthentication};
use crate::addons::traefik::Middleware;
use crate::crd::Function;
use crate::facts::SERVICE_TYPE_LABEL;
use crate::metrics::Metrics;
use crate::render::RenderSettings;

/// Whether the API server answered the last probe; read by `/ready`.
#[derive(Clone, Debug, Default)]
pub struct ApiHealth(Arc<AtomicBool>);

impl ApiHealth {
    /// True while the API server answers.
    pub fn reachable(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn set(&self, up: bool) {
        self.0.store(up, Ordering::Relaxed);
    }
}

/// The backoff of every watch after an error: 250 ms doubling to 3 s, so an API server that
/// restarts is watched again within seconds of answering (client-go's default caps at 30 s,
/// which would leave Functions unreconciled that long).
#[derive(Debug, Clone)]
pub struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(3);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(delay)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// How often `/ready`'s probe asks the API server for its version, and how long it waits.
const PROBE_EVERY: Duration = Duration::from_secs(2);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Probes the API server until the task is dropped; logs each change of state once.
async fn probe(client: Client, health: ApiHealth) {
    loop {
        let up = matches!(
            tokio::time::timeout(PROBE_TIMEOUT, client.apiserver_version()).await,
            Ok(Ok(_))
        );
        if up != health.reachable() {
            if up {
                info!(message = "The Kubernetes API answers.");
            } else {
                warn!(message = "Cannot reach the Kubernetes API; /ready fails until it answers.");
            }
        }
        health.set(up);
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    settings: RenderSettings,
    metrics: Arc<Metrics>,
    health: ApiHealth,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let prober = tokio::spawn(probe(client.clone(), health));
    let ctx = Arc::new(Context::new(client.clone(), settings, metrics));
    let functions: Api<Function> = Api::all(client.clone());
    let children = watcher::Config::default().labels("app.kubernetes.io/managed-by=kipper");
    let controller = Controller::new(functions, watcher::Config::default());
    let store = controller.store();
    // A credentials Secret that appears, changes or is re-created wakes every Function of its
    // namespace that names the service.
    let wake_users = move |secret: Secret| {
        let namespace = secret.namespace().unwrap_or_default();
        let service = secret
            .name_any()
            .strip_suffix("-credentials")
            .map(str::to_owned);
        store
            .state()
            .into_iter()
            .filter(|f| f.namespace().as_deref() == Some(namespace.as_str()))
            .filter(|f| {
                service
                    .as_ref()
                    .is_some_and(|s| service_names(f).contains(s))
            })
            .map(|f| ObjectRef::from_obj(&*f))
            .collect::<Vec<_>>()
    };
    controller
        .owns(Api::<Deployment>::all(client.clone()), children.clone())
        .owns(Api::<CronJob>::all(client.clone()), children.clone())
        .owns(Api::<Service>::all(client.clone()), children.clone())
        .owns(Api::<ConfigMap>::all(client.clone()), children.clone())
        .owns(Api::<Ingress>::all(client.clone()), children.clone())
        .owns(Api::<ScaledObject>::all(client.clone()), children.clone())
        .owns(
            Api::<TriggerAuthentication>::all(client.clone()),
            children.clone(),
        )
        .owns(
            Api::<HTTPScaledObject>::all(client.clone()),
            children.clone(),
        )
        .owns(Api::<Middleware>::all(client.clone()), children)
        .watches(
            Api::<Secret>::all(client),
            watcher::Config::default().labels(SERVICE_TYPE_LABEL),
            wake_users,
        )
        .trigger_backoff(WatchBackoff::default())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
    prober.abort();
}
