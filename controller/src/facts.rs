//! What the renderer needs to know about a Kipper service (the things `kip service add`
//! created): its type, its in-cluster address and where its credentials live.
//!
//! A service `<svc>` in namespace `<ns>` is reachable at `<svc>.<ns>.svc.cluster.local` on its
//! type's port, and its credentials are in the Secret `<svc>-credentials` (keys `username`,
//! `password`, `database`), labelled `kipper.run/service-type=<type>`. The Secret may also
//! hold `host` and `port`, for a server outside the cluster: every consumer (binding
//! variables, KEDA triggers, database creation) then uses them. A MinIO service's Secret may
//! also hold `endpoint` (an S3 URL), used by the pending-changes counter instead of the
//! in-cluster address.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kipper_contract::binding;
use kube::ResourceExt;

use crate::crd::TriggerType;
use crate::{Error, Result};

/// Label on `<svc>-credentials` that says the service's type.
pub const SERVICE_TYPE_LABEL: &str = "kipper.run/service-type";

/// Kinds of Kipper services.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    /// PostgreSQL.
    Postgres,
    /// MySQL / MariaDB.
    Mysql,
    /// MongoDB.
    Mongodb,
    /// Redis.
    Redis,
    /// RabbitMQ.
    Rabbitmq,
    /// OpenSearch.
    Opensearch,
    /// MinIO (S3).
    Minio,
}

impl ServiceKind {
    /// Parses the `kipper.run/service-type` label value.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "postgres" | "postgresql" => ServiceKind::Postgres,
            "mysql" | "mariadb" => ServiceKind::Mysql,
            "mongodb" => ServiceKind::Mongodb,
            "redis" => ServiceKind::Redis,
            "rabbitmq" => ServiceKind::Rabbitmq,
            "opensearch" => ServiceKind::Opensearch,
            "minio" => ServiceKind::Minio,
            _ => return None,
        })
    }

    /// The type name.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Postgres => "postgres",
            ServiceKind::Mysql => "mysql",
            ServiceKind::Mongodb => "mongodb",
            ServiceKind::Redis => "redis",
            ServiceKind::Rabbitmq => "rabbitmq",
            ServiceKind::Opensearch => "opensearch",
            ServiceKind::Minio => "minio",
        }
    }

    /// The binding's default variable prefix (CONTRACT section 4).
    pub fn default_prefix(self) -> &'static str {
        match self {
            // The three kipper-poll reads too are the contract's.
            ServiceKind::Postgres | ServiceKind::Mysql | ServiceKind::Mongodb => binding::DB_PREFIX,
            ServiceKind::Redis => binding::REDIS_PREFIX,
            ServiceKind::Rabbitmq => "AMQP_",
            ServiceKind::Opensearch => "OPENSEARCH_",
            ServiceKind::Minio => binding::S3_PREFIX,
        }
    }

    /// The port the service listens on.
    pub fn default_port(self) -> u16 {
        match self {
            ServiceKind::Postgres => 5432,
            ServiceKind::Mysql => 3306,
            ServiceKind::Mongodb => 27017,
            ServiceKind::Redis => 6379,
            ServiceKind::Rabbitmq => 5672,
            ServiceKind::Opensearch => 9200,
            ServiceKind::Minio => 9000,
        }
    }

    /// Database services get a per-function database and `NAME` variables.
    pub fn is_database(self) -> bool {
        matches!(
            self,
            ServiceKind::Postgres | ServiceKind::Mysql | ServiceKind::Mongodb
        )
    }

    /// Services that log in with a user name (Redis uses the password alone).
    pub fn has_username(self) -> bool {
        !matches!(self, ServiceKind::Redis)
    }

    /// The service kind an event trigger reads from.
    pub fn for_trigger(trigger: TriggerType) -> Option<Self> {
        match trigger {
            TriggerType::Postgres => Some(ServiceKind::Postgres),
            TriggerType::Mysql => Some(ServiceKind::Mysql),
            TriggerType::Redis => Some(ServiceKind::Redis),
            TriggerType::Minio => Some(ServiceKind::Minio),
            TriggerType::Rabbitmq => Some(ServiceKind::Rabbitmq),
            TriggerType::Http | TriggerType::Cron => None,
        }
    }
}

/// One service's facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceFacts {
    /// Service name.
    pub name: String,
    /// Service type.
    pub kind: ServiceKind,
    /// In-cluster DNS name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Secret holding the credentials.
    pub secret: String,
}

/// Secret keys inside `<svc>-credentials`.
pub mod keys {
    /// User name key.
    pub const USERNAME: &str = "username";
    /// Password key.
    pub const PASSWORD: &str = "password";
    /// Default database key.
    pub const DATABASE: &str = "database";
    /// Optional: the server's host, for a service outside the cluster.
    pub const HOST: &str = "host";
    /// Optional: the server's port, with `host`.
    pub const PORT: &str = "port";
}

/// A UTF-8 value of a Secret, if present.
pub fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

impl ServiceFacts {
    /// The facts Kipper's naming conventions give for `name` of `kind` in `namespace`.
    pub fn conventional(name: &str, kind: ServiceKind, namespace: &str) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            host: format!("{name}.{namespace}.svc.cluster.local"),
            port: kind.default_port(),
            secret: credentials_secret(name),
        }
    }
}

impl ServiceFacts {
    /// The facts of the service whose credentials Secret is `secret`: its type from the
    /// `kipper.run/service-type` label, the conventional address unless the Secret carries
    /// `host` (and `port`). `None` when the label is missing or unknown; an error when `port`
    /// is not a port number.
    pub fn from_secret(name: &str, namespace: &str, secret: &Secret) -> Result<Option<Self>> {
        let Some(kind) = secret
            .labels()
            .get(SERVICE_TYPE_LABEL)
            .and_then(|k| ServiceKind::parse(k))
        else {
            return Ok(None);
        };
        let mut facts = Self::conventional(name, kind, namespace);
        if let Some(host) = secret_value(secret, keys::HOST).filter(|h| !h.trim().is_empty()) {
            facts.host = host.trim().to_owned();
        }
        if let Some(port) = secret_value(secret, keys::PORT) {
            facts.port = port.trim().parse().map_err(|_| Error::MalformedObject {
                object: format!("Secret {}", facts.secret),
                problem: format!(
                    "key \"port\" is {port:?}, not a port number: set it to e.g. {}",
                    kind.default_port()
                ),
            })?;
        }
        Ok(Some(facts))
    }
}

/// Name of a service's credentials Secret.
pub fn credentials_secret(service: &str) -> String {
    format!("{service}-credentials")
}

/// Known services by name.
pub type ServiceCatalog = BTreeMap<String, ServiceFacts>;

/// Looks a service up, with the error the user sees when it does not exist.
pub fn lookup<'a>(
    catalog: &'a ServiceCatalog,
    name: &str,
    namespace: &str,
) -> Result<&'a ServiceFacts> {
    catalog.get(name).ok_or_else(|| Error::UnknownService {
        service: name.to_owned(),
        namespace: namespace.to_owned(),
    })
}
