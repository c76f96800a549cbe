//! `Function.status`: phase, replicas, endpoint, observedGeneration and conditions that say
//! the truth (every problem is a False condition with its reason).

use chrono::Utc;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};

use crate::crd::{Function, FunctionStatus, Phase};
use crate::render::{Problem, Rendered, condition};
use crate::{Error, Result};

/// Phase and ready replicas from the Deployment (KEDA sets its replicas), whether this
/// reconcile rendered it or kept the last good one.
async fn workload_state(
    client: &Client,
    function: &Function,
    rendered: &Rendered,
) -> Result<(Phase, i32)> {
    let namespace = function.namespace().unwrap_or_default();
    let api: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let Some(dep) = api.get_opt(&function.name_any()).await? else {
        let serving = rendered.objects.iter().any(|o| o.kind() == "Deployment");
        return Ok((if serving { Phase::Scaling } else { Phase::Idle }, 0));
    };
    let wanted = dep.spec.replicas.unwrap_or(0);
    let ready = dep.status.and_then(|s| s.ready_replicas).unwrap_or(0);
    let phase = match (wanted, ready) {
        (0, 0) => Phase::Idle,
        (w, r) if r >= w => Phase::Running,
        _ => Phase::Scaling,
    };
    Ok((phase, ready))
}

fn condition(
    previous: &[Condition],
    type_: &str,
    problems: &[&Problem],
    ok_reason: &str,
    ok_message: &str,
    generation: Option<i64>,
) -> Condition {
    let (status, reason, message) = match problems.first() {
        Some(first) => (
            "False",
            first.reason.to_owned(),
            problems
                .iter()
                .map(|p| p.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ),
        None => ("True", ok_reason.to_owned(), ok_message.to_owned()),
    };
    // The transition time moves only when the status does.
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(now()));
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason,
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

fn now() -> k8s_openapi::jiff::Timestamp {
    // Second precision, as the API server stores it.
    k8s_openapi::jiff::Timestamp::from_second(Utc::now().timestamp())
        .unwrap_or_else(|_| k8s_openapi::jiff::Timestamp::now())
}

/// What one reconcile did, as the status reports it.
#[derive(Debug, Default)]
pub struct Outcome<'a> {
    /// Problems of rendering, services and the hostname.
    pub problems: Vec<Problem>,
    /// Nothing was applied or deleted: the problems stopped it, the last good objects run.
    pub kept_last_good: bool,
    /// Per-function databases that could not be created (DatabasesReady False).
    pub database_problems: Vec<Problem>,
    /// `status.databases` after this reconcile.
    pub databases: Vec<String>,
    /// Whether the public hostname was checked (HostnameAvailable is reported).
    pub host_checked: bool,
    /// The apply or prune failure, if any.
    pub apply_error: Option<&'a Error>,
}

/// Builds the status (pure, for tests) from what happened in this reconcile.
pub fn build(
    function: &Function,
    rendered: &Rendered,
    outcome: &Outcome<'_>,
    workload: (Phase, i32),
) -> FunctionStatus {
    let previous = function
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let generation = function.metadata.generation;
    let problems = &outcome.problems;
    let of = |t: &str| {
        problems
            .iter()
            .filter(|p| p.condition == t)
            .collect::<Vec<_>>()
    };
    let apply_problem = outcome.apply_error.map(|e| Problem {
        condition: condition::READY,
        reason: "ApplyFailed",
        message: e.to_string(),
    });
    let kept = outcome.kept_last_good.then(|| Problem {
        condition: condition::READY,
        reason: "KeptLastGoodObjects",
        message: "nothing was applied or deleted: the objects of the last good spec keep running until the problem is fixed".to_owned(),
    });
    let mut ready_problems: Vec<&Problem> = apply_problem.iter().chain(kept.iter()).collect();
    ready_problems.extend(problems.iter());
    let mut conditions = vec![
        condition(
            &previous,
            condition::RENDERED,
            &of(condition::RENDERED),
            "Rendered",
            "every object rendered",
            generation,
        ),
        condition(
            &previous,
            condition::SERVICES_BOUND,
            &of(condition::SERVICES_BOUND),
            "Bound",
            "every bound and source service exists",
            generation,
        ),
    ];
    if outcome.host_checked {
        conditions.push(condition(
            &previous,
            condition::HOSTNAME_AVAILABLE,
            &of(condition::HOSTNAME_AVAILABLE),
            "Available",
            "the public hostname is this function's",
            generation,
        ));
    }
    if !outcome.databases.is_empty() || !outcome.database_problems.is_empty() {
        conditions.push(condition(
            &previous,
            condition::DATABASES_READY,
            &outcome.database_problems.iter().collect::<Vec<_>>(),
            "Created",
            "every per-function database exists",
            generation,
        ));
    }
    let (phase, replicas) = if ready_problems.is_empty() {
        workload
    } else {
        (Phase::Failed, workload.1)
    };
    conditions.push(condition(
        &previous,
        condition::READY,
        &ready_problems,
        "Applied",
        "every object applied",
        generation,
    ));
    FunctionStatus {
        phase: Some(phase),
        replicas,
        endpoint: rendered.host.as_ref().map(|h| format!("https://{h}")),
        observed_generation: generation,
        conditions,
        databases: outcome.databases.clone(),
    }
}

/// Computes and writes the status subresource (merge patch).
pub async fn write(
    client: &Client,
    function: &Function,
    rendered: &Rendered,
    outcome: &Outcome<'_>,
) -> Result<()> {
    let workload = workload_state(client, function, rendered).await?;
    let status = build(function, rendered, outcome, workload);
    let namespace = function.namespace().unwrap_or_default();
    let api: Api<Function> = Api::namespaced(client.clone(), &namespace);
    // A merge patch replaces lists whole; `databases` is written even when empty.
    let mut value = serde_json::to_value(&status)?;
    value["databases"] = serde_json::json!(status.databases);
    let patch = serde_json::json!({ "status": value });
    api.patch_status(
        &function.name_any(),
        &PatchParams {
            field_manager: Some(super::FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        },
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}
