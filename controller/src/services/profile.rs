//! One profile per service type: the pinned official image, its ports, where it keeps its
//! data, how it reads its credentials, how Kubernetes knows it is ready, and its default
//! resources. Images are pinned to exact releases so that a restart never upgrades a database.

use k8s_openapi::api::core::v1::{EnvVar, ExecAction, HTTPGetAction, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Resources, ServiceKind};
use crate::facts::keys;
use crate::render::env::{env as plain, secret_ref};

/// A named container port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Port {
    /// Port name (Service and container).
    pub name: &'static str,
    /// Number.
    pub port: u16,
}

/// The pinned image of a type.
pub fn image(kind: ServiceKind) -> &'static str {
    match kind {
        ServiceKind::Postgres => "docker.io/library/postgres:16.4",
        ServiceKind::Mysql => "docker.io/library/mysql:8.4.3",
        ServiceKind::Mongodb => "docker.io/library/mongo:7.0.14",
        ServiceKind::Redis => "docker.io/library/redis:7.4.1",
        ServiceKind::Rabbitmq => "docker.io/library/rabbitmq:3.13.7-management",
        ServiceKind::Opensearch => "docker.io/opensearchproject/opensearch:2.17.1",
        ServiceKind::Minio => "quay.io/minio/minio:RELEASE.2024-10-13T13-34-11Z",
    }
}

/// The ports of a type; the first is the one bindings and tunnels use.
pub fn ports(kind: ServiceKind) -> Vec<Port> {
    let main = Port {
        name: match kind {
            ServiceKind::Postgres => "postgres",
            ServiceKind::Mysql => "mysql",
            ServiceKind::Mongodb => "mongodb",
            ServiceKind::Redis => "redis",
            ServiceKind::Rabbitmq => "amqp",
            ServiceKind::Opensearch => "https",
            ServiceKind::Minio => "s3",
        },
        port: kind.default_port(),
    };
    let mut ports = vec![main];
    match kind {
        ServiceKind::Minio => ports.push(Port {
            name: "console",
            port: MINIO_CONSOLE_PORT,
        }),
        ServiceKind::Rabbitmq => ports.push(Port {
            name: "management",
            port: 15672,
        }),
        _ => {}
    }
    ports
}

/// MinIO's web console port (`--console-address :9001`).
pub const MINIO_CONSOLE_PORT: u16 = 9001;

/// Where the data volume is mounted.
pub fn data_path(kind: ServiceKind) -> &'static str {
    match kind {
        ServiceKind::Postgres => "/var/lib/postgresql/data",
        ServiceKind::Mysql => "/var/lib/mysql",
        ServiceKind::Mongodb => "/data/db",
        ServiceKind::Redis | ServiceKind::Minio => "/data",
        ServiceKind::Rabbitmq => "/var/lib/rabbitmq",
        ServiceKind::Opensearch => "/usr/share/opensearch/data",
    }
}

/// The page's "defaults work for most" resources; `--cpu-*` / `--memory-*` override them.
pub fn default_resources(kind: ServiceKind) -> Resources {
    let (cpu_request, memory_request, cpu_limit, memory_limit) = match kind {
        ServiceKind::Postgres => ("100m", "256Mi", "1", "1Gi"),
        ServiceKind::Mysql | ServiceKind::Mongodb => ("100m", "512Mi", "1", "1Gi"),
        ServiceKind::Redis => ("50m", "64Mi", "500m", "256Mi"),
        ServiceKind::Rabbitmq => ("100m", "256Mi", "1", "512Mi"),
        // The JVM heap is fixed at 512 MiB (OPENSEARCH_JAVA_OPTS); the rest is off-heap.
        ServiceKind::Opensearch => ("250m", "1Gi", "1", "2Gi"),
        ServiceKind::Minio => ("100m", "256Mi", "1", "1Gi"),
    };
    Resources {
        cpu_request: cpu_request.to_owned(),
        cpu_limit: cpu_limit.to_owned(),
        memory_request: memory_request.to_owned(),
        memory_limit: memory_limit.to_owned(),
    }
}

/// The group that owns the data directory, for images whose server starts unprivileged
/// (the others start as root, fix the directory's owner and drop to their own user).
pub fn fs_group(kind: ServiceKind) -> Option<i64> {
    match kind {
        ServiceKind::Opensearch => Some(1000),
        _ => None,
    }
}

/// The container's environment: each image's own variable names, every credential read from
/// `secret` (never a plain value).
pub fn env(kind: ServiceKind, secret: &str) -> Vec<EnvVar> {
    let s = |name: &str, key: &str| secret_ref(name, secret, key);
    match kind {
        ServiceKind::Postgres => vec![
            s("POSTGRES_USER", keys::USERNAME),
            s("POSTGRES_PASSWORD", keys::PASSWORD),
            s("POSTGRES_DB", keys::DATABASE),
            // A subdirectory: the volume's root may hold lost+found, which initdb refuses.
            plain("PGDATA", "/var/lib/postgresql/data/pgdata"),
        ],
        ServiceKind::Mysql => vec![
            s("MYSQL_ROOT_PASSWORD", keys::PASSWORD),
            s("MYSQL_USER", keys::USERNAME),
            s("MYSQL_PASSWORD", keys::PASSWORD),
            s("MYSQL_DATABASE", keys::DATABASE),
        ],
        ServiceKind::Mongodb => vec![
            s("MONGO_INITDB_ROOT_USERNAME", keys::USERNAME),
            s("MONGO_INITDB_ROOT_PASSWORD", keys::PASSWORD),
            s("MONGO_INITDB_DATABASE", keys::DATABASE),
        ],
        ServiceKind::Redis => vec![s("REDIS_PASSWORD", keys::PASSWORD)],
        ServiceKind::Rabbitmq => vec![
            s("RABBITMQ_DEFAULT_USER", keys::USERNAME),
            s("RABBITMQ_DEFAULT_PASS", keys::PASSWORD),
        ],
        ServiceKind::Opensearch => vec![
            plain("discovery.type", "single-node"),
            // No mmap: the node's vm.max_map_count then needs no privileged tuning.
            plain("node.store.allow_mmap", "false"),
            plain("OPENSEARCH_JAVA_OPTS", "-Xms512m -Xmx512m"),
            s("OPENSEARCH_INITIAL_ADMIN_PASSWORD", keys::PASSWORD),
        ],
        ServiceKind::Minio => vec![
            s("MINIO_ROOT_USER", keys::USERNAME),
            s("MINIO_ROOT_PASSWORD", keys::PASSWORD),
        ],
    }
}

/// Arguments of the image's entry point, where the defaults are not enough.
pub fn args(kind: ServiceKind) -> Option<Vec<String>> {
    let v = |a: &[&str]| Some(a.iter().map(|s| (*s).to_owned()).collect());
    match kind {
        // Through the image's entry point (it fixes /data's owner and drops to the redis
        // user); the shell reads the password from the env, so the pod spec holds none. One
        // script rather than separate arguments: a lone `yes` would be read as a boolean by
        // YAML 1.1 parsers (kubectl's) in the --dry-run output.
        ServiceKind::Redis => v(&[
            "sh",
            "-c",
            r#"exec docker-entrypoint.sh redis-server --requirepass "$REDIS_PASSWORD" --appendonly yes --dir /data"#,
        ]),
        ServiceKind::Minio => v(&["server", "/data", "--console-address", ":9001"]),
        _ => None,
    }
}

fn exec(script: &str) -> Option<ExecAction> {
    Some(ExecAction {
        command: Some(vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()]),
    })
}

/// The readiness probe: the server answers a real request, on its network address (the
/// images' first-boot initialisation runs a temporary server on a local socket only, which
/// must not count as ready).
pub fn readiness(kind: ServiceKind) -> Probe {
    let base = Probe {
        period_seconds: Some(5),
        timeout_seconds: Some(5),
        failure_threshold: Some(3),
        ..Default::default()
    };
    match kind {
        ServiceKind::Postgres => Probe {
            exec: exec(r#"pg_isready -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB""#),
            ..base
        },
        ServiceKind::Mysql => Probe {
            exec: exec(
                r#"MYSQL_PWD="$MYSQL_ROOT_PASSWORD" mysqladmin ping -h 127.0.0.1 -u root --silent"#,
            ),
            ..base
        },
        ServiceKind::Mongodb => Probe {
            exec: exec(
                r#"mongosh --quiet --host 127.0.0.1 --eval 'quit(db.adminCommand({ping: 1}).ok ? 0 : 1)'"#,
            ),
            ..base
        },
        ServiceKind::Redis => Probe {
            exec: exec(
                r#"REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli -h 127.0.0.1 ping | grep -q PONG"#,
            ),
            ..base
        },
        ServiceKind::Rabbitmq => Probe {
            exec: exec("rabbitmq-diagnostics -q check_port_connectivity"),
            timeout_seconds: Some(15),
            period_seconds: Some(10),
            ..base
        },
        // HTTPS with the image's own certificates and basic auth: a TCP check is what a
        // probe can do without credentials.
        ServiceKind::Opensearch => Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(9200),
                host: None,
            }),
            initial_delay_seconds: Some(20),
            ..base
        },
        ServiceKind::Minio => Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/minio/health/ready".to_owned()),
                port: IntOrString::Int(9000),
                ..Default::default()
            }),
            ..base
        },
    }
}

/// The liveness probe: the process still accepts connections. Generous, so that a busy
/// database is not killed (a restart would only make it slower).
pub fn liveness(kind: ServiceKind) -> Probe {
    let port = match kind {
        ServiceKind::Minio => {
            return Probe {
                http_get: Some(HTTPGetAction {
                    path: Some("/minio/health/live".to_owned()),
                    port: IntOrString::Int(9000),
                    ..Default::default()
                }),
                initial_delay_seconds: Some(30),
                period_seconds: Some(20),
                timeout_seconds: Some(5),
                failure_threshold: Some(6),
                ..Default::default()
            };
        }
        other => other.default_port(),
    };
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(i32::from(port)),
            host: None,
        }),
        // First boots initialise a data directory before they listen.
        initial_delay_seconds: Some(60),
        period_seconds: Some(20),
        timeout_seconds: Some(5),
        failure_threshold: Some(6),
        ..Default::default()
    }
}

/// MySQL's initialisation script: the image grants its user only `MYSQL_DATABASE`; per-app and
/// per-function databases need `CREATE` on the server, so the user gets every privilege.
pub const MYSQL_INIT_SQL: &str =
    "GRANT ALL PRIVILEGES ON *.* TO 'kipper'@'%' WITH GRANT OPTION;\nFLUSH PRIVILEGES;\n";

/// The URL scheme of a type's main port, for `kip service info` and bindings.
pub fn scheme(kind: ServiceKind) -> &'static str {
    match kind {
        ServiceKind::Postgres => "postgres",
        ServiceKind::Mysql => "mysql",
        ServiceKind::Mongodb => "mongodb",
        ServiceKind::Redis => "redis",
        ServiceKind::Rabbitmq => "amqp",
        ServiceKind::Opensearch => "https",
        ServiceKind::Minio => "http",
    }
}
