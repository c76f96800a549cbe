//! Opening PostgreSQL sessions: the claim session (it holds the advisory
//! locks and runs claim, re-read and unlock) and the writer session (it runs
//! the mark-done / mark-failed transactions), each with its statements
//! prepared at start so a query or placeholder that does not fit fails then,
//! with one line.

use bytes::{BufMut, Bytes, BytesMut};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, Statement};
use tokio_util::sync::CancellationToken;

use super::statements;
use crate::config::SqlConfig;
use crate::source::sql::json::write_str;
use crate::source::sql::template::Template;
use crate::{Error, Result};

/// The server's message of a database error, else the error itself.
pub fn db_message(error: &tokio_postgres::Error) -> String {
    error
        .as_db_error()
        .map_or_else(|| error.to_string(), |db| db.message().to_string())
}

/// Connects one session for `config`.
pub async fn connect(config: &SqlConfig) -> Result<Client> {
    Ok(connect_fenced(config).await?.0)
}

/// Connects one session and returns with it a token cancelled the moment the
/// connection ends (the server restarted, the network broke): the fence of
/// the rows this session locks.
pub async fn connect_fenced(config: &SqlConfig) -> Result<(Client, CancellationToken)> {
    let c = &config.connection;
    let mut pg = tokio_postgres::Config::new();
    pg.host(&c.host)
        .port(c.port)
        .user(&c.user)
        .dbname(&c.database)
        .application_name("kipper-poll")
        // A host that drops packets would otherwise hang the start for the OS's
        // SYN retries (about two minutes) before anything is logged.
        .connect_timeout(crate::source::sql::connect::TIMEOUT);
    if !c.password.expose().is_empty() {
        pg.password(c.password.expose());
    }
    for (key, value) in &c.params {
        if key == "application_name" {
            pg.application_name(value);
        }
    }
    // A TLS requirement was refused when the configuration was validated.
    let (client, connection) = pg
        .connect(NoTls)
        .await
        .map_err(|e| crate::source::sql::connect::postgres(c, &e))?;
    let ended = CancellationToken::new();
    let fence = ended.clone();
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(message = "PostgreSQL connection ended.", %error);
        }
        ended.cancel();
    });
    Ok((client, fence))
}

/// How long the server has been up (`pg_postmaster_start_time()`).
pub async fn uptime(client: &Client) -> Result<std::time::Duration> {
    let ms: i64 = client
        .query_one(statements::UPTIME, &[])
        .await?
        .try_get(0)?;
    Ok(std::time::Duration::from_millis(
        u64::try_from(ms).unwrap_or(0),
    ))
}

/// The user query's columns: names and types, in order.
pub async fn columns(client: &Client, query: &str) -> Result<Vec<(String, Type)>> {
    let statement = client
        .prepare(&statements::columns(query))
        .await
        .map_err(|e| {
            Error::config(
                "KIPPER_QUERY",
                format!("PostgreSQL refuses the query: {}", db_message(&e)),
            )
        })?;
    Ok(statement
        .columns()
        .iter()
        .map(|c| (c.name().to_string(), c.type_().clone()))
        .collect())
}

/// The index of column `name`, or the one-line error naming `setting`.
pub fn find(columns: &[(String, Type)], name: &str, setting: &'static str) -> Result<usize> {
    columns.iter().position(|(n, _)| n == name).ok_or_else(|| {
        let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
        Error::config(
            setting,
            format!(
                "{{{{{name}}}}} is not a column of KIPPER_QUERY (it has: {})",
                names.join(", ")
            ),
        )
    })
}

/// `"name":` of each column, JSON-escaped once per session.
pub fn json_names(columns: &[(String, Type)]) -> Vec<Bytes> {
    columns
        .iter()
        .map(|(name, _)| {
            let mut out = BytesMut::new();
            write_str(&mut out, name);
            out.put_u8(b':');
            out.freeze()
        })
        .collect()
}

/// Prepares a mark-done / mark-failed with each parameter typed like the
/// query column it takes its value from.
pub async fn prepare_template(
    client: &Client,
    template: Option<&Template>,
    columns: &[(String, Type)],
    setting: &'static str,
) -> Result<Option<Statement>> {
    let Some(t) = template else { return Ok(None) };
    let mut types = Vec::with_capacity(t.params.len());
    for param in &t.params {
        types.push(columns[find(columns, param, setting)?].1.clone());
    }
    client
        .prepare_typed(&t.sql, &types)
        .await
        .map(Some)
        .map_err(|e| {
            Error::config(
                setting,
                format!("PostgreSQL refuses the statement: {}", db_message(&e)),
            )
        })
}
