//! `kip function ...`: the command line of the seed's CLI reference (CONTRACT section 5);
//! `kip service`, `kip volume` and `kip tunnel` (the Stateful Services page) are in [`service`].
//!
//! Parsing and spec building are pure (tested with `try_parse_from`); commands that need the
//! cluster take a `kube::Client`, so the tests drive them against a fake API server.
//! `create --dry-run -o yaml` renders every object offline, with no cluster at all.

mod bindings;
mod create;
mod manage;
pub mod service;
mod values;

use std::io::Write;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::crd::TriggerType;
use crate::{Error, Result};

pub use create::{build_spec, dependency, volume};

/// `kip`.
#[derive(Debug, Parser)]
#[command(
    name = "kip",
    version,
    about = "Kipper command line (functions, services, volumes)"
)]
pub struct Kip {
    /// What to manage.
    #[command(subcommand)]
    pub command: KipCommand,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum KipCommand {
    /// Serverless functions.
    #[command(alias = "fn")]
    Function(FunctionArgs),
    /// Stateful services (databases, caches, queues, object storage).
    Service(service::ServiceArgs),
    /// Volumes that functions mount with --volume name:/path.
    Volume(service::VolumeArgs),
    /// Connect from this machine to a service through the API server (port-forward).
    Tunnel(service::TunnelArgs),
}

/// `kip function` and its scope flags.
#[derive(Debug, Args)]
pub struct FunctionArgs {
    /// Project (namespace prefix).
    #[arg(long, env = "KIP_PROJECT", default_value = "default", global = true)]
    pub project: String,
    /// Environment (e.g. test, acc, prod); the namespace is <project>-<environment>.
    #[arg(long, env = "KIP_ENVIRONMENT", global = true)]
    pub environment: Option<String>,
    /// The command.
    #[command(subcommand)]
    pub command: FunctionCommand,
}

impl FunctionArgs {
    /// The namespace of the project and environment.
    pub fn namespace(&self) -> String {
        match self.environment.as_deref().filter(|e| !e.is_empty()) {
            Some(env) => format!("{}-{env}", self.project),
            None => self.project.clone(),
        }
    }
}

/// Output formats of `--dry-run`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Multi-document YAML.
    #[default]
    Yaml,
    /// A JSON array.
    Json,
}

/// Trigger names of `--trigger`: the Function trigger types the CLI creates. Spelled by
/// [`TriggerType::as_str`] (the contract's names), not by clap from the variant names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerArg {
    /// HTTP requests (default).
    Http,
    /// A schedule.
    Cron,
    /// A PostgreSQL query.
    Postgres,
    /// A MySQL query.
    Mysql,
    /// A Redis list.
    Redis,
    /// A MinIO bucket.
    Minio,
}

impl TriggerArg {
    /// The trigger type this flag value creates.
    pub fn trigger_type(self) -> TriggerType {
        match self {
            TriggerArg::Http => TriggerType::Http,
            TriggerArg::Cron => TriggerType::Cron,
            TriggerArg::Postgres => TriggerType::Postgres,
            TriggerArg::Mysql => TriggerType::Mysql,
            TriggerArg::Redis => TriggerType::Redis,
            TriggerArg::Minio => TriggerType::Minio,
        }
    }
}

impl ValueEnum for TriggerArg {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            TriggerArg::Http,
            TriggerArg::Cron,
            TriggerArg::Postgres,
            TriggerArg::Mysql,
            TriggerArg::Redis,
            TriggerArg::Minio,
        ]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let help = match self {
            TriggerArg::Http => "HTTP requests (default)",
            TriggerArg::Cron => "A schedule",
            TriggerArg::Postgres => "A PostgreSQL query",
            TriggerArg::Mysql => "A MySQL query",
            TriggerArg::Redis => "A Redis list",
            TriggerArg::Minio => "A MinIO bucket",
        };
        Some(clap::builder::PossibleValue::new(self.trigger_type().as_str()).help(help))
    }
}

/// Runtimes of `--runtime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuntimeArg {
    /// Node.js.
    Node,
    /// Python.
    Python,
}

/// `kip function create`.
#[derive(Debug, Args, Default, Clone)]
pub struct CreateArgs {
    /// Function name.
    pub name: String,
    /// Container image (or use --code-file for inline code).
    #[arg(long, env = "KIP_IMAGE", conflicts_with = "code_file")]
    pub image: Option<String>,
    /// Path to a local source file with the handler code.
    #[arg(long, env = "KIP_CODE_FILE")]
    pub code_file: Option<std::path::PathBuf>,
    /// node or python (required with --code-file).
    #[arg(long, env = "KIP_RUNTIME")]
    pub runtime: Option<RuntimeArg>,
    /// http (default), cron, postgres, mysql, redis, minio.
    #[arg(long, env = "KIP_TRIGGER")]
    pub trigger: Option<TriggerArg>,
    /// Cron expression for --trigger cron (UTC), e.g. "0 2 * * *".
    #[arg(long, env = "KIP_SCHEDULE")]
    pub schedule: Option<String>,
    /// Service name for event triggers.
    #[arg(long, env = "KIP_SOURCE")]
    pub source: Option<String>,
    /// SQL query for postgres / mysql triggers.
    #[arg(long, env = "KIP_QUERY")]
    pub query: Option<String>,
    /// SQL run after each row is processed ({{column}} placeholders).
    #[arg(long, env = "KIP_MARK_DONE")]
    pub mark_done: Option<String>,
    /// Redis list name for redis triggers.
    #[arg(long, env = "KIP_LIST")]
    pub list: Option<String>,
    /// MinIO bucket for minio triggers.
    #[arg(long, env = "KIP_BUCKET")]
    pub bucket: Option<String>,
    /// Port the function listens on (default 8080).
    #[arg(long, env = "KIP_PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Seconds idle before scale-to-zero (default 300).
    #[arg(long, env = "KIP_IDLE_TIMEOUT")]
    pub idle_timeout: Option<u32>,
    /// --image only: path of the image's health endpoint (GET, 2xx when it can serve), used by
    /// the probes and kipper-poll; without it they check that the port accepts connections.
    /// An empty value removes it.
    #[arg(long, env = "KIP_HEALTH_PATH")]
    pub health_path: Option<String>,
    /// Inline dependency name@version (repeatable).
    #[arg(long = "dependency", env = "KIP_DEPENDENCY", value_delimiter = ',', value_parser = create::dependency)]
    pub dependencies: Vec<(String, String)>,
    /// Mount a Kipper volume name:/path (repeatable).
    #[arg(long = "volume", env = "KIP_VOLUME", value_delimiter = ',', value_parser = create::volume)]
    pub volumes: Vec<(String, String)>,
    /// Render every object offline instead of creating anything.
    #[arg(long, env = "KIP_DRY_RUN")]
    pub dry_run: bool,
    /// Public domain of function URLs (https://fn-<name>-<domain>), as the controller's
    /// --cluster-domain: used by --dry-run and to print the URL after create.
    #[arg(long, env = "KIPPER_CLUSTER_DOMAIN")]
    pub cluster_domain: Option<String>,
    /// Output format of --dry-run.
    #[arg(
        short = 'o',
        long,
        env = "KIP_OUTPUT",
        value_enum,
        default_value = "yaml"
    )]
    pub output: OutputFormat,
}

/// `kip function ...` commands.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per invocation; boxing buys nothing
pub enum FunctionCommand {
    /// Create a function, or update the fields the flags name on an existing one.
    Create(Box<CreateArgs>),
    /// List functions.
    List,
    /// Show recent logs of a function's pods.
    Logs {
        /// Function name.
        name: String,
        /// How far back, in seconds.
        #[arg(long, env = "KIP_SINCE", default_value_t = 3600)]
        since: i64,
    },
    /// Delete functions.
    Delete {
        /// Function names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Bind a service: inject its connection details as prefixed variables.
    Bind {
        /// Function name.
        name: String,
        /// Service name.
        service: String,
        /// Variable prefix (default by type: DB_, REDIS_, S3_, ...).
        #[arg(long, env = "KIP_PREFIX")]
        prefix: Option<String>,
        /// Database name (default <service>_<function>_<environment>).
        #[arg(long, env = "KIP_DATABASE")]
        database: Option<String>,
    },
    /// Remove a binding.
    Unbind {
        /// Function name.
        name: String,
        /// Service name.
        service: String,
    },
    /// Plain environment variables.
    Env {
        /// set | list | delete.
        #[command(subcommand)]
        command: EnvCommand,
    },
    /// Write-only secrets (`<fn>-secrets`).
    Secret {
        /// set | list | delete.
        #[command(subcommand)]
        command: SecretCommand,
    },
    /// Test run: run the function once now, as its schedule would (KIPPER_TRIGGER=test).
    #[command(alias = "test-run")]
    Test {
        /// Function name.
        name: String,
    },
}

/// `kip function env ...`.
#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Set KEY=value pairs.
    Set {
        /// Function name.
        name: String,
        /// KEY=value (one or more).
        #[arg(required = true, value_parser = values::key_value)]
        pairs: Vec<(String, String)>,
    },
    /// List variables.
    List {
        /// Function name.
        name: String,
    },
    /// Delete variables.
    Delete {
        /// Function name.
        name: String,
        /// Keys.
        #[arg(required = true)]
        keys: Vec<String>,
    },
}

/// `kip function secret ...`.
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Set a secret; the value is prompted without echo, or read from standard input.
    Set {
        /// Function name.
        name: String,
        /// Secret key.
        key: String,
    },
    /// List secret keys (never values).
    List {
        /// Function name.
        name: String,
    },
    /// Delete secrets.
    Delete {
        /// Function name.
        name: String,
        /// Keys.
        #[arg(required = true)]
        keys: Vec<String>,
    },
}

/// Where a command writes and how it asks for a secret value.
pub struct Io<'a> {
    /// Results.
    pub out: &'a mut dyn Write,
    /// Notes (schedule preview, hints): kept off stdout so `-o yaml` stays clean.
    pub err: &'a mut dyn Write,
    /// Reads a secret value for the key it is given.
    pub read_secret: &'a mut dyn FnMut(&str) -> Result<String>,
}

/// The field manager of every write `kip` makes.
pub const FIELD_MANAGER: &str = "kip";

/// Create/replace parameters naming `kip` as the field manager.
pub(crate) fn post_params() -> kube::api::PostParams {
    kube::api::PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..Default::default()
    }
}

/// Patch parameters naming `kip` as the field manager.
pub(crate) fn patch_params() -> kube::api::PatchParams {
    kube::api::PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..Default::default()
    }
}

/// Writes `rows` (the first is the header) as columns two spaces apart, each as wide as its
/// widest cell, as `kubectl get` does.
pub(crate) fn write_table<const N: usize>(out: &mut dyn Write, rows: &[[String; N]]) -> Result<()> {
    let widths: Vec<usize> = (0..N)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "{}", cells.join("  ").trim_end()).map_err(io_error)?;
    }
    Ok(())
}

pub(crate) fn io_error(e: std::io::Error) -> Error {
    Error::Io {
        context: "write output".into(),
        source: e,
    }
}

/// Runs a command that needs no cluster (`create --dry-run`); `None` when it does need one.
pub fn run_offline(args: &FunctionArgs, io: &mut Io<'_>) -> Option<Result<()>> {
    match &args.command {
        FunctionCommand::Create(c) if c.dry_run => Some(create::dry_run(args, c, io)),
        _ => None,
    }
}

/// Runs a command against the cluster.
pub async fn run(args: &FunctionArgs, client: kube::Client, io: &mut Io<'_>) -> Result<()> {
    let ns = args.namespace();
    match &args.command {
        FunctionCommand::Create(c) if c.dry_run => create::dry_run(args, c, io),
        FunctionCommand::Create(c) => create::create(args, c, &client, io).await,
        FunctionCommand::List => manage::list(&client, &ns, io).await,
        FunctionCommand::Logs { name, since } => manage::logs(&client, &ns, name, *since, io).await,
        FunctionCommand::Delete { names } => manage::delete(&client, &ns, names, io).await,
        FunctionCommand::Test { name } => manage::test_run(&client, &ns, name, io).await,
        FunctionCommand::Bind {
            name,
            service,
            prefix,
            database,
        } => {
            bindings::bind(
                &client,
                args,
                name,
                service,
                prefix.as_deref(),
                database.as_deref(),
                io,
            )
            .await
        }
        FunctionCommand::Unbind { name, service } => {
            bindings::unbind(&client, &ns, name, service, io).await
        }
        FunctionCommand::Env { command } => values::env(&client, &ns, command, io).await,
        FunctionCommand::Secret { command } => values::secret(&client, &ns, command, io).await,
    }
}
