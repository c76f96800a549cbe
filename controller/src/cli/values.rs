//! `kip function env ...` and `kip function secret ...`. Secret values are write-only: read
//! from a no-echo prompt or standard input, never printed back.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use kube::api::{Api, Patch};

use super::{EnvCommand, Io, SecretCommand, io_error};
use crate::crd::{Function, validate_env_name};
use crate::render::pod::secrets_name;
use crate::{Error, Result};

/// Annotation of `<fn>-secrets` listing the keys whose value has been replaced (never values).
const ROTATED_ANNOTATION: &str = "kipper.run/rotated-keys";

fn rotated_keys(secret: &Secret) -> std::collections::BTreeSet<String> {
    secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ROTATED_ANNOTATION))
        .map(|v| {
            v.split(',')
                .filter(|k| !k.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Parses `KEY=value`.
pub fn key_value(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=value"))?;
    validate_env_name("env set", k).map_err(|e| e.to_string())?;
    Ok((k.to_owned(), v.to_owned()))
}

fn not_found(ns: &str, name: &str) -> Error {
    Error::Invalid(format!(
        "function {name:?} not found in {ns}: check --project/--environment or `kip function list`"
    ))
}

/// `env set|list|delete`: merge patches on `spec.env`, so concurrent edits of other keys stay.
pub(crate) async fn env(
    client: &kube::Client,
    ns: &str,
    cmd: &EnvCommand,
    io: &mut Io<'_>,
) -> Result<()> {
    let api: Api<Function> = Api::namespaced(client.clone(), ns);
    let (name, patch) = match cmd {
        EnvCommand::List { name } => {
            let f = api
                .get_opt(name)
                .await?
                .ok_or_else(|| not_found(ns, name))?;
            for (k, v) in &f.spec.env {
                writeln!(io.out, "{k}={v}").map_err(io_error)?;
            }
            return Ok(());
        }
        EnvCommand::Set { name, pairs } => {
            let reserved = pairs
                .iter()
                .find(|(k, _)| k == "PORT" || k.starts_with("KIPPER_"));
            if let Some((k, _)) = reserved {
                return Err(Error::Invalid(format!(
                    "{k} is set by Kipper: use --port for PORT; KIPPER_* names are reserved"
                )));
            }
            let env: BTreeMap<&str, &str> = pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            (name, serde_json::json!({"spec": {"env": env}}))
        }
        EnvCommand::Delete { name, keys } => {
            let f = api
                .get_opt(name)
                .await?
                .ok_or_else(|| not_found(ns, name))?;
            if let Some(missing) = keys.iter().find(|k| !f.spec.env.contains_key(*k)) {
                return Err(Error::Invalid(format!(
                    "{missing} is not set on {name}: see `kip function env list {name}`"
                )));
            }
            let env: BTreeMap<&str, Option<&str>> =
                keys.iter().map(|k| (k.as_str(), None)).collect();
            (name, serde_json::json!({"spec": {"env": env}}))
        }
    };
    if api.get_opt(name).await?.is_none() {
        return Err(not_found(ns, name));
    }
    api.patch(name, &super::patch_params(), &Patch::Merge(&patch))
        .await?;
    writeln!(io.out, "env of {name} updated").map_err(io_error)
}

/// `secret set|list|delete` on `<fn>-secrets` (owned by the Function, so deleted with it).
pub(crate) async fn secret(
    client: &kube::Client,
    ns: &str,
    cmd: &SecretCommand,
    io: &mut Io<'_>,
) -> Result<()> {
    let functions: Api<Function> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    match cmd {
        SecretCommand::List { name } => {
            let s = secrets.get_opt(&secrets_name(name)).await?;
            if s.is_none() && functions.get_opt(name).await?.is_none() {
                return Err(not_found(ns, name));
            }
            let rotated = s.as_ref().map(rotated_keys).unwrap_or_default();
            for key in s.and_then(|s| s.data).unwrap_or_default().keys() {
                // Like the console's has_previous: say when a value has been replaced.
                let note = if rotated.contains(key) {
                    "  (rotated)"
                } else {
                    ""
                };
                writeln!(io.out, "{key}{note}").map_err(io_error)?;
            }
            Ok(())
        }
        SecretCommand::Set { name, key } => {
            validate_env_name("secret set", key)?;
            let f = functions
                .get_opt(name)
                .await?
                .ok_or_else(|| not_found(ns, name))?;
            let value = (io.read_secret)(key)?;
            if value.is_empty() {
                return Err(Error::Invalid(format!(
                    "the value of {key} is empty: type it at the prompt or pipe it on standard input"
                )));
            }
            let data = BTreeMap::from([(key.clone(), ByteString(value.into_bytes()))]);
            match secrets.get_opt(&secrets_name(name)).await? {
                Some(existing) => {
                    let mut rotated = rotated_keys(&existing);
                    let replaced = existing.data.as_ref().is_some_and(|d| d.contains_key(key));
                    if replaced {
                        rotated.insert(key.clone());
                    }
                    let rotated: Vec<&str> = rotated.iter().map(String::as_str).collect();
                    let patch = serde_json::json!({
                        "metadata": {"annotations": {ROTATED_ANNOTATION: rotated.join(",")}},
                        "data": data,
                    });
                    secrets
                        .patch(
                            &secrets_name(name),
                            &super::patch_params(),
                            &Patch::Merge(&patch),
                        )
                        .await?;
                }
                None => {
                    let mut s = Secret {
                        data: Some(data),
                        ..Default::default()
                    };
                    s.metadata.name = Some(secrets_name(name));
                    s.metadata.namespace = Some(ns.to_owned());
                    s.metadata.labels = Some(BTreeMap::from([
                        ("app".to_owned(), name.clone()),
                        (
                            "app.kubernetes.io/managed-by".to_owned(),
                            "kipper".to_owned(),
                        ),
                        ("kipper.run/resource-type".to_owned(), "function".to_owned()),
                    ]));
                    s.metadata.owner_references = f.controller_owner_ref(&()).map(|o| vec![o]);
                    secrets.create(&super::post_params(), &s).await?;
                }
            }
            writeln!(io.out, "secret {key} set on {name}").map_err(io_error)
        }
        SecretCommand::Delete { name, keys } => {
            let s = secrets
                .get_opt(&secrets_name(name))
                .await?
                .ok_or_else(|| Error::Invalid(format!("{name} has no secrets")))?;
            let data = s.data.unwrap_or_default();
            if let Some(missing) = keys.iter().find(|k| !data.contains_key(*k)) {
                return Err(Error::Invalid(format!(
                    "secret {missing} is not set on {name}: see `kip function secret list {name}`"
                )));
            }
            let nulls: BTreeMap<&str, Option<&str>> =
                keys.iter().map(|k| (k.as_str(), None)).collect();
            let patch = serde_json::json!({ "data": nulls });
            secrets
                .patch(
                    &secrets_name(name),
                    &super::patch_params(),
                    &Patch::Merge(&patch),
                )
                .await?;
            writeln!(io.out, "secrets of {name} updated").map_err(io_error)
        }
    }
}
