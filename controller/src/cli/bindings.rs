//! `kip function bind` / `unbind`.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;

use super::{FunctionArgs, Io, io_error};
use crate::crd::{
    Function, ServiceBinding, default_database_name, validate_database_name, validate_env_prefix,
};
use crate::facts::{SERVICE_TYPE_LABEL, ServiceKind, credentials_secret};
use crate::{Error, Result};

/// The kind of service `name`, or an error naming `flag` when it does not exist.
pub(crate) async fn require_service(
    client: &kube::Client,
    ns: &str,
    name: &str,
    flag: &str,
) -> Result<ServiceKind> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let kind = secrets
        .get_opt(&credentials_secret(name))
        .await?
        .and_then(|s| {
            s.labels()
                .get(SERVICE_TYPE_LABEL)
                .and_then(|k| ServiceKind::parse(k))
        });
    kind.ok_or_else(|| {
        Error::Invalid(format!(
            "{flag} {name:?}: unknown service in {ns}: create it with `kip service add <type> --name {name}` or fix the name (see `kip service list`)"
        ))
    })
}

async fn get_function(api: &Api<Function>, ns: &str, name: &str) -> Result<Function> {
    api.get_opt(name).await?.ok_or_else(|| {
        Error::Invalid(format!(
            "function {name:?} not found in {ns}: check --project/--environment or `kip function list`"
        ))
    })
}

/// Adds or updates the binding of `service`.
pub(crate) async fn bind(
    client: &kube::Client,
    args: &FunctionArgs,
    name: &str,
    service: &str,
    prefix: Option<&str>,
    database: Option<&str>,
    io: &mut Io<'_>,
) -> Result<()> {
    let ns = args.namespace();
    if let Some(p) = prefix {
        validate_env_prefix(p)?;
    }
    let kind = require_service(client, &ns, service, "service").await?;
    let database = if kind.is_database() {
        let db = database.map_or_else(
            || default_database_name(service, name, args.environment.as_deref()),
            str::to_owned,
        );
        validate_database_name(&db)?;
        Some(db)
    } else if database.is_some() {
        return Err(Error::Invalid(format!(
            "--database applies to database services only; {service} is a {} service",
            kind.as_str()
        )));
    } else {
        None
    };
    let api: Api<Function> = Api::namespaced(client.clone(), &ns);
    let mut f = get_function(&api, &ns, name).await?;
    f.spec.service_bindings.retain(|b| b.name != service);
    f.spec.service_bindings.push(ServiceBinding {
        name: service.to_owned(),
        prefix: prefix.map(str::to_owned),
        database: database.clone(),
    });
    api.replace(name, &super::post_params(), &f).await?;
    let p = prefix.unwrap_or(kind.default_prefix());
    let mut vars = vec!["HOST", "PORT"];
    if kind.has_username() {
        vars.extend(["USERNAME", "USER"]);
    }
    vars.push("PASSWORD");
    if database.is_some() {
        vars.push("NAME");
    }
    let names: Vec<String> = vars.iter().map(|v| format!("{p}{v}")).collect();
    writeln!(io.out, "bound {service} ({}) to {name}", kind.as_str()).map_err(io_error)?;
    if let Some(db) = database {
        writeln!(io.out, "database: {db}").map_err(io_error)?;
    }
    writeln!(io.out, "injects: {}", names.join(" ")).map_err(io_error)
}

/// Removes the binding of `service`.
pub(crate) async fn unbind(
    client: &kube::Client,
    ns: &str,
    name: &str,
    service: &str,
    io: &mut Io<'_>,
) -> Result<()> {
    let api: Api<Function> = Api::namespaced(client.clone(), ns);
    let mut f = get_function(&api, ns, name).await?;
    let before = f.spec.service_bindings.len();
    f.spec.service_bindings.retain(|b| b.name != service);
    if f.spec.service_bindings.len() == before {
        return Err(Error::Invalid(format!(
            "{service} is not bound to {name}: see `kip function list`"
        )));
    }
    api.replace(name, &super::post_params(), &f).await?;
    writeln!(
        io.out,
        "unbound {service} from {name} (its database is kept)"
    )
    .map_err(io_error)
}
