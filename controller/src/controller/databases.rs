//! Per-function databases of a Function's database bindings, created once per binding.
//!
//! `status.databases` records each database created (or found) as
//! `<service>/<database>@<host>:<port>`; a reconcile creates only the ones missing from it, so
//! a binding costs one connection to its server when it is added or changed, not one per
//! reconcile. A server that cannot be reached is a `DatabasesReady` False condition: the
//! function's objects are still applied and its phase is not Failed.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use tracing::info;

use super::Context;
use crate::Result;
use crate::crd::Function;
use crate::database::DatabaseServer;
use crate::facts::{ServiceCatalog, ServiceKind, keys, secret_value};
use crate::render::{Problem, condition};

/// The databases this reconcile leaves recorded, and the bindings whose database could not
/// be created.
#[derive(Debug, Default)]
pub struct Provisioned {
    /// `status.databases` after this reconcile.
    pub databases: Vec<String>,
    /// One `DatabasesReady` problem per failed binding.
    pub problems: Vec<Problem>,
}

/// The record of database `name` of `service` on `host:port`.
fn record(service: &str, name: &str, host: &str, port: u16) -> String {
    format!("{service}/{name}@{host}:{port}")
}

/// Creates the per-function databases of the Function's database bindings that
/// `status.databases` does not record yet.
pub async fn provision(
    ctx: &Context,
    namespace: &str,
    function: &Function,
    catalog: &ServiceCatalog,
) -> Result<Provisioned> {
    let recorded: Vec<String> = function
        .status
        .as_ref()
        .map(|s| s.databases.clone())
        .unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let mut out = Provisioned::default();
    for binding in &function.spec.service_bindings {
        let Some(facts) = catalog.get(&binding.name) else {
            continue; // reported by the renderer as UnknownService
        };
        if !matches!(facts.kind, ServiceKind::Postgres | ServiceKind::Mysql) {
            continue;
        }
        let name = binding.database.clone().unwrap_or_else(|| {
            crate::crd::default_database_name(
                &binding.name,
                &function.name_any(),
                function
                    .labels()
                    .get(crate::render::ENVIRONMENT_LABEL)
                    .map(String::as_str),
            )
        });
        let entry = record(&binding.name, &name, &facts.host, facts.port);
        if recorded.contains(&entry) {
            out.databases.push(entry);
            continue;
        }
        let Some(secret) = secrets.get_opt(&facts.secret).await? else {
            continue;
        };
        let server = DatabaseServer {
            kind: facts.kind,
            host: facts.host.clone(),
            port: facts.port,
            user: secret_value(&secret, keys::USERNAME).unwrap_or_default(),
            password: secret_value(&secret, keys::PASSWORD).unwrap_or_default(),
        };
        match (ctx.provision)(server, name.clone()).await {
            Ok(created) => {
                if created {
                    info!(message = "Created a per-function database.", database = %name, service = %binding.name);
                }
                out.databases.push(entry);
            }
            Err(e) => out.problems.push(Problem {
                condition: condition::DATABASES_READY,
                reason: "DatabaseNotCreated",
                message: e.to_string(),
            }),
        }
    }
    Ok(out)
}
