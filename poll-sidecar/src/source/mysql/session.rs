//! Opening a MySQL / MariaDB claim session with its statements (and the
//! watcher that fences it), and the writer's connection.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Statement};

use super::json::Shape;
use super::statements;
use crate::config::SqlConfig;
use crate::source::sql::WATCH_EVERY;
use crate::source::sql::claim::{DriverSettings, Opened};
use crate::source::sql::json::write_str;
use crate::{Error, Result};
use tokio_util::sync::CancellationToken;

/// The claim connection and its prepared statements.
#[derive(Debug)]
pub struct Session {
    pub conn: Conn,
    /// Pings the server beside the claim connection; kept for its `Drop`,
    /// which stops it with the session.
    pub _watcher: Watcher,
    /// The user's query, for the re-read statements prepared per size.
    pub query: String,
    /// The identity columns (the mark-done's placeholders).
    pub keys: Vec<String>,
    /// Namespaces this query's lock names.
    pub seed: u64,
    pub claim: Statement,
    pub verify: HashMap<usize, Statement>,
    pub unlock: HashMap<usize, Statement>,
    /// Lease statements by padded key count: take, read back, end.
    pub lease: HashMap<usize, Statement>,
    pub leased: HashMap<usize, Statement>,
    pub end_leases: HashMap<usize, Statement>,
    /// How long a lease lasts.
    pub lease_ttl: std::time::Duration,
    /// This process's lease holder id.
    pub holder: Arc<str>,
    pub count: Option<Statement>,
    pub names: Vec<Bytes>,
    pub shapes: Vec<Shape>,
    pub bound_at: Vec<usize>,
}

/// The server's message of a database error, else the error itself.
pub fn server_message(error: &mysql_async::Error) -> String {
    match error {
        mysql_async::Error::Server(e) => e.message.clone(),
        other => other.to_string(),
    }
}

/// Connects one session for `config`, explaining a failure (server message,
/// address, the setting to check). A TLS requirement was refused when the
/// configuration was validated.
pub async fn connect(config: &SqlConfig) -> Result<Conn> {
    use crate::source::sql::connect;
    // A host that drops packets would otherwise hang the start for the OS's
    // SYN retries (about two minutes) before anything is logged.
    match tokio::time::timeout(connect::TIMEOUT, Conn::new(options(config))).await {
        Ok(connected) => connected.map_err(|e| connect::mysql(&config.connection, &e)),
        Err(_) => Err(connect::timed_out("mysql", &config.connection)),
    }
}

/// READ COMMITTED for a session that writes the lease table: no gap locks
/// for keys a DELETE or UPDATE does not find, so the lease writes of
/// replicas (disjoint keys) do not deadlock. Each statement still reads one
/// fresh snapshot, as in autocommit under REPEATABLE READ.
pub async fn lease_isolation(conn: &mut Conn) -> Result<()> {
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .await?;
    Ok(())
}

/// A statement for `n` items prepared once per size on `conn`, in `cache`.
pub async fn cached(
    conn: &mut Conn,
    cache: &mut HashMap<usize, Statement>,
    n: usize,
    sql: impl FnOnce(usize) -> String,
) -> Result<Statement> {
    if let Some(statement) = cache.get(&n) {
        return Ok(statement.clone());
    }
    let statement = conn.prep(sql(n)).await?;
    cache.insert(n, statement.clone());
    Ok(statement)
}

/// Connection options for `config`.
fn options(config: &SqlConfig) -> OptsBuilder {
    let c = &config.connection;
    OptsBuilder::default()
        .ip_or_hostname(c.host.clone())
        .tcp_port(c.port)
        .user(Some(c.user.clone()))
        .pass((!c.password.expose().is_empty()).then(|| c.password.expose().to_string()))
        .db_name(Some(c.database.clone()))
        .tcp_nodelay(true)
        // DATETIME/TIMESTAMP are sent as UTC and written with a Z.
        .setup(vec!["SET time_zone = '+00:00'"])
}

impl Session {
    /// Connects and prepares every statement, so a query or placeholder that
    /// does not fit fails at start, with one line.
    pub async fn open(settings: &DriverSettings, seed: u64) -> Result<Opened<Self>> {
        let DriverSettings {
            config,
            keys,
            bound,
            holder,
        } = settings;
        let mut conn = connect(config).await?;
        lease_isolation(&mut conn).await?;
        let query = &config.query;
        let columns = conn.prep(statements::columns(query)).await.map_err(|e| {
            Error::config(
                "KIPPER_QUERY",
                format!("the database refuses the query: {}", server_message(&e)),
            )
        })?;
        let user_columns: Vec<String> = columns
            .columns()
            .iter()
            .map(|c| c.name_str().into_owned())
            .collect();
        let mut shapes = Vec::new();
        for column in columns.columns().iter() {
            shapes.push(Shape::of(
                column,
                json_checked(&mut conn, column, &config.connection.database, query).await,
            ));
        }
        let find = |name: &str, setting: &'static str| {
            user_columns.iter().position(|n| n == name).ok_or_else(|| {
                Error::config(
                    setting,
                    format!(
                        "{{{{{name}}}}} is not a column of KIPPER_QUERY (it has: {})",
                        user_columns.join(", ")
                    ),
                )
            })
        };
        for key in keys {
            find(key, "KIPPER_MARK_DONE")?;
        }
        let bound_at = bound.positions(keys, find)?;
        // The claim statements name it.
        super::keeper::lease_table(&mut conn, config).await?;
        let claim_sql = if keys.is_empty() {
            statements::claim_rows(query, &user_columns, seed)
        } else {
            statements::claim_keys(query, keys, seed)
        };
        let claim = conn.prep(claim_sql).await?;
        let names = user_columns
            .iter()
            .map(|name| {
                let mut out = BytesMut::new();
                write_str(&mut out, name);
                out.put_u8(b':');
                out.freeze()
            })
            .collect();
        let uptime: Option<(String, String)> = conn.query_first(statements::UPTIME).await?;
        let uptime = uptime
            .and_then(|(_, seconds)| seconds.parse::<u64>().ok())
            .map_or(std::time::Duration::ZERO, std::time::Duration::from_secs);
        let fence = CancellationToken::new();
        let watcher = Watcher::start(connect(config).await?, fence.clone());
        let session = Self {
            conn,
            _watcher: watcher,
            query: query.clone(),
            keys: keys.to_vec(),
            seed,
            claim,
            verify: HashMap::new(),
            unlock: HashMap::new(),
            lease: HashMap::new(),
            leased: HashMap::new(),
            end_leases: HashMap::new(),
            lease_ttl: config.lease_ttl,
            holder: holder.clone(),
            count: None,
            names,
            shapes,
            bound_at,
        };
        Ok(Opened {
            session,
            fence,
            uptime,
        })
    }
}

/// A task that pings the server on its own connection every [`WATCH_EVERY`]
/// and cancels the session's fence when a ping fails: mysql_async notices a
/// closed connection only when it is used, and the claim connection may sit
/// unused while a slow batch is delivered. Aborted when dropped.
#[derive(Debug)]
pub struct Watcher(tokio::task::JoinHandle<()>);

impl Watcher {
    fn start(mut conn: Conn, fence: CancellationToken) -> Self {
        Self(tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = fence.cancelled() => break,
                    () = tokio::time::sleep(WATCH_EVERY) => {}
                }
                if let Err(error) = conn.ping().await {
                    tracing::warn!(message = "MySQL server lost; the claim session's rows get no further attempt.", %error);
                    fence.cancel();
                    break;
                }
            }
        }))
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Whether MariaDB declared `column` JSON (a LONGTEXT with a `json_valid`
/// check); MySQL has a real JSON type and needs no lookup.
async fn json_checked(
    conn: &mut Conn,
    column: &mysql_async::Column,
    database: &str,
    query: &str,
) -> bool {
    use mysql_async::consts::ColumnType::*;
    if !matches!(column.column_type(), MYSQL_TYPE_BLOB | MYSQL_TYPE_LONG_BLOB) {
        return false;
    }
    let schema = if column.schema_ref().is_empty() {
        database.to_string()
    } else {
        column.schema_str().into_owned()
    };
    let clause = format!("json_valid(`{}`)", column.org_name_str());
    let table = column.org_table_str().into_owned();
    let found: Result<Option<u64>, _> = conn
        .exec_first(statements::JSON_CHECK, (schema, clause, table, query))
        .await;
    matches!(found, Ok(Some(n)) if n > 0)
}
