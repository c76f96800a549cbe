//! `kip service copy-data <svc> --from-environment SRC [--to-environment DST]`: asks the
//! user to type the service name (the target database is wiped), then starts the copy Job in
//! the target namespace with a mirror of the source credentials owned by the Job.

use std::io::{BufRead, IsTerminal};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch};
use rand::Rng;

use super::manage::{secret_text, service_secret};
use super::{Scope, apply_params, post_params};
use crate::cli::{Io, io_error};
use crate::facts::keys;
use crate::services::copy::{CopyPlan, copy_job, mirror_secret, owned_by};
use crate::services::{namespace, render::host};
use crate::{Error, Result};

/// Reads the confirmation: the service name typed back. `input` is standard input.
pub(crate) fn confirm(
    service: &str,
    target_ns: &str,
    input: &mut dyn BufRead,
    terminal: bool,
    io: &mut Io<'_>,
) -> Result<()> {
    write!(
        io.err,
        "This wipes the database of {service} in {target_ns}: every table, sequence and view the source has is dropped and recreated with the source's data.\nType the service name ({service}) to confirm: "
    )
    .map_err(io_error)?;
    io.err.flush().map_err(io_error)?;
    let mut line = String::new();
    input.read_line(&mut line).map_err(|source| Error::Io {
        context: "read the confirmation".into(),
        source,
    })?;
    if !terminal {
        // Nothing echoed the answer: end the prompt's line before whatever follows.
        writeln!(io.err).map_err(io_error)?;
    }
    if line.trim() == service {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "confirmation did not match {service:?}: nothing was copied (use --yes to skip the question)"
        )))
    }
}

/// Starts the copy.
pub(super) async fn copy_data(
    client: &kube::Client,
    scope: &Scope,
    service: &str,
    from: &str,
    to: &str,
    yes: bool,
    io: &mut Io<'_>,
) -> Result<()> {
    let source_ns = namespace(&scope.project, Some(from));
    let target_ns = namespace(&scope.project, Some(to));
    let (source, source_kind) = service_secret(client, &source_ns, service).await?;
    let (target, target_kind) = service_secret(client, &target_ns, service).await?;
    if source_kind != target_kind {
        return Err(Error::Invalid(format!(
            "{service} is a {} service in {source_ns} but a {} service in {target_ns}: copy between services of the same type",
            source_kind.as_str(),
            target_kind.as_str()
        )));
    }
    let plan = CopyPlan {
        service: service.to_owned(),
        kind: target_kind,
        source_host: secret_text(&source, keys::HOST).unwrap_or_else(|| host(service, &source_ns)),
        target_host: secret_text(&target, keys::HOST).unwrap_or_else(|| host(service, &target_ns)),
        source_namespace: source_ns,
        target_namespace: target_ns.clone(),
        suffix: format!("{:08x}", rand::rng().random::<u32>()),
    };
    plan.validate()?;
    if !yes {
        // A terminal or a pipe alike: no input at all reads as a wrong answer.
        let stdin = std::io::stdin();
        let terminal = stdin.is_terminal();
        confirm(service, &target_ns, &mut stdin.lock(), terminal, io)?;
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &target_ns);
    let jobs: Api<Job> = Api::namespaced(client.clone(), &target_ns);
    let mut mirror = mirror_secret(&plan, &source)?;
    // Server-side apply, twice: once to create it, once more with the Job as its owner
    // (the Job's uid exists only once the Job does). The Job cannot start before the
    // mirror it reads exists.
    secrets
        .patch(&plan.mirror_name(), &apply_params(), &Patch::Apply(&mirror))
        .await?;
    let job = match jobs.create(&post_params(), &copy_job(&plan)).await {
        Ok(job) => job,
        Err(e) => {
            // Without its Job nothing would ever collect the mirror.
            let _ = secrets
                .delete(&plan.mirror_name(), &DeleteParams::default())
                .await;
            return Err(e.into());
        }
    };
    mirror.metadata.owner_references = owned_by(&job).map(|o| vec![o]);
    secrets
        .patch(&plan.mirror_name(), &apply_params(), &Patch::Apply(&mirror))
        .await?;
    writeln!(
        io.out,
        "copy-data Job {} started in {target_ns} ({} -> {target_ns}); no retries, removed with its credentials mirror 1 hour after it finishes",
        plan.job_name(),
        plan.source_namespace
    )
    .map_err(io_error)?;
    writeln!(
        io.out,
        "follow it: kubectl -n {target_ns} logs -f job/{}",
        plan.job_name()
    )
    .map_err(io_error)
}
