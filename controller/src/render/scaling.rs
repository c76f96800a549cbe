//! KEDA objects of event triggers: ScaledObject `<fn>` and TriggerAuthentication
//! `<fn>-trigger-auth`.
//!
//! SQL and Redis triggers carry every field their scaler needs (host, port, database in the
//! metadata; user, password and a Secret-held database name in the TriggerAuthentication),
//! pointed at the same database as the sidecar. KEDA has no S3 scaler, so minio triggers use
//! `metrics-api` against this controller's `/pending/<namespace>/<fn>`, which counts the
//! bucket's changes not yet in kipper-poll's checkpoint: the function scales from zero.

use std::collections::BTreeMap;

use super::env::{Database, source_database};
use super::{Ctx, Object, Problem, condition};
use crate::addons::keda::{
    AuthenticationRef, ScaleTargetRef, ScaleTrigger, ScaledObject, ScaledObjectSpec,
    SecretTargetRef, TriggerAuthentication, TriggerAuthenticationSpec,
};
use crate::crd::{Trigger, TriggerType};
use crate::facts::{ServiceFacts, keys};

/// Pending events per replica before KEDA adds one.
pub(crate) const TARGET_PER_REPLICA: &str = "5";
/// Seconds between KEDA's checks of a source.
pub(crate) const POLLING_INTERVAL: i32 = 10;

/// Name of the TriggerAuthentication.
pub(crate) fn auth_name(function: &str) -> String {
    format!("{function}-trigger-auth")
}

/// The count query KEDA runs: the number of rows the function's query would return.
pub(crate) fn count_query(query: &str) -> String {
    let query = query.trim().trim_end_matches(';').trim_end();
    format!("SELECT COUNT(*) FROM ({query}) AS kipper_count")
}

fn secret_ref(parameter: &str, facts: &ServiceFacts, key: &str) -> SecretTargetRef {
    SecretTargetRef {
        parameter: parameter.to_owned(),
        name: facts.secret.clone(),
        key: key.to_owned(),
    }
}

/// ScaledObject and, for credentialed sources, TriggerAuthentication.
pub(crate) fn objects(
    ctx: &Ctx<'_>,
    trigger: &Trigger,
    problems: &mut Vec<Problem>,
) -> Vec<Object> {
    let source = trigger.get("source").unwrap_or_default();
    // serving_pod already checked the source; a miss here is reported once, by it.
    let Some(facts) = ctx.services.get(source) else {
        return Vec::new();
    };
    let host = facts.host.clone();
    let port = facts.port.to_string();
    let mut metadata = BTreeMap::new();
    let mut secrets = Vec::new();
    let scaler = match trigger.kind {
        TriggerType::Postgres | TriggerType::Mysql => {
            let postgres = trigger.kind == TriggerType::Postgres;
            metadata.insert("host".to_owned(), host);
            metadata.insert("port".to_owned(), port);
            metadata.insert(
                "query".to_owned(),
                count_query(trigger.get("query").unwrap_or_default()),
            );
            let (user_param, target_key, activation_key) = if postgres {
                metadata.insert("sslmode".to_owned(), "disable".to_owned());
                ("userName", "targetQueryValue", "activationTargetQueryValue")
            } else {
                ("username", "queryValue", "activationQueryValue")
            };
            metadata.insert(target_key.to_owned(), TARGET_PER_REPLICA.to_owned());
            metadata.insert(activation_key.to_owned(), "0".to_owned());
            match source_database(ctx, facts) {
                Some(Database::Named(db)) => {
                    metadata.insert("dbName".to_owned(), db);
                }
                _ => secrets.push(secret_ref("dbName", facts, keys::DATABASE)),
            }
            secrets.push(secret_ref(user_param, facts, keys::USERNAME));
            secrets.push(secret_ref("password", facts, keys::PASSWORD));
            if postgres { "postgresql" } else { "mysql" }
        }
        TriggerType::Redis => {
            metadata.insert("host".to_owned(), host);
            metadata.insert("port".to_owned(), port);
            metadata.insert(
                "listName".to_owned(),
                trigger.get("list").unwrap_or_default().to_owned(),
            );
            metadata.insert("listLength".to_owned(), TARGET_PER_REPLICA.to_owned());
            metadata.insert("activationListLength".to_owned(), "0".to_owned());
            secrets.push(secret_ref("password", facts, keys::PASSWORD));
            "redis"
        }
        TriggerType::Minio => {
            let base = ctx.settings.pending_url.trim_end_matches('/');
            metadata.insert(
                "url".to_owned(),
                format!("{base}/pending/{}/{}", ctx.namespace, ctx.name),
            );
            metadata.insert("format".to_owned(), "json".to_owned());
            metadata.insert("valueLocation".to_owned(), "pending".to_owned());
            metadata.insert("targetValue".to_owned(), TARGET_PER_REPLICA.to_owned());
            metadata.insert("activationTargetValue".to_owned(), "0".to_owned());
            "metrics-api"
        }
        other => {
            problems.push(Problem {
                condition: condition::RENDERED,
                reason: "UnsupportedTrigger",
                message: format!("trigger {} has no scaler", other.as_str()),
            });
            return Vec::new();
        }
    };
    let label = trigger.kind.as_str();
    let mut out = Vec::new();
    let authentication_ref = (!secrets.is_empty()).then(|| AuthenticationRef {
        name: auth_name(&ctx.name),
        kind: Some("TriggerAuthentication".to_owned()),
    });
    if !secrets.is_empty() {
        let mut auth = TriggerAuthentication::new(
            &auth_name(&ctx.name),
            TriggerAuthenticationSpec {
                secret_target_ref: secrets,
            },
        );
        auth.metadata = ctx.meta(auth_name(&ctx.name), label);
        out.push(Object::TriggerAuthentication(auth));
    }
    let mut scaled = ScaledObject::new(
        &ctx.name,
        ScaledObjectSpec {
            scale_target_ref: ScaleTargetRef {
                name: ctx.name.clone(),
                kind: Some("Deployment".to_owned()),
                api_version: Some("apps/v1".to_owned()),
                env_source_container_name: None,
            },
            polling_interval: Some(POLLING_INTERVAL),
            cooldown_period: Some(ctx.function.spec.idle_timeout()),
            min_replica_count: Some(0),
            max_replica_count: Some(if trigger.kind == TriggerType::Minio {
                // kipper-poll's minio poll mode lets one replica (the lease holder) poll:
                // more replicas would only idle.
                1
            } else {
                super::http::MAX_REPLICAS
            }),
            triggers: vec![ScaleTrigger {
                type_: scaler.to_owned(),
                name: Some(label.to_owned()),
                metadata,
                authentication_ref,
                metric_type: Some("AverageValue".to_owned()),
            }],
        },
    );
    scaled.metadata = ctx.meta(ctx.name.clone(), label);
    out.push(Object::ScaledObject(scaled));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn count_query_wraps_and_drops_a_trailing_semicolon() {
        assert_eq!(
            count_query("SELECT * FROM orders WHERE status = 'pending';  "),
            "SELECT COUNT(*) FROM (SELECT * FROM orders WHERE status = 'pending') AS kipper_count"
        );
    }
}
