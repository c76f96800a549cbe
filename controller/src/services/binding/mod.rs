//! Bindings of a service to an *app* (a Deployment that is not a function's): the page's
//! per-app database name, the variables injected into every container of the Deployment, the
//! record of the binding kept in an annotation (so unbind and service delete know what to
//! remove), and the Job that creates the per-app database inside the cluster.
//!
//! Functions are bound through their `spec.serviceBindings` (the controller renders the same
//! variables with [`crate::render`]); this module only handles apps.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use super::{ServiceKind, profile};
use crate::facts::{ServiceFacts, keys};
use crate::render::env::{Database, binding_env, env as plain, secret_ref};
use crate::{Error, Result};

/// Annotation on an app's Deployment: JSON map service name -> [`AppBinding`].
pub const BINDINGS_ANNOTATION: &str = "kipper.run/bindings";

/// The page's per-app database: the app name and environment, `-` replaced by `_`
/// (`domain-service` + `test` -> `domain_service_test`; no environment -> the app name).
pub fn app_database_name(app: &str, environment: Option<&str>) -> String {
    let mut name = app.to_owned();
    if let Some(env) = environment.filter(|e| !e.is_empty()) {
        name.push('_');
        name.push_str(env);
    }
    name.replace('-', "_")
}

/// What one binding injected into an app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppBinding {
    /// Variable prefix.
    pub prefix: String,
    /// Per-app database (database services only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

/// The bindings recorded on a Deployment.
pub fn recorded(deployment: &Deployment) -> Result<BTreeMap<String, AppBinding>> {
    let Some(text) = deployment
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(BINDINGS_ANNOTATION))
    else {
        return Ok(BTreeMap::new());
    };
    serde_json::from_str(text).map_err(|e| Error::MalformedObject {
        object: format!("annotation {BINDINGS_ANNOTATION} of the app"),
        problem: format!("is not valid JSON ({e}): fix or remove it"),
    })
}

fn record(deployment: &mut Deployment, bindings: &BTreeMap<String, AppBinding>) -> Result<()> {
    let annotations = deployment.metadata.annotations.get_or_insert_default();
    if bindings.is_empty() {
        annotations.remove(BINDINGS_ANNOTATION);
    } else {
        annotations.insert(
            BINDINGS_ANNOTATION.to_owned(),
            serde_json::to_string(bindings)?,
        );
    }
    Ok(())
}

/// The variables a binding of `facts` with `binding` injects (credentials by `secretKeyRef`).
pub fn binding_vars(facts: &ServiceFacts, binding: &AppBinding) -> Vec<EnvVar> {
    let database = binding.database.clone().map(Database::Named);
    binding_env(facts, &binding.prefix, database.as_ref())
}

fn containers(deployment: &mut Deployment) -> Result<&mut Vec<Container>> {
    deployment
        .spec
        .template
        .spec
        .as_mut()
        .map(|p| &mut p.containers)
        .ok_or_else(|| Error::MalformedObject {
            object: "the app's Deployment".into(),
            problem: "has no pod template".into(),
        })
}

/// Injects the variables of `facts` into every container of the app (replacing those of an
/// earlier binding of the same service) and records the binding. The pod template changes,
/// so the app restarts, as the page says it does.
pub fn bind_app(
    deployment: &mut Deployment,
    facts: &ServiceFacts,
    binding: AppBinding,
) -> Result<()> {
    let mut bindings = recorded(deployment)?;
    let old = bindings.get(&facts.name).cloned();
    let vars = binding_vars(facts, &binding);
    let mut remove: Vec<String> = vars.iter().map(|v| v.name.clone()).collect();
    if let Some(old) = &old {
        remove.extend(binding_vars(facts, old).into_iter().map(|v| v.name));
    }
    // Two services must not write the same variables: the second would silently win.
    for (other, b) in &bindings {
        if other != &facts.name && b.prefix == binding.prefix {
            return Err(Error::Invalid(format!(
                "{other} is already bound with prefix {}: bind {} with another --prefix",
                b.prefix, facts.name
            )));
        }
    }
    for c in containers(deployment)? {
        let env = c.env.get_or_insert_default();
        env.retain(|v| !remove.contains(&v.name));
        env.extend(vars.iter().cloned());
    }
    bindings.insert(facts.name.clone(), binding);
    record(deployment, &bindings)
}

/// Removes the variables of `service`'s binding from every container and forgets it.
/// Returns false when the app had no such binding. The variables are found by name (the
/// record's prefix and the type's keys), so unbinding needs no service facts: it works after
/// the service itself is gone.
pub fn unbind_app(deployment: &mut Deployment, service: &str) -> Result<bool> {
    let mut bindings = recorded(deployment)?;
    let Some(binding) = bindings.remove(service) else {
        return Ok(false);
    };
    const KEYS: [&str; 7] = [
        "HOST", "PORT", "ENDPOINT", "USERNAME", "USER", "PASSWORD", "NAME",
    ];
    let names: Vec<String> = KEYS
        .iter()
        .map(|k| format!("{}{k}", binding.prefix))
        .collect();
    for c in containers(deployment)? {
        if let Some(env) = c.env.as_mut() {
            env.retain(|v| !names.contains(&v.name));
        }
    }
    record(deployment, &bindings)?;
    Ok(true)
}

/// The idempotent create of a per-app database, as the Job runs it: PostgreSQL through
/// `\gexec` with the name as a psql variable (quoted by `quote_ident`/`:'name'`, never spliced).
pub const POSTGRES_CREATE_DATABASE: &str = r#"printf '%s\n' "SELECT format('CREATE DATABASE %I', :'name') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'name') \gexec" | psql --set ON_ERROR_STOP=1 --no-psqlrc -q -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USERNAME" -d postgres -v name="$DB_NAME""#;

/// MySQL's: the name is validated (`[a-z_][a-z0-9_]*`) before it reaches the Job.
pub const MYSQL_CREATE_DATABASE: &str = r#"mysql -h "$DB_HOST" -P "$DB_PORT" -u "$DB_USERNAME" -e "CREATE DATABASE IF NOT EXISTS \`$DB_NAME\`""#;

/// Seconds a finished create-database Job is kept.
pub const CREATE_DATABASE_TTL: i32 = 600;

/// The Job `<svc>-createdb-<suffix>` that creates `database` on the service, run with the
/// service's own image (its client matches its server). `None` for types without databases to
/// create (MongoDB creates a database on its first write). `suffix` is 8 hex digits.
pub fn create_database_job(
    facts: &ServiceFacts,
    namespace: &str,
    database: &str,
    app: &str,
    suffix: &str,
) -> Result<Option<Job>> {
    crate::crd::validate_database_name(database)?;
    let (script, password_var) = match facts.kind {
        ServiceKind::Postgres => (POSTGRES_CREATE_DATABASE, "PGPASSWORD"),
        ServiceKind::Mysql => (MYSQL_CREATE_DATABASE, "MYSQL_PWD"),
        _ => return Ok(None),
    };
    let labels = BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "kipper".to_owned(),
        ),
        (
            "kipper.run/resource-type".to_owned(),
            "create-database".to_owned(),
        ),
        ("kipper.run/database-of".to_owned(), facts.name.clone()),
        ("kipper.run/app".to_owned(), app.to_owned()),
    ]);
    let container = Container {
        name: "create-database".to_owned(),
        image: Some(profile::image(facts.kind).to_owned()),
        command: Some(vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()]),
        env: Some(vec![
            plain("DB_HOST", facts.host.clone()),
            plain("DB_PORT", facts.port.to_string()),
            secret_ref("DB_USERNAME", &facts.secret, keys::USERNAME),
            secret_ref(password_var, &facts.secret, keys::PASSWORD),
            plain("DB_NAME", database.to_owned()),
        ]),
        ..Default::default()
    };
    Ok(Some(Job {
        metadata: ObjectMeta {
            name: Some(format!("{}-createdb-{suffix}", facts.name)),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels.clone()),
            ..Default::default()
        },
        spec: Some(JobSpec {
            // The server may still be starting right after `kip service add`: a few retries.
            backoff_limit: Some(4),
            ttl_seconds_after_finished: Some(CREATE_DATABASE_TTL),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    restart_policy: Some("Never".to_owned()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
