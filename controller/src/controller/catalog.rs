//! The services a Function reads from or binds: their facts, from their credentials Secrets.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;

use crate::Result;
use crate::crd::Function;
use crate::facts::{ServiceCatalog, ServiceFacts, credentials_secret};
use crate::render::{Problem, condition};

/// The services a Function names (bindings and trigger sources).
pub fn service_names(function: &Function) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = function
        .spec
        .service_bindings
        .iter()
        .map(|b| b.name.clone())
        .collect();
    for t in function.spec.effective_triggers() {
        if let Some(source) = t.get("source") {
            names.insert(source.to_owned());
        }
    }
    names
}

/// What the cluster says about a Function's services.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Facts of every service whose credentials Secret exists and is usable.
    pub services: ServiceCatalog,
    /// Secrets that exist but cannot be used (unknown type label, bad `port`).
    pub problems: Vec<Problem>,
}

/// Reads the facts of every service the Function binds or reads from. Absent services are
/// left out (the renderer reports them as UnknownService); a Secret that cannot be used is a
/// problem naming the Secret and the key at fault.
pub async fn service_catalog(
    client: &Client,
    namespace: &str,
    function: &Function,
) -> Result<Catalog> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut catalog = Catalog::default();
    for name in service_names(function) {
        let secret_name = credentials_secret(&name);
        let Some(secret) = secrets.get_opt(&secret_name).await? else {
            continue;
        };
        match ServiceFacts::from_secret(&name, namespace, &secret) {
            Ok(Some(facts)) => {
                catalog.services.insert(name, facts);
            }
            Ok(None) => catalog.problems.push(Problem {
                condition: condition::SERVICES_BOUND,
                reason: "UnknownServiceType",
                message: format!(
                    "Secret {secret_name} has no known {} label: recreate the service with `kip service add`",
                    crate::facts::SERVICE_TYPE_LABEL
                ),
            }),
            Err(e) => catalog.problems.push(Problem {
                condition: condition::SERVICES_BOUND,
                reason: "BadCredentialsSecret",
                message: e.to_string(),
            }),
        }
    }
    Ok(catalog)
}
