//! `kip service add <type> --name N`: validate, render, apply; print the connection details
//! once (the password is shown here and by `kip service info --show-password`, nowhere else).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::ResourceExt;
use kube::api::{Api, Patch};

use super::{AddArgs, Scope, apply_params};
use crate::cli::{Io, OutputFormat, io_error};
use crate::facts::credentials_secret;
use crate::services::render::{self, ServiceObjects, host};
use crate::services::{
    Credentials, SERVICE_LABEL, ServiceKind, ServiceSpec, generate_password, parse_kind, profile,
};
use crate::{Error, Result};

/// The spec the flags ask for, validated (no cluster needed).
pub(super) fn spec(scope: &Scope, a: &AddArgs) -> Result<ServiceSpec> {
    let kind = parse_kind(&a.kind)?;
    let mut spec = ServiceSpec::new(&a.name, kind, &scope.project, scope.environment.as_deref());
    if let Some(s) = &a.storage {
        spec.storage = s.clone();
    }
    spec.storage_class = a.storage_class.clone();
    let r = &mut spec.resources;
    for (flag, target) in [
        (&a.cpu_request, &mut r.cpu_request),
        (&a.cpu_limit, &mut r.cpu_limit),
        (&a.memory_request, &mut r.memory_request),
        (&a.memory_limit, &mut r.memory_limit),
    ] {
        if let Some(v) = flag {
            *target = v.clone();
        }
    }
    spec.validate()?;
    Ok(spec)
}

fn objects(spec: &ServiceSpec) -> (ServiceObjects, Credentials) {
    let credentials = Credentials::new(spec.kind, generate_password());
    (render::render(spec, &credentials), credentials)
}

/// `--dry-run`: every object, with a freshly generated password in the Secret (the output can
/// be applied as is; nothing else prints it).
pub(super) fn dry_run(spec: &ServiceSpec, output: OutputFormat, io: &mut Io<'_>) -> Result<()> {
    let (objects, _) = objects(spec);
    let values = objects.to_values()?;
    let text = match output {
        OutputFormat::Yaml => {
            let mut s = String::new();
            for v in &values {
                s.push_str("---\n");
                s.push_str(&crate::yaml::to_string(v)?);
            }
            s
        }
        OutputFormat::Json => serde_json::to_string_pretty(&values)? + "\n",
    };
    writeln!(
        io.err,
        "dry run: {} service {} in {}; the Secret holds a newly generated password",
        spec.kind.as_str(),
        spec.name,
        spec.namespace()
    )
    .map_err(io_error)?;
    io.out.write_all(text.as_bytes()).map_err(io_error)
}

/// The connection details, as the page prints them.
pub(crate) fn connection_lines(
    kind: ServiceKind,
    host: &str,
    port: &str,
    credentials: &Credentials,
    password: &str,
) -> Vec<String> {
    let mut lines = vec![format!("Host: {host}"), format!("Port: {port}")];
    if kind.has_username() {
        lines.push(format!("Username: {}", credentials.username));
    }
    lines.push(format!("Password: {password}"));
    if kind.is_database() && !credentials.database.is_empty() {
        lines.push(format!("Database: {}", credentials.database));
    }
    match kind {
        ServiceKind::Minio => {
            lines.push(format!("Endpoint: http://{host}:{port}"));
            lines.push(format!(
                "Console: http://{host}:{}",
                profile::MINIO_CONSOLE_PORT
            ));
        }
        ServiceKind::Opensearch => lines.push(format!("Endpoint: https://{host}:{port}")),
        ServiceKind::Rabbitmq => {
            lines.push(format!("Virtual host: {}", credentials.database));
            lines.push(format!("Management: http://{host}:15672"));
        }
        _ => {}
    }
    lines
}

fn missing_namespace(e: kube::Error, ns: &str) -> Error {
    match e {
        kube::Error::Api(s) if s.code == 404 => Error::Invalid(format!(
            "namespace {ns} does not exist: create the project/environment first, or check --project/--environment"
        )),
        other => other.into(),
    }
}

/// Creates the service. Refuses an existing name: its password must not change under the
/// apps that use it.
pub(super) async fn add(client: &kube::Client, spec: &ServiceSpec, io: &mut Io<'_>) -> Result<()> {
    let ns = spec.namespace();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    if secrets
        .get_opt(&credentials_secret(&spec.name))
        .await?
        .is_some()
        || sets.get_opt(&spec.name).await?.is_some()
    {
        return Err(Error::Invalid(format!(
            "service {} already exists in {ns}: see `kip service info {}`, or delete it first",
            spec.name, spec.name
        )));
    }
    // The Service `<name>` is the DNS name: it must not be an app's or a function's.
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    if let Some(existing) = services.get_opt(&spec.name).await?
        && existing.labels().get(SERVICE_LABEL) != Some(&spec.name)
    {
        return Err(Error::Invalid(format!(
            "the name {} is taken in {ns} by another Service (an app's or a function's): pick another --name",
            spec.name
        )));
    }
    let (objects, credentials) = objects(spec);
    let params = apply_params();
    // The Secret first: the pods read their credentials from it.
    secrets
        .patch(
            &credentials_secret(&spec.name),
            &params,
            &Patch::Apply(&objects.secret),
        )
        .await
        .map_err(|e| missing_namespace(e, &ns))?;
    if let Some(cm) = &objects.config_map {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        api.patch(
            &render::init_config_map_name(&spec.name),
            &params,
            &Patch::Apply(cm),
        )
        .await?;
    }
    services
        .patch(&spec.name, &params, &Patch::Apply(&objects.service))
        .await?;
    sets.patch(&spec.name, &params, &Patch::Apply(&objects.stateful_set))
        .await?;
    writeln!(
        io.out,
        "service {} ({}) added in {ns}: StatefulSet, Service, Secret {}, {} volume",
        spec.name,
        spec.kind.as_str(),
        credentials_secret(&spec.name),
        spec.storage
    )
    .map_err(io_error)?;
    let lines = connection_lines(
        spec.kind,
        &host(&spec.name, &ns),
        &spec.kind.default_port().to_string(),
        &credentials,
        &credentials.password,
    );
    for line in lines {
        writeln!(io.out, "{line}").map_err(io_error)?;
    }
    writeln!(
        io.out,
        "Retrieve them later: kip service info {}{}",
        spec.name,
        scope_flags(&spec.project, spec.environment.as_deref())
    )
    .map_err(io_error)
}

/// ` --project P --environment E` as the user would type them (empty for the defaults).
pub(crate) fn scope_flags(project: &str, environment: Option<&str>) -> String {
    let mut s = String::new();
    if project != "default" {
        s.push_str(&format!(" --project {project}"));
    }
    if let Some(e) = environment {
        s.push_str(&format!(" --environment {e}"));
    }
    s
}
