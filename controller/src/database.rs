//! Per-function databases: `<service>_<function>_<env>` (or `--database`) created on bind,
//! idempotently, with a validated name (it is spliced into `CREATE DATABASE`, which takes no
//! parameters; [`validate_database_name`] admits only `[a-z_][a-z0-9_]*`).

use std::time::Duration;

use crate::crd::validate_database_name;
use crate::facts::ServiceKind;
use crate::{Error, Result};

/// How to reach a database service as its administrator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseServer {
    /// postgres or mysql (MongoDB creates databases on first write: nothing to do).
    pub kind: ServiceKind,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User allowed to create databases (the service's user).
    pub user: String,
    /// Its password.
    pub password: String,
}

/// Time allowed to connect and create.
const TIMEOUT: Duration = Duration::from_secs(10);

fn failed(server: &DatabaseServer, name: &str, e: impl std::fmt::Display) -> Error {
    Error::Render {
        part: "database",
        reason: format!(
            "create database {name} on {}:{}: {e}",
            server.host, server.port
        ),
    }
}

/// Creates database `name` unless it exists. Returns whether it was created.
pub async fn ensure_database(server: &DatabaseServer, name: &str) -> Result<bool> {
    validate_database_name(name)?;
    let work = async {
        match server.kind {
            ServiceKind::Postgres => ensure_postgres(server, name).await,
            ServiceKind::Mysql => ensure_mysql(server, name).await,
            _ => Ok(false),
        }
    };
    tokio::time::timeout(TIMEOUT, work)
        .await
        .map_err(|_| failed(server, name, "timed out"))?
}

async fn ensure_postgres(server: &DatabaseServer, name: &str) -> Result<bool> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&server.host)
        .port(server.port)
        .user(&server.user)
        .password(&server.password)
        .dbname("postgres")
        .connect_timeout(TIMEOUT);
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| failed(server, name, e))?;
    let driver = tokio::spawn(connection);
    let result = create_postgres(&client, server, name).await;
    drop(client);
    let _ = driver.await;
    result
}

fn pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

async fn create_postgres(
    client: &tokio_postgres::Client,
    server: &DatabaseServer,
    name: &str,
) -> Result<bool> {
    use tokio_postgres::error::SqlState;
    // Concurrent creates race on the catalog or on template1 ("being accessed by other
    // users"): look again and retry a few times before calling it a failure.
    let mut attempt = 0;
    loop {
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .map_err(|e| failed(server, name, pg_error(&e)))?
            .is_some();
        if exists {
            return Ok(false);
        }
        // The name is validated: lowercase letters, digits and '_' only.
        let err = match client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
        {
            Ok(()) => return Ok(true),
            Err(e) => e,
        };
        let code = err.code().cloned();
        if code == Some(SqlState::DUPLICATE_DATABASE) || code == Some(SqlState::UNIQUE_VIOLATION) {
            return Ok(false);
        }
        attempt += 1;
        if code != Some(SqlState::OBJECT_IN_USE) || attempt >= 10 {
            return Err(failed(server, name, pg_error(&err)));
        }
        tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
    }
}

async fn ensure_mysql(server: &DatabaseServer, name: &str) -> Result<bool> {
    use mysql_async::prelude::Queryable;
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(server.host.clone())
        .tcp_port(server.port)
        .user(Some(server.user.clone()))
        .pass(Some(server.password.clone()));
    let mut conn = mysql_async::Conn::new(opts)
        .await
        .map_err(|e| failed(server, name, e))?;
    let exists: Option<String> = conn
        .exec_first(
            "SELECT SCHEMA_NAME FROM INFORMATION_SCHEMA.SCHEMATA WHERE SCHEMA_NAME = ?",
            (name,),
        )
        .await
        .map_err(|e| failed(server, name, e))?;
    if exists.is_none() {
        // IF NOT EXISTS makes a concurrent create harmless; the name is validated above.
        conn.query_drop(format!("CREATE DATABASE IF NOT EXISTS `{name}`"))
            .await
            .map_err(|e| failed(server, name, e))?;
    }
    let _ = conn.disconnect().await;
    Ok(exists.is_none())
}
