//! Batch objects: CronJob `<fn>-cron` and the test-run Job `<fn>-test-<8 hex>`, both running
//! the runtime container once (`KIPPER_MODE=batch`) with the same image, env, bindings and
//! volumes.

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kipper_contract::Trigger as TriggerName;
use kube::{Resource, ResourceExt};

use super::pod::batch_pod;
use super::{Ctx, Problem, RenderSettings};
use crate::crd::{Function, Trigger};
use crate::facts::ServiceCatalog;

/// Seconds a finished test Job is kept (seed: self-cleans 10 minutes after completion).
pub const TEST_JOB_TTL: i32 = 600;

/// CronJob `<fn>-cron`. Runs are not retried (`backoffLimit: 0`): a handler that is not safe
/// to run twice must not be re-run behind the user's back; the next schedule runs it again.
pub(crate) fn cron_job(ctx: &Ctx<'_>, trigger: &Trigger, problems: &mut Vec<Problem>) -> CronJob {
    let template = batch_pod(ctx, TriggerName::Cron, problems);
    CronJob {
        metadata: ctx.meta(format!("{}-cron", ctx.name), TriggerName::Cron.as_str()),
        spec: CronJobSpec {
            schedule: trigger.schedule.clone().unwrap_or_default(),
            time_zone: Some("Etc/UTC".to_owned()),
            concurrency_policy: Some("Forbid".to_owned()),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(ctx.labels(TriggerName::Cron.as_str())),
                    ..Default::default()
                }),
                spec: Some(JobSpec {
                    backoff_limit: Some(0),
                    template,
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The test-run Job `<fn>-test-<suffix>` (`KIPPER_TRIGGER=test`, no retry, kept 600 s).
/// `suffix` is 8 lowercase hex digits chosen by the caller.
pub fn test_job(
    function: &Function,
    services: &ServiceCatalog,
    settings: &RenderSettings,
    suffix: &str,
) -> crate::Result<Job> {
    let name = function.name_any();
    function.spec.validate(&name)?;
    let ctx = Ctx {
        namespace: function.namespace().unwrap_or_else(|| "default".to_owned()),
        owner: function
            .meta()
            .uid
            .as_ref()
            .and_then(|_| function.owner_ref(&())),
        name: name.clone(),
        function,
        services,
        settings,
    };
    let mut problems = Vec::new();
    let template = batch_pod(&ctx, TriggerName::Test, &mut problems);
    if let Some(p) = problems.first() {
        return Err(crate::Error::Render {
            part: "test Job",
            reason: p.message.clone(),
        });
    }
    Ok(Job {
        metadata: ctx.meta(format!("{name}-test-{suffix}"), TriggerName::Test.as_str()),
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            ttl_seconds_after_finished: Some(TEST_JOB_TTL),
            template,
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The test-run Job built from the deployed CronJob's pod template, so the test runs exactly
/// what the schedule runs (image, env, bindings, volumes), with `KIPPER_TRIGGER=test`.
pub fn test_job_from_cron(function: &Function, cron: &CronJob, suffix: &str) -> crate::Result<Job> {
    let name = function.name_any();
    let mut template = cron
        .spec
        .job_template
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .ok_or_else(|| crate::Error::Render {
            part: "test Job",
            reason: format!("CronJob {name}-cron has no job template"),
        })?;
    if let Some(pod) = template.spec.as_mut() {
        for c in &mut pod.containers {
            for e in c.env.iter_mut().flatten() {
                if e.name == kipper_contract::env::TRIGGER {
                    e.value = Some(TriggerName::Test.as_str().to_owned());
                }
            }
        }
    }
    let labels = |m: &mut Option<std::collections::BTreeMap<String, String>>| {
        if let Some(l) = m.as_mut() {
            l.insert(
                "kipper.run/trigger".to_owned(),
                TriggerName::Test.as_str().to_owned(),
            );
        }
    };
    if let Some(meta) = template.metadata.as_mut() {
        labels(&mut meta.labels);
    }
    let mut metadata = ObjectMeta {
        name: Some(format!("{name}-test-{suffix}")),
        namespace: function.namespace(),
        labels: cron.metadata.labels.clone(),
        owner_references: function.owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    };
    labels(&mut metadata.labels);
    Ok(Job {
        metadata,
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            ttl_seconds_after_finished: Some(TEST_JOB_TTL),
            template,
            ..Default::default()
        }),
        ..Default::default()
    })
}
