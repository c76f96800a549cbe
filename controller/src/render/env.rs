//! Environment variables of the pod: plain values, `secretKeyRef`s and the variables of a
//! service binding (`<PREFIX>HOST PORT USERNAME USER PASSWORD NAME`). Credentials are always
//! references to the service's Secret, never plain values.

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector};
use kipper_contract::binding::{self, ENDPOINT, HOST, NAME, PASSWORD, PORT, USER, USERNAME};

use super::{Ctx, Problem, condition};
use crate::crd::default_database_name;
use crate::facts::{ServiceFacts, ServiceKind, keys, lookup};

/// Where a database name comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Database {
    /// A known name (a binding's per-function database).
    Named(String),
    /// The service's default database, key `database` of its Secret.
    FromSecret,
}

pub(crate) fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        ..Default::default()
    }
}

/// `name` read from key `key` of Secret `secret` (required).
pub(crate) fn secret_ref(name: &str, secret: &str, key: &str) -> EnvVar {
    secret_env(name, secret, key, false)
}

fn secret_env(name: &str, secret: &str, key: &str, optional: bool) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: optional.then_some(true),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The variables of one binding: `HOST PORT USERNAME USER PASSWORD NAME` for databases
/// (`ENDPOINT` too for S3). Credentials are `secretKeyRef`s, never plain values.
pub(crate) fn binding_env(
    facts: &ServiceFacts,
    prefix: &str,
    database: Option<&Database>,
) -> Vec<EnvVar> {
    let p = |key: &str| binding::var(prefix, key);
    let mut vars = vec![
        env(&p(HOST), facts.host.clone()),
        env(&p(PORT), facts.port.to_string()),
    ];
    if facts.kind == ServiceKind::Minio {
        vars.push(env(
            &p(ENDPOINT),
            format!("http://{}:{}", facts.host, facts.port),
        ));
    }
    if facts.kind.has_username() {
        vars.push(secret_env(
            &p(USERNAME),
            &facts.secret,
            keys::USERNAME,
            false,
        ));
        vars.push(secret_env(&p(USER), &facts.secret, keys::USERNAME, false));
    }
    // Redis may run without AUTH, so its password key is optional.
    let optional = facts.kind == ServiceKind::Redis;
    vars.push(secret_env(
        &p(PASSWORD),
        &facts.secret,
        keys::PASSWORD,
        optional,
    ));
    match database {
        Some(Database::Named(name)) => vars.push(env(&p(NAME), name.clone())),
        Some(Database::FromSecret) => {
            vars.push(secret_env(&p(NAME), &facts.secret, keys::DATABASE, false));
        }
        None => {}
    }
    vars
}

/// The per-function database of the binding to `service`, if the function binds it.
pub(crate) fn bound_database(ctx: &Ctx<'_>, service: &str) -> Option<String> {
    ctx.function
        .spec
        .service_bindings
        .iter()
        .find(|b| b.name == service)
        .map(|b| {
            b.database.clone().unwrap_or_else(|| {
                default_database_name(service, &ctx.name, ctx.environment().as_deref())
            })
        })
}

/// The database an event trigger reads: the function's own database when it binds the source
/// service, else the service's default database. The sidecar and KEDA both use this one.
pub(crate) fn source_database(ctx: &Ctx<'_>, facts: &ServiceFacts) -> Option<Database> {
    facts
        .kind
        .is_database()
        .then(|| bound_database(ctx, &facts.name).map_or(Database::FromSecret, Database::Named))
}

/// Variables of every binding; unknown services become problems.
pub(crate) fn bindings_env(ctx: &Ctx<'_>, problems: &mut Vec<Problem>) -> Vec<EnvVar> {
    let mut vars = Vec::new();
    for binding in &ctx.function.spec.service_bindings {
        match lookup(ctx.services, &binding.name, &ctx.namespace) {
            Ok(facts) => {
                let prefix = binding
                    .prefix
                    .as_deref()
                    .unwrap_or(facts.kind.default_prefix());
                let database = facts.kind.is_database().then(|| {
                    Database::Named(bound_database(ctx, &binding.name).unwrap_or_default())
                });
                vars.extend(binding_env(facts, prefix, database.as_ref()));
            }
            Err(e) => problems.push(Problem {
                condition: condition::SERVICES_BOUND,
                reason: "UnknownService",
                message: format!("binding {}: {e}", binding.name),
            }),
        }
    }
    vars
}
