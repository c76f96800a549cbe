//! `kip service copy-data`: the page's migration Job, PostgreSQL only for now.
//!
//! The Job runs in the *target* namespace with the service's own image and pipes
//! `pg_dump --clean --if-exists` of the source database into `psql --set ON_ERROR_STOP=1` on
//! the target. The source credentials reach it through a temporary mirror of the source's
//! `<svc>-credentials`, created in the target namespace and owned by the Job, so that it is
//! garbage-collected with the Job one hour after completion (`ttlSecondsAfterFinished`).
//! No retries (`backoffLimit: 0`): a failed copy stops there; a re-run overwrites cleanly.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::{ServiceKind, profile};
use crate::facts::{credentials_secret, keys};
use crate::render::env::{env as plain, secret_ref};
use crate::{Error, Result};

/// Seconds a finished copy Job (and so its mirror Secret) is kept: the page's one hour.
pub const COPY_JOB_TTL: i32 = 3600;

/// The dump/restore pipeline, run by `bash -c` in the Job (and by the tests against a real
/// PostgreSQL). `pipefail` makes a failed `pg_dump` fail the Job even though `psql` read a
/// clean end of input; `--single-transaction` makes a failed restore leave the target as it
/// was; `--no-owner --no-privileges` keeps objects owned by the target's own user.
pub const PIPELINE: &str = r#"set -euo pipefail
echo "kipper copy-data: $SOURCE_DB on $SOURCE_HOST -> $TARGET_DB on $TARGET_HOST"
PGPASSWORD="$SOURCE_PASSWORD" pg_dump --clean --if-exists --no-owner --no-privileges \
  -h "$SOURCE_HOST" -p "$SOURCE_PORT" -U "$SOURCE_USERNAME" -d "$SOURCE_DB" \
| PGPASSWORD="$TARGET_PASSWORD" psql --set ON_ERROR_STOP=1 --single-transaction --no-psqlrc --quiet \
  -h "$TARGET_HOST" -p "$TARGET_PORT" -U "$TARGET_USERNAME" -d "$TARGET_DB"
echo "kipper copy-data: done"
"#;

/// One copy, as the CLI resolved it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyPlan {
    /// Service name (the same in both namespaces).
    pub service: String,
    /// Its type (the same in both namespaces).
    pub kind: ServiceKind,
    /// Namespace read from.
    pub source_namespace: String,
    /// Namespace written to (where the Job runs).
    pub target_namespace: String,
    /// Host of the source service (from its Secret, else the cluster DNS name).
    pub source_host: String,
    /// Host of the target service.
    pub target_host: String,
    /// 8 hex digits making the Job's name unique.
    pub suffix: String,
}

impl CopyPlan {
    /// Refuses the types the page does not support yet and a copy onto itself.
    pub fn validate(&self) -> Result<()> {
        if self.kind != ServiceKind::Postgres {
            return Err(Error::Invalid(format!(
                "copy-data supports postgres services only for now; {} is a {} service",
                self.service,
                self.kind.as_str()
            )));
        }
        if self.source_namespace == self.target_namespace {
            return Err(Error::Invalid(format!(
                "--from-environment and --to-environment are both {}: copy between two environments",
                self.target_namespace
            )));
        }
        Ok(())
    }

    /// `<svc>-copy-<suffix>`.
    pub fn job_name(&self) -> String {
        format!("{}-copy-{}", self.service, self.suffix)
    }

    /// `<svc>-copy-<suffix>-source`, the mirror of the source credentials.
    pub fn mirror_name(&self) -> String {
        format!("{}-source", self.job_name())
    }

    fn labels(&self) -> BTreeMap<String, String> {
        // Not kipper.run/service: the service's own Service selects pods by it.
        BTreeMap::from([
            (
                "app.kubernetes.io/managed-by".to_owned(),
                "kipper".to_owned(),
            ),
            (
                "kipper.run/resource-type".to_owned(),
                "copy-data".to_owned(),
            ),
            ("kipper.run/copy-of".to_owned(), self.service.clone()),
        ])
    }
}

/// The mirror of the source's credentials in the target namespace: only the keys the Job
/// reads. Its owner reference to the Job is added once the Job exists ([`owned_by`]).
pub fn mirror_secret(plan: &CopyPlan, source: &Secret) -> Result<Secret> {
    let data = source.data.clone().unwrap_or_default();
    let mut mirrored = BTreeMap::new();
    for key in [keys::USERNAME, keys::PASSWORD, keys::DATABASE] {
        let value = data
            .get(key)
            .cloned()
            .ok_or_else(|| Error::MalformedObject {
                object: format!(
                    "{} in {}",
                    credentials_secret(&plan.service),
                    plan.source_namespace
                ),
                problem: format!("has no key {key}: it is not a Kipper service's credentials"),
            })?;
        mirrored.insert(key.to_owned(), value);
    }
    mirrored.insert(
        keys::HOST.to_owned(),
        ByteString(plan.source_host.clone().into_bytes()),
    );
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(plan.mirror_name()),
            namespace: Some(plan.target_namespace.clone()),
            labels: Some(plan.labels()),
            ..Default::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(mirrored),
        ..Default::default()
    })
}

/// The owner reference that hands the mirror to the Job's garbage collection.
pub fn owned_by(job: &Job) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: "batch/v1".to_owned(),
        kind: "Job".to_owned(),
        name: job.metadata.name.clone()?,
        uid: job.metadata.uid.clone()?,
        block_owner_deletion: Some(true),
        controller: Some(false),
    })
}

/// The copy Job: [`PIPELINE`] with `SOURCE_*` from the mirror and `TARGET_*` from the target's
/// `<svc>-credentials`; no retries, kept [`COPY_JOB_TTL`] seconds after it finishes.
pub fn copy_job(plan: &CopyPlan) -> Job {
    let mirror = plan.mirror_name();
    let target = credentials_secret(&plan.service);
    let port = plan.kind.default_port().to_string();
    let env = vec![
        secret_ref("SOURCE_HOST", &mirror, keys::HOST),
        plain("SOURCE_PORT", port.clone()),
        secret_ref("SOURCE_USERNAME", &mirror, keys::USERNAME),
        secret_ref("SOURCE_PASSWORD", &mirror, keys::PASSWORD),
        secret_ref("SOURCE_DB", &mirror, keys::DATABASE),
        plain("TARGET_HOST", plan.target_host.clone()),
        plain("TARGET_PORT", port),
        secret_ref("TARGET_USERNAME", &target, keys::USERNAME),
        secret_ref("TARGET_PASSWORD", &target, keys::PASSWORD),
        secret_ref("TARGET_DB", &target, keys::DATABASE),
    ];
    let container = Container {
        name: "copy-data".to_owned(),
        // The service's own image: pg_dump must be at least as new as the server it dumps.
        image: Some(profile::image(plan.kind).to_owned()),
        command: Some(vec![
            "bash".to_owned(),
            "-c".to_owned(),
            PIPELINE.to_owned(),
        ]),
        env: Some(env),
        ..Default::default()
    };
    Job {
        metadata: ObjectMeta {
            name: Some(plan.job_name()),
            namespace: Some(plan.target_namespace.clone()),
            labels: Some(plan.labels()),
            annotations: Some(BTreeMap::from([(
                "kipper.run/copy-from".to_owned(),
                plan.source_namespace.clone(),
            )])),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            ttl_seconds_after_finished: Some(COPY_JOB_TTL),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(plan.labels()),
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
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn plan() -> CopyPlan {
        CopyPlan {
            service: "db".into(),
            kind: ServiceKind::Postgres,
            source_namespace: "shop-test".into(),
            target_namespace: "shop-acc".into(),
            source_host: "db.shop-test.svc.cluster.local".into(),
            target_host: "db.shop-acc.svc.cluster.local".into(),
            suffix: "0badc0de".into(),
        }
    }

    #[test]
    fn the_job_runs_once_in_the_target_with_no_plain_password() {
        let job = copy_job(&plan());
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(spec.ttl_seconds_after_finished, Some(3600));
        assert_eq!(job.metadata.namespace.as_deref(), Some("shop-acc"));
        let c = &spec.template.spec.as_ref().unwrap().containers[0];
        for v in c.env.as_ref().unwrap() {
            if v.name.ends_with("PASSWORD") {
                assert!(v.value.is_none(), "{}", v.name);
            }
        }
        let script = &c.command.as_ref().unwrap()[2];
        assert!(script.contains("pg_dump --clean --if-exists"));
        assert!(script.contains("psql --set ON_ERROR_STOP=1"));
    }

    #[test]
    fn only_postgres_between_two_namespaces() {
        let mut p = plan();
        p.validate().unwrap();
        p.kind = ServiceKind::Mysql;
        assert!(p.validate().unwrap_err().to_string().contains("postgres"));
        let mut p = plan();
        p.target_namespace = p.source_namespace.clone();
        assert!(p.validate().is_err());
    }

    #[test]
    fn the_mirror_holds_only_what_the_job_reads() {
        let mut source = Secret {
            data: Some(
                [
                    ("username", "kipper"),
                    ("password", "pw"),
                    ("database", "app"),
                    ("extra", "x"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
            ),
            ..Default::default()
        };
        let m = mirror_secret(&plan(), &source).unwrap();
        let keys: Vec<&String> = m.data.as_ref().unwrap().keys().collect();
        assert_eq!(keys, ["database", "host", "password", "username"]);
        assert_eq!(m.metadata.name.as_deref(), Some("db-copy-0badc0de-source"));
        source.data.as_mut().unwrap().remove("password");
        assert!(mirror_secret(&plan(), &source).is_err());
        let mut job = copy_job(&plan());
        assert!(owned_by(&job).is_none());
        job.metadata.uid = Some("u".into());
        assert_eq!(owned_by(&job).unwrap().name, "db-copy-0badc0de");
    }
}
