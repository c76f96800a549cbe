//! `kip service ...`, `kip volume ...` and `kip tunnel`: the commands of the seed's Stateful
//! Services page. Input is validated before any connection is opened (bad input fails with
//! one line); `kip service add --dry-run` and `kip volume create --dry-run` render offline.
//! Every write uses the field manager [`FIELD_MANAGER`].

mod add;
mod bind;
mod copy;
mod manage;
mod tunnel;
mod volume;

use clap::{Args, Subcommand, ValueEnum};
use kube::api::PatchParams;

use super::{Io, KipCommand, OutputFormat};
use crate::services::{self, validate_service_name};
use crate::{Error, Result};

pub use tunnel::forward;

pub use super::FIELD_MANAGER;
pub(crate) use super::post_params;

/// Server-side apply parameters with kip's field manager.
pub(crate) fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER)
}

/// `--project` / `--environment`, as on `kip function`.
#[derive(Debug, Args, Clone)]
pub struct Scope {
    /// Project (namespace prefix).
    #[arg(long, env = "KIP_PROJECT", default_value = "default", global = true)]
    pub project: String,
    /// Environment (e.g. test, acc, prod); the namespace is <project>-<environment>.
    #[arg(long, env = "KIP_ENVIRONMENT", global = true)]
    pub environment: Option<String>,
}

impl Scope {
    /// The namespace of the project and environment.
    pub fn namespace(&self) -> String {
        services::namespace(&self.project, self.environment.as_deref())
    }
}

/// `kip service`.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// Project and environment.
    #[command(flatten)]
    pub scope: Scope,
    /// The command.
    #[command(subcommand)]
    pub command: ServiceCommand,
}

/// `kip service add`.
#[derive(Debug, Args, Clone)]
pub struct AddArgs {
    /// postgres, mysql, mongodb, redis, rabbitmq, opensearch or minio.
    #[arg(value_name = "TYPE")]
    pub kind: String,
    /// Service name (a DNS label).
    #[arg(long)]
    pub name: String,
    /// Storage size (default 5Gi postgres/mysql/mongodb/opensearch, 1Gi redis/rabbitmq, 10Gi minio).
    #[arg(long, env = "KIP_STORAGE")]
    pub storage: Option<String>,
    /// StorageClass of the data volume (default: the cluster's).
    #[arg(long, env = "KIP_STORAGE_CLASS")]
    pub storage_class: Option<String>,
    /// CPU request, e.g. 250m.
    #[arg(long)]
    pub cpu_request: Option<String>,
    /// CPU limit, e.g. 1.
    #[arg(long)]
    pub cpu_limit: Option<String>,
    /// Memory request, e.g. 256Mi.
    #[arg(long)]
    pub memory_request: Option<String>,
    /// Memory limit, e.g. 1Gi.
    #[arg(long)]
    pub memory_limit: Option<String>,
    /// Print every object instead of creating anything (no cluster needed).
    #[arg(long)]
    pub dry_run: bool,
    /// Output format of --dry-run.
    #[arg(short = 'o', long, value_enum, default_value = "yaml")]
    pub output: OutputFormat,
}

/// `kip service ...` commands.
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Add a service: a StatefulSet with a volume, a Service and its credentials.
    Add(AddArgs),
    /// List services (NAME TYPE STATUS READY STORAGE).
    List,
    /// Connection details of a service.
    Info {
        /// Service name.
        name: String,
        /// Print the password too (it is masked otherwise).
        #[arg(long)]
        show_password: bool,
    },
    /// Delete a service and its data (requires --delete-data).
    Delete {
        /// Service name.
        name: String,
        /// Confirm that the volume and all its data are destroyed (irreversible).
        #[arg(long)]
        delete_data: bool,
    },
    /// Bind a service to an app or a function: inject its connection details.
    Bind {
        /// Service name.
        service: String,
        /// App (Deployment) or function name.
        target: String,
        /// Variable prefix (default by type: DB_, REDIS_, S3_, AMQP_, OPENSEARCH_).
        #[arg(long)]
        prefix: Option<String>,
        /// Database name (default: the per-app or per-function database).
        #[arg(long)]
        database: Option<String>,
    },
    /// Remove a binding from an app or a function.
    Unbind {
        /// Service name.
        service: String,
        /// App (Deployment) or function name.
        target: String,
    },
    /// Change CPU and memory requests and limits (the service's pod restarts).
    Resources {
        /// Service name.
        name: String,
        /// CPU request, e.g. 250m.
        #[arg(long)]
        cpu_request: Option<String>,
        /// CPU limit, e.g. 1.
        #[arg(long)]
        cpu_limit: Option<String>,
        /// Memory request, e.g. 256Mi.
        #[arg(long)]
        memory_request: Option<String>,
        /// Memory limit, e.g. 1Gi.
        #[arg(long)]
        memory_limit: Option<String>,
    },
    /// Copy a postgres service's data from another environment into this one (wipes the target).
    CopyData {
        /// Service name (the same in both environments).
        service: String,
        /// Environment to copy from.
        #[arg(long)]
        from_environment: String,
        /// Environment to copy into (default: --environment).
        #[arg(long)]
        to_environment: Option<String>,
        /// Do not ask to type the service name.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// `kip volume`.
#[derive(Debug, Args)]
pub struct VolumeArgs {
    /// Project and environment.
    #[command(flatten)]
    pub scope: Scope,
    /// The command.
    #[command(subcommand)]
    pub command: VolumeCommand,
}

/// Access modes of `kip volume create --access-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AccessMode {
    /// ReadWriteOnce: pods on one node (single-node clusters).
    Rwo,
    /// ReadWriteMany: pods on any node (needs a storage class that supports it).
    Rwx,
}

/// `kip volume ...` commands.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume (the PVC shared-<name> that --volume name:/path mounts).
    Create {
        /// Volume name.
        name: String,
        /// Size.
        #[arg(long, default_value = services::volume::DEFAULT_SIZE)]
        size: String,
        /// rwo (default) or rwx.
        #[arg(long, value_enum, default_value = "rwo")]
        access_mode: AccessMode,
        /// StorageClass (default: the cluster's).
        #[arg(long)]
        storage_class: Option<String>,
        /// Print the PVC instead of creating it.
        #[arg(long)]
        dry_run: bool,
        /// Output format of --dry-run.
        #[arg(short = 'o', long, value_enum, default_value = "yaml")]
        output: OutputFormat,
    },
    /// List volumes and the functions that mount them.
    List,
    /// Delete volumes (refused while a function mounts one, unless --force).
    Delete {
        /// Volume names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Delete even when functions mount it (their pods will not start).
        #[arg(long)]
        force: bool,
    },
}

/// `kip tunnel`.
#[derive(Debug, Args)]
pub struct TunnelArgs {
    /// Project and environment.
    #[command(flatten)]
    pub scope: Scope,
    /// Service name.
    pub service: String,
    /// Local port (default: the service's own port).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub local_port: Option<u16>,
}

/// Checks what needs no cluster and runs what needs none (`--dry-run`); `Some` when done.
fn offline(command: &KipCommand, io: &mut Io<'_>) -> Option<Result<()>> {
    let check = |r: Result<()>| r.err().map(Err);
    match command {
        KipCommand::Service(s) => match &s.command {
            ServiceCommand::Add(a) => match add::spec(&s.scope, a) {
                Err(e) => Some(Err(e)),
                Ok(spec) if a.dry_run => Some(add::dry_run(&spec, a.output, io)),
                Ok(_) => None,
            },
            ServiceCommand::Delete { name, delete_data } => {
                check(validate_service_name(name)).or_else(|| {
                    (!delete_data).then(|| {
                        Err(Error::Invalid(format!(
                            "refusing to delete service {name}: this destroys its volume and all its data; rerun with --delete-data to confirm"
                        )))
                    })
                })
            }
            ServiceCommand::Info { name, .. } => check(validate_service_name(name)),
            ServiceCommand::Bind {
                service, prefix, ..
            } => check(validate_service_name(service).and_then(|()| {
                prefix
                    .as_deref()
                    .map_or(Ok(()), crate::crd::validate_env_prefix)
            })),
            ServiceCommand::Unbind { service, .. } => check(validate_service_name(service)),
            ServiceCommand::CopyData {
                service,
                to_environment,
                ..
            } => check(validate_service_name(service).and_then(|()| {
                if to_environment.is_none() && s.scope.environment.is_none() {
                    Err(Error::Invalid(
                        "copy-data needs the environment to copy into: give --to-environment (or --environment)".into(),
                    ))
                } else {
                    Ok(())
                }
            })),
            ServiceCommand::Resources {
                name,
                cpu_request,
                cpu_limit,
                memory_request,
                memory_limit,
            } => check(validate_service_name(name).and_then(|()| {
                manage::resources_patch(cpu_request, cpu_limit, memory_request, memory_limit)
                    .map(|_| ())
            })),
            ServiceCommand::List => None,
        },
        KipCommand::Volume(v) => volume::offline(&v.scope, &v.command, io),
        KipCommand::Tunnel(t) => check(validate_service_name(&t.service)),
        KipCommand::Function(_) => None,
    }
}

async fn online(command: &KipCommand, client: kube::Client, io: &mut Io<'_>) -> Result<()> {
    match command {
        KipCommand::Service(s) => {
            let scope = &s.scope;
            match &s.command {
                ServiceCommand::Add(a) => add::add(&client, &add::spec(scope, a)?, io).await,
                ServiceCommand::List => manage::list(&client, &scope.namespace(), io).await,
                ServiceCommand::Info {
                    name,
                    show_password,
                } => manage::info(&client, &scope.namespace(), name, *show_password, io).await,
                ServiceCommand::Delete { name, .. } => {
                    manage::delete(&client, &scope.namespace(), name, io).await
                }
                ServiceCommand::Resources {
                    name,
                    cpu_request,
                    cpu_limit,
                    memory_request,
                    memory_limit,
                } => {
                    let patch = manage::resources_patch(
                        cpu_request,
                        cpu_limit,
                        memory_request,
                        memory_limit,
                    )?;
                    manage::resources(&client, &scope.namespace(), name, &patch, io).await
                }
                ServiceCommand::Bind {
                    service,
                    target,
                    prefix,
                    database,
                } => {
                    bind::bind(
                        &client,
                        scope,
                        service,
                        target,
                        prefix.as_deref(),
                        database.as_deref(),
                        io,
                    )
                    .await
                }
                ServiceCommand::Unbind { service, target } => {
                    bind::unbind(&client, scope, service, target, io).await
                }
                ServiceCommand::CopyData {
                    service,
                    from_environment,
                    to_environment,
                    yes,
                } => {
                    let to = to_environment
                        .as_deref()
                        .or(scope.environment.as_deref())
                        .unwrap_or_default();
                    copy::copy_data(&client, scope, service, from_environment, to, *yes, io).await
                }
            }
        }
        KipCommand::Volume(v) => volume::online(&client, &v.scope, &v.command, io).await,
        KipCommand::Tunnel(t) => tunnel::tunnel(&client, t, io).await,
        KipCommand::Function(_) => Err(Error::Internal(
            "kip function is not run by the services module",
        )),
    }
}

/// Runs `kip service`, `kip volume` or `kip tunnel`: the offline checks first, then the
/// commands that need the cluster (kubeconfig or in-cluster configuration).
pub async fn run(command: &KipCommand, io: &mut Io<'_>) -> Result<()> {
    if let Some(result) = offline(command, io) {
        return result;
    }
    let client = kube::Client::try_default().await.map_err(|e| {
        Error::Unavailable(format!(
            "cannot reach the cluster ({e}): set KUBECONFIG, or use --dry-run to render offline"
        ))
    })?;
    online(command, client, io).await
}

/// [`run`] with a given client (the tests' fake API server).
pub async fn run_with_client(
    command: &KipCommand,
    client: kube::Client,
    io: &mut Io<'_>,
) -> Result<()> {
    if let Some(result) = offline(command, io) {
        return result;
    }
    online(command, client, io).await
}

/// The one-line error of a missing service.
pub(crate) fn unknown_service(name: &str, ns: &str) -> Error {
    Error::Invalid(format!(
        "service {name:?} not found in {ns}: check --project/--environment or `kip service list`"
    ))
}
