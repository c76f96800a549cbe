//! `kip volume create|list|delete`: the PVC `shared-<name>` behind `--volume name:/path`.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch};

use super::{AccessMode, Scope, VolumeCommand, apply_params};
use crate::cli::{Io, OutputFormat, io_error};
use crate::crd::Function;
use crate::services::validate_dns_label;
use crate::services::volume::{MAX_NAME, VOLUME_LABEL, VolumeSpec, claim, claim_name};
use crate::{Error, Result};

fn spec(
    scope: &Scope,
    command: &VolumeCommand,
) -> Option<Result<(VolumeSpec, bool, OutputFormat)>> {
    let VolumeCommand::Create {
        name,
        size,
        access_mode,
        storage_class,
        dry_run,
        output,
    } = command
    else {
        return None;
    };
    let spec = VolumeSpec {
        name: name.clone(),
        project: scope.project.clone(),
        environment: scope.environment.clone().filter(|e| !e.is_empty()),
        size: size.clone(),
        access_mode: match access_mode {
            AccessMode::Rwo => "ReadWriteOnce",
            AccessMode::Rwx => "ReadWriteMany",
        }
        .to_owned(),
        storage_class: storage_class.clone(),
    };
    Some(spec.validate().map(|()| (spec, *dry_run, *output)))
}

/// Validation and `--dry-run`, with no cluster.
pub(super) fn offline(
    scope: &Scope,
    command: &VolumeCommand,
    io: &mut Io<'_>,
) -> Option<Result<()>> {
    match command {
        VolumeCommand::Create { .. } => match spec(scope, command)? {
            Err(e) => Some(Err(e)),
            Ok((spec, true, output)) => Some(print(&claim(&spec), output, io)),
            Ok(_) => None,
        },
        VolumeCommand::Delete { names, .. } => names
            .iter()
            .find_map(|n| validate_dns_label("volume name", n, MAX_NAME).err())
            .map(Err),
        VolumeCommand::List => None,
    }
}

fn print(pvc: &PersistentVolumeClaim, output: OutputFormat, io: &mut Io<'_>) -> Result<()> {
    let text = match output {
        OutputFormat::Yaml => format!("---\n{}", crate::yaml::to_string(pvc)?),
        OutputFormat::Json => serde_json::to_string_pretty(&[pvc])? + "\n",
    };
    io.out.write_all(text.as_bytes()).map_err(io_error)
}

/// Functions of the namespace that mount `volume`.
async fn users(client: &kube::Client, ns: &str, volume: &str) -> Result<Vec<String>> {
    let functions: Api<Function> = Api::namespaced(client.clone(), ns);
    Ok(functions
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|f| f.spec.volumes.iter().any(|v| v.name == volume))
        .map(ResourceExt::name_any)
        .collect())
}

/// The commands that need the cluster.
pub(super) async fn online(
    client: &kube::Client,
    scope: &Scope,
    command: &VolumeCommand,
    io: &mut Io<'_>,
) -> Result<()> {
    let ns = scope.namespace();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    match command {
        VolumeCommand::Create { .. } => {
            let Some(result) = spec(scope, command) else {
                return Ok(());
            };
            let (spec, _, _) = result?;
            let name = claim_name(&spec.name);
            if claims.get_opt(&name).await?.is_some() {
                return Err(Error::Invalid(format!(
                    "volume {} already exists in {ns} (PVC {name})",
                    spec.name
                )));
            }
            claims
                .patch(&name, &apply_params(), &Patch::Apply(&claim(&spec)))
                .await
                .map_err(|e| match e {
                    kube::Error::Api(s) if s.code == 404 => Error::Invalid(format!(
                        "namespace {ns} does not exist: create the project/environment first, or check --project/--environment"
                    )),
                    other => other.into(),
                })?;
            writeln!(
                io.out,
                "volume {} created in {ns} (PVC {name}, {}, {}); mount it with --volume {}:/path",
                spec.name, spec.size, spec.access_mode, spec.name
            )
            .map_err(io_error)
        }
        VolumeCommand::List => {
            let list = claims
                .list(&ListParams::default().labels("kipper.run/resource-type=volume"))
                .await?;
            let mut rows =
                vec![["NAME", "SIZE", "ACCESS", "STATUS", "MOUNTED BY"].map(str::to_owned)];
            for c in list {
                let name = c
                    .labels()
                    .get(VOLUME_LABEL)
                    .cloned()
                    .unwrap_or_else(|| c.name_any());
                let spec = c.spec.clone().unwrap_or_default();
                let size = spec
                    .resources
                    .and_then(|r| r.requests)
                    .and_then(|r| r.get("storage").map(|q| q.0.clone()))
                    .unwrap_or_else(|| "-".into());
                let access = spec
                    .access_modes
                    .and_then(|m| m.first().cloned())
                    .unwrap_or_else(|| "-".into());
                let phase = c
                    .status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_else(|| "Pending".into());
                let users = users(client, &ns, &name).await?;
                let users = if users.is_empty() {
                    "-".to_owned()
                } else {
                    users.join(",")
                };
                rows.push([name, size, access, phase, users]);
            }
            crate::cli::write_table(io.out, &rows)?;
            Ok(())
        }
        VolumeCommand::Delete { names, force } => {
            let mut missing = Vec::new();
            for name in names {
                if claims.get_opt(&claim_name(name)).await?.is_none() {
                    missing.push(name.clone());
                    continue;
                }
                let users = users(client, &ns, name).await?;
                if !users.is_empty() && !force {
                    return Err(Error::Invalid(format!(
                        "volume {name} is mounted by {}: remove it from them first, or pass --force",
                        users.join(", ")
                    )));
                }
                match claims
                    .delete(&claim_name(name), &DeleteParams::background())
                    .await
                {
                    Ok(_) => writeln!(io.out, "volume {name} deleted").map_err(io_error)?,
                    Err(kube::Error::Api(s)) if s.code == 404 => missing.push(name.clone()),
                    Err(e) => return Err(e.into()),
                }
            }
            if missing.is_empty() {
                Ok(())
            } else {
                Err(Error::Invalid(format!(
                    "volume not found in {ns}: {}; see `kip volume list`",
                    missing.join(", ")
                )))
            }
        }
    }
}
