//! `kip function list`, `delete`, `test-run`, `logs`.

use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, LogParams};
use rand::Rng;

use super::{Io, io_error};
use crate::crd::Function;
use crate::render::{self, RenderSettings};
use crate::{Error, Result};

/// A table of the functions of the namespace.
pub(crate) async fn list(client: &kube::Client, ns: &str, io: &mut Io<'_>) -> Result<()> {
    let api: Api<Function> = Api::namespaced(client.clone(), ns);
    let mut rows = vec![[
        "NAME".to_owned(),
        "TRIGGER".to_owned(),
        "PHASE".to_owned(),
        "REPLICAS".to_owned(),
        "ENDPOINT".to_owned(),
    ]];
    for f in api.list(&ListParams::default()).await? {
        let triggers: Vec<&str> = f
            .spec
            .effective_triggers()
            .iter()
            .map(|t| t.kind.as_str())
            .collect();
        let status = f.status.clone().unwrap_or_default();
        rows.push([
            f.name_any(),
            triggers.join("+"),
            status.phase.map_or("-".to_owned(), |p| format!("{p:?}")),
            status.replicas.to_string(),
            status.endpoint.unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    crate::cli::write_table(io.out, &rows)?;
    Ok(())
}

/// Deletes every named function; reports each and fails if any could not be deleted.
pub(crate) async fn delete(
    client: &kube::Client,
    ns: &str,
    names: &[String],
    io: &mut Io<'_>,
) -> Result<()> {
    let api: Api<Function> = Api::namespaced(client.clone(), ns);
    let mut failed = Vec::new();
    for name in names {
        let terminating = api
            .get_opt(name)
            .await?
            .and_then(|f| f.metadata.deletion_timestamp);
        if let Some(since) = terminating {
            writeln!(
                io.out,
                "function {name} is still terminating (deleted at {}); its objects are being removed",
                since.0
            )
            .map_err(io_error)?;
            continue;
        }
        match api.delete(name, &DeleteParams::foreground()).await {
            Ok(_) => writeln!(io.out, "function {name} deleted").map_err(io_error)?,
            Err(kube::Error::Api(s)) if s.code == 404 => {
                writeln!(io.err, "function {name} not found in {ns}").map_err(io_error)?;
                failed.push(name.clone());
            }
            Err(e) => return Err(e.into()),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "not found: {}; check --project/--environment",
            failed.join(", ")
        )))
    }
}

/// Starts a test-run Job with the same pod as the CronJob and `KIPPER_TRIGGER=test`.
pub(crate) async fn test_run(
    client: &kube::Client,
    ns: &str,
    name: &str,
    io: &mut Io<'_>,
) -> Result<()> {
    let api: Api<Function> = Api::namespaced(client.clone(), ns);
    let f = api
        .get_opt(name)
        .await?
        .ok_or_else(|| Error::Invalid(format!("function {name:?} not found in {ns}")))?;
    let suffix = format!("{:08x}", rand::rng().random::<u32>());
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), ns);
    // The deployed CronJob is the truth (the controller's images and settings); a function
    // without one is rendered here with the default settings.
    let job = match cronjobs.get_opt(&format!("{name}-cron")).await? {
        Some(cron) => render::test_job_from_cron(&f, &cron, &suffix)?,
        None => {
            let catalog = crate::controller::service_catalog(client, ns, &f).await?;
            render::test_job(&f, &catalog.services, &RenderSettings::default(), &suffix)?
        }
    };
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), ns);
    let created = jobs.create(&super::post_params(), &job).await?;
    writeln!(
        io.out,
        "test run {} started (KIPPER_TRIGGER=test); follow it with `kip function logs {name}`",
        created.name_any()
    )
    .map_err(io_error)
}

/// Logs of the function's pods (label `app=<name>`) over the last `since` seconds.
pub(crate) async fn logs(
    client: &kube::Client,
    ns: &str,
    name: &str,
    since: i64,
    io: &mut Io<'_>,
) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("app={name}")))
        .await?;
    if list.items.is_empty() {
        writeln!(
            io.err,
            "no pods of {name} in {ns} (scaled to zero, or no run yet)"
        )
        .map_err(io_error)?;
    }
    for pod in list {
        let params = LogParams {
            container: Some("function".to_owned()),
            since_seconds: Some(since),
            ..Default::default()
        };
        let text = pods.logs(&pod.name_any(), &params).await?;
        for line in text.lines() {
            writeln!(io.out, "[{}] {line}", pod.name_any()).map_err(io_error)?;
        }
    }
    Ok(())
}
