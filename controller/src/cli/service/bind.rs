//! `kip service bind <service> <target>` and `unbind`. A target that is a Function is bound
//! exactly as `kip function bind <function> <service>` binds it (the same code); any other
//! target is an app, a Deployment, whose containers get the variables and whose per-app
//! database is created by a Job inside the cluster.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::Api;
use rand::Rng;

use super::manage::service_secret;
use super::{Scope, post_params};
use crate::cli::{FunctionArgs, FunctionCommand, Io, bindings, io_error};
use crate::crd::{Function, validate_database_name, validate_env_prefix};
use crate::facts::ServiceFacts;
use crate::services::binding::{self, AppBinding, app_database_name};
use crate::{Error, Result};

/// What a target name refers to.
enum Target {
    Function,
    App(Box<Deployment>),
}

async fn target(client: &kube::Client, ns: &str, name: &str) -> Result<Target> {
    let functions: Api<Function> = Api::namespaced(client.clone(), ns);
    if functions.get_opt(name).await?.is_some() {
        return Ok(Target::Function);
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    match deployments.get_opt(name).await? {
        // A function's Deployment belongs to the controller, which would undo any edit.
        Some(d)
            if d.labels()
                .get("kipper.run/resource-type")
                .map(String::as_str)
                == Some("function") =>
        {
            Err(Error::Invalid(format!(
                "{name} is a function's Deployment: bind the function itself (its Function resource is missing in {ns})"
            )))
        }
        Some(d) => Ok(Target::App(Box::new(d))),
        None => Err(Error::Invalid(format!(
            "no app or function named {name:?} in {ns}: check --project/--environment, `kip function list`"
        ))),
    }
}

fn function_args(scope: &Scope) -> FunctionArgs {
    FunctionArgs {
        project: scope.project.clone(),
        environment: scope.environment.clone(),
        command: FunctionCommand::List,
    }
}

/// Binds `service` to an app or a function.
pub(super) async fn bind(
    client: &kube::Client,
    scope: &Scope,
    service: &str,
    target_name: &str,
    prefix: Option<&str>,
    database: Option<&str>,
    io: &mut Io<'_>,
) -> Result<()> {
    let ns = scope.namespace();
    let (secret, kind) = service_secret(client, &ns, service).await?;
    let mut app = match target(client, &ns, target_name).await? {
        Target::Function => {
            return bindings::bind(
                client,
                &function_args(scope),
                target_name,
                service,
                prefix,
                database,
                io,
            )
            .await;
        }
        Target::App(d) => d,
    };
    if let Some(p) = prefix {
        validate_env_prefix(p)?;
    }
    let database = match (kind.is_database(), database) {
        (true, db) => {
            let db = db.map_or_else(
                || app_database_name(target_name, scope.environment.as_deref()),
                str::to_owned,
            );
            validate_database_name(&db)?;
            Some(db)
        }
        (false, None) => None,
        (false, Some(_)) => {
            return Err(Error::Invalid(format!(
                "--database applies to database services only; {service} is a {} service",
                kind.as_str()
            )));
        }
    };
    // The address the controller gives functions too: the Secret's host/port, else the
    // cluster DNS name.
    let facts = ServiceFacts::from_secret(service, &ns, &secret)?
        .unwrap_or_else(|| ServiceFacts::conventional(service, kind, &ns));
    let b = AppBinding {
        prefix: prefix.unwrap_or(kind.default_prefix()).to_owned(),
        database: database.clone(),
    };
    let names: Vec<String> = binding::binding_vars(&facts, &b)
        .into_iter()
        .map(|v| v.name)
        .collect();
    binding::bind_app(&mut app, &facts, b)?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    // Replace with the resourceVersion read: a concurrent edit fails instead of being lost.
    deployments
        .replace(target_name, &post_params(), &app)
        .await?;
    writeln!(
        io.out,
        "bound {service} ({}) to app {target_name}; it restarts to pick up the variables",
        kind.as_str()
    )
    .map_err(io_error)?;
    if let Some(db) = &database {
        let suffix = format!("{:08x}", rand::rng().random::<u32>());
        match binding::create_database_job(&facts, &ns, db, target_name, &suffix)? {
            Some(job) => {
                let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
                let job = jobs.create(&post_params(), &job).await?;
                writeln!(
                    io.out,
                    "database: {db} (created if missing by Job {})",
                    job.name_any()
                )
                .map_err(io_error)?;
            }
            None => {
                writeln!(io.out, "database: {db} (created on first write)").map_err(io_error)?
            }
        }
    }
    writeln!(io.out, "injects: {}", names.join(" ")).map_err(io_error)
}

/// Removes the binding of `service` from an app or a function (the database stays).
pub(super) async fn unbind(
    client: &kube::Client,
    scope: &Scope,
    service: &str,
    target_name: &str,
    io: &mut Io<'_>,
) -> Result<()> {
    let ns = scope.namespace();
    let mut app = match target(client, &ns, target_name).await? {
        Target::Function => {
            return bindings::unbind(client, &ns, target_name, service, io).await;
        }
        Target::App(d) => d,
    };
    if !binding::unbind_app(&mut app, service)? {
        return Err(Error::Invalid(format!(
            "{service} is not bound to app {target_name} in {ns}"
        )));
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    deployments
        .replace(target_name, &post_params(), &app)
        .await?;
    writeln!(
        io.out,
        "unbound {service} from app {target_name} (its database is kept); it restarts"
    )
    .map_err(io_error)
}
