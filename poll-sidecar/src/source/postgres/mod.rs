//! The PostgreSQL trigger (tokio-postgres): claims rows of the user's SELECT
//! with session-level advisory locks, re-reads them after locking, and runs
//! the mark-dones of a batch pipelined in one transaction. The design and its
//! reasons are in [`crate::source::sql`] and ARCHITECTURE.md.

mod json;
mod statements;

use std::collections::{HashMap, HashSet};

use bytes::{BufMut, Bytes, BytesMut};
use futures::future::join_all;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, NoTls, Statement};

pub use json::{Raw, write_value};

use super::sql::json::write_str;

use super::sql::{BoundColumns, NO_MARK_DONE, NO_MARK_FAILED, fnv64, key_columns};
use super::{Claimed, DeadLetter, Source};
use crate::config::SqlConfig;
use crate::{Error, Result};

/// What the source keeps of a claimed row.
#[derive(Debug, Clone)]
pub struct PgHandle {
    /// The advisory lock held for the row.
    lock: i64,
    /// Binary values of the columns the mark-done / mark-failed bind.
    values: Box<[Option<Bytes>]>,
}

/// A column value bound back in the binary format it was read in, so a
/// parameter has exactly the row's value whatever its type.
#[derive(Debug)]
struct RawParam<'a>(Option<&'a [u8]>);

impl ToSql for RawParam<'_> {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self.0 {
            Some(raw) => {
                out.put_slice(raw);
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// The PostgreSQL source.
#[derive(Debug)]
pub struct PostgresSource {
    config: SqlConfig,
    seed: i64,
    keys: Vec<String>,
    bound: BoundColumns,
    conn: Option<Conn>,
    /// Locks this session holds: events in flight and parked rows.
    held: HashSet<i64>,
    /// No mark-done: where the current pass over the query stands.
    offset: i64,
    /// No mark-done: the last page of a pass was handed out.
    pass_ended: bool,
}

/// One session and its prepared statements.
#[derive(Debug)]
struct Conn {
    client: Client,
    claim: Statement,
    /// Re-read statements by padded row count (powers of two).
    verify: HashMap<usize, Statement>,
    key_types: Vec<Type>,
    mark_done: Option<Statement>,
    mark_failed: Option<Statement>,
    unlock: Statement,
    count: Option<Statement>,
    /// `"name":` of each user column, JSON-escaped once.
    names: Vec<Bytes>,
    /// Index of each bound column among the user columns.
    bound_at: Vec<usize>,
}

impl PostgresSource {
    /// Connects and prepares every statement, so a query or placeholder that
    /// does not fit fails here, at start, with one line.
    pub async fn connect(config: &SqlConfig) -> Result<Self> {
        let keys = key_columns(config.mark_done.as_ref());
        let mut source = Self {
            seed: i64::from_ne_bytes(fnv64(&config.query).to_ne_bytes()) & 0x7fff_ffff_ffff,
            bound: BoundColumns::new(config.mark_done.as_ref(), config.mark_failed.as_ref()),
            keys,
            config: config.clone(),
            conn: None,
            held: HashSet::new(),
            offset: 0,
            pass_ended: false,
        };
        if config.mark_done.is_none() {
            tracing::warn!(message = NO_MARK_DONE);
        } else if config.mark_failed.is_none() {
            tracing::warn!(message = NO_MARK_FAILED);
        }
        source.ensure().await?;
        Ok(source)
    }

    async fn open(&self) -> Result<Conn> {
        let c = &self.config.connection;
        let mut pg = tokio_postgres::Config::new();
        pg.host(&c.host)
            .port(c.port)
            .user(&c.user)
            .dbname(&c.database)
            .application_name("kipper-poll");
        if !c.password.expose().is_empty() {
            pg.password(c.password.expose());
        }
        for (key, value) in &c.params {
            if key == "sslmode" && matches!(value.as_str(), "require" | "verify-ca" | "verify-full")
            {
                return Err(Error::config(
                    "KIPPER_SOURCE_URL",
                    format!("sslmode={value} is not supported yet; use sslmode=disable or prefer"),
                ));
            }
        }
        let (client, connection) = pg.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(message = "PostgreSQL connection ended.", %error);
            }
        });
        let query = &self.config.query;
        let columns = client
            .prepare(&statements::columns(query))
            .await
            .map_err(|e| {
                Error::config(
                    "KIPPER_QUERY",
                    format!("PostgreSQL refuses the query: {}", db_message(&e)),
                )
            })?;
        let user_columns: Vec<(String, Type)> = columns
            .columns()
            .iter()
            .map(|c| (c.name().to_string(), c.type_().clone()))
            .collect();
        let find = |name: &str, setting: &'static str| {
            user_columns
                .iter()
                .position(|(n, _)| n == name)
                .ok_or_else(|| {
                    let names: Vec<&str> = user_columns.iter().map(|(n, _)| n.as_str()).collect();
                    Error::config(
                        setting,
                        format!(
                            "{{{{{name}}}}} is not a column of KIPPER_QUERY (it has: {})",
                            names.join(", ")
                        ),
                    )
                })
        };
        let mut key_types = Vec::new();
        for key in &self.keys {
            key_types.push(user_columns[find(key, "KIPPER_MARK_DONE")?].1.clone());
        }
        let mut bound_at = Vec::new();
        for name in &self.bound.names {
            let setting = if self.keys.contains(name) {
                "KIPPER_MARK_DONE"
            } else {
                "KIPPER_MARK_FAILED"
            };
            bound_at.push(find(name, setting)?);
        }
        let claim_sql = if self.keys.is_empty() {
            statements::claim_rows(query, self.seed)
        } else {
            statements::claim_keys(query, &self.keys, self.seed)
        };
        let claim = client.prepare(&claim_sql).await?;
        let typed = |template: &Option<crate::source::sql::template::Template>,
                     setting: &'static str| {
            let client = &client;
            let user_columns = &user_columns;
            let template = template.clone();
            async move {
                let Some(t) = template else { return Ok(None) };
                let types: Vec<Type> = t
                    .params
                    .iter()
                    .map(|p| {
                        user_columns
                            .iter()
                            .find(|(n, _)| n == p)
                            .map(|(_, ty)| ty.clone())
                            .unwrap_or(Type::TEXT)
                    })
                    .collect();
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
        };
        let mark_done = typed(&self.config.mark_done, "KIPPER_MARK_DONE").await?;
        let mark_failed = typed(&self.config.mark_failed, "KIPPER_MARK_FAILED").await?;
        let unlock = client.prepare(statements::UNLOCK).await?;
        let names = user_columns
            .iter()
            .map(|(name, _)| {
                let mut out = BytesMut::new();
                write_str(&mut out, name);
                out.put_u8(b':');
                out.freeze()
            })
            .collect();
        Ok(Conn {
            client,
            claim,
            verify: HashMap::new(),
            key_types,
            mark_done,
            mark_failed,
            unlock,
            count: None,
            names,
            bound_at,
        })
    }

    /// The session, opened again after it was lost. A lost session took
    /// its locks with it, so the held set starts empty.
    async fn ensure(&mut self) -> Result<()> {
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            tracing::warn!(
                message = "PostgreSQL session lost; reconnecting. Its row locks are gone."
            );
            self.conn = None;
            self.held.clear();
        }
        if self.conn.is_none() {
            self.conn = Some(self.open().await?);
        }
        Ok(())
    }

    /// The open session; call [`Self::ensure`] first.
    fn session(conn: &mut Option<Conn>) -> Result<&mut Conn> {
        conn.as_mut().ok_or_else(|| Error::Source {
            kind: "postgres",
            message: "no session".into(),
        })
    }
}

/// Encodes rows (user columns + `kipper_key` last) as claimed events.
fn events(rows: &[tokio_postgres::Row], conn: &Conn) -> Result<Vec<Claimed<PgHandle>>> {
    {
        let mut buf = BytesMut::with_capacity(rows.len() * 128);
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            let n = row.len().saturating_sub(1);
            buf.put_u8(b'{');
            for (i, column) in row.columns()[..n].iter().enumerate() {
                if i > 0 {
                    buf.put_u8(b',');
                }
                buf.put_slice(&conn.names[i]);
                let Raw(raw) = row.try_get(i)?;
                json::write_value(&mut buf, column.type_(), raw);
            }
            buf.put_u8(b'}');
            let body = buf.split().freeze();
            let lock: i64 = row.try_get(n)?;
            let values = conn
                .bound_at
                .iter()
                .map(|&i| {
                    row.try_get::<_, Raw>(i)
                        .map(|Raw(raw)| raw.map(Bytes::copy_from_slice))
                })
                .collect::<Result<_, _>>()?;
            events.push(Claimed {
                id: format!("{:016x}", lock as u64),
                body,
                handle: PgHandle { lock, values },
            });
        }
        Ok(events)
    }
}

impl PostgresSource {
    /// Runs `statement` for each event, pipelined in one transaction; on a
    /// failure, once more one by one so a bad row does not sink the batch.
    /// Returns the locks of the rows whose statement failed.
    async fn run_batch(&mut self, which: Which, events: &[&PgHandle]) -> Result<Vec<i64>> {
        self.ensure().await?;
        let bound = &self.bound;
        let conn = Self::session(&mut self.conn)?;
        let (statement, columns) = match which {
            Which::Done => (conn.mark_done.as_ref(), &bound.mark_done),
            Which::Failed => (conn.mark_failed.as_ref(), &bound.mark_failed),
        };
        let Some(statement) = statement else {
            return Ok(Vec::new());
        };
        let params: Vec<Vec<RawParam>> = events
            .iter()
            .map(|h| {
                columns
                    .iter()
                    .map(|&i| RawParam(h.values[i].as_deref()))
                    .collect()
            })
            .collect();
        let refs: Vec<Vec<&(dyn ToSql + Sync)>> = params
            .iter()
            .map(|p| p.iter().map(|v| v as &(dyn ToSql + Sync)).collect())
            .collect();
        let client = &conn.client;
        let (begin, updates, commit) = futures::join!(
            client.batch_execute("BEGIN"),
            join_all(refs.iter().map(|p| client.execute(statement, p))),
            client.batch_execute("COMMIT"),
        );
        if begin.is_ok() && commit.is_ok() && updates.iter().all(Result::is_ok) {
            return Ok(Vec::new());
        }
        if client.is_closed() {
            return Err(commit.err().or(begin.err()).map_or_else(
                || Error::Source {
                    kind: "postgres",
                    message: "session lost during the batch".into(),
                },
                Error::from,
            ));
        }
        // COMMIT of a failed transaction is a ROLLBACK: nothing was marked.
        let _ = client.batch_execute("ROLLBACK").await;
        let single = join_all(refs.iter().map(|p| client.execute(statement, p))).await;
        let mut failed = Vec::new();
        for (result, handle) in single.iter().zip(events) {
            if let Err(e) = result {
                tracing::warn!(message = "Statement failed for a row; it stays locked (parked) until the sidecar exits.", statement = which.setting(), id = %format!("{:016x}", handle.lock as u64), error = %db_message(e));
                failed.push(handle.lock);
            }
        }
        Ok(failed)
    }

    async fn unlock(&mut self, locks: Vec<i64>) -> Result<()> {
        if locks.is_empty() {
            return Ok(());
        }
        for lock in &locks {
            self.held.remove(lock);
        }
        self.ensure().await?;
        let conn = Self::session(&mut self.conn)?;
        conn.client.execute(&conn.unlock, &[&locks]).await?;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
enum Which {
    Done,
    Failed,
}

impl Which {
    fn setting(self) -> &'static str {
        match self {
            Self::Done => "KIPPER_MARK_DONE",
            Self::Failed => "KIPPER_MARK_FAILED",
        }
    }
}

/// The server's message of a database error, else the error itself.
fn db_message(error: &tokio_postgres::Error) -> String {
    error
        .as_db_error()
        .map_or_else(|| error.to_string(), |db| db.message().to_string())
}

impl Source for PostgresSource {
    type Handle = PgHandle;

    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn claim(&mut self, max: usize) -> Result<Vec<Claimed<PgHandle>>> {
        let held: Vec<i64> = self.held.iter().copied().collect();
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let without_mark_done = self.keys.is_empty();
        let offset = self.offset;
        self.ensure().await?;
        let conn = Self::session(&mut self.conn)?;
        if without_mark_done {
            if self.pass_ended {
                // Report idle once so the pump waits the poll interval between passes.
                self.pass_ended = false;
                return Ok(Vec::new());
            }
            let rows = conn
                .client
                .query(&conn.claim, &[&held, &limit, &offset])
                .await?;
            let events = events(&rows, conn)?;
            self.pass_ended = rows.len() < max;
            self.offset = if self.pass_ended { 0 } else { offset + limit };
            self.held.extend(events.iter().map(|e| e.handle.lock));
            return Ok(events);
        }
        let keys = conn.client.query(&conn.claim, &[&held, &limit]).await?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let k = self.keys.len();
        let mut locked = Vec::with_capacity(keys.len());
        let mut values: Vec<Option<&[u8]>> = Vec::with_capacity(keys.len() * k);
        for row in &keys {
            locked.push(row.try_get::<_, i64>(k)?);
            for i in 0..k {
                let Raw(raw) = row.try_get(i)?;
                values.push(raw);
            }
        }
        self.held.extend(&locked);
        // Re-read through a fresh snapshot: a row another replica marked
        // done just before releasing it no longer matches.
        let padded = keys.len().next_power_of_two();
        if !conn.verify.contains_key(&padded) {
            let sql = statements::verify(&self.config.query, &self.keys, self.seed, padded);
            let types: Vec<Type> = (0..padded)
                .flat_map(|_| conn.key_types.iter().cloned())
                .collect();
            let statement = conn.client.prepare_typed(&sql, &types).await?;
            conn.verify.insert(padded, statement);
        }
        // Pad to the prepared size by repeating the last row's identity.
        let params: Vec<RawParam> = (0..padded * k)
            .map(|i| RawParam(values[(i / k).min(keys.len() - 1) * k + i % k]))
            .collect();
        let params: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let rows = match conn.verify.get(&padded) {
            Some(statement) => conn.client.query(statement, &params).await?,
            None => Vec::new(),
        };
        let mut events = events(&rows, conn)?;
        let claimed: HashSet<i64> = locked.iter().copied().collect();
        let mut seen = HashSet::with_capacity(events.len());
        events.retain(|e| claimed.contains(&e.handle.lock) && seen.insert(e.handle.lock));
        let mut gone = Vec::new();
        for (r, lock) in locked.iter().enumerate() {
            if seen.contains(lock) {
                continue;
            }
            if values[r * k..(r + 1) * k].iter().any(Option::is_none) {
                // NULL in an identity column: the row can be neither re-read
                // nor marked done; park it so it does not fill every claim.
                tracing::warn!(message = "A row has NULL in a mark-done column; it is skipped (parked) until the sidecar exits.", id = %format!("{:016x}", *lock as u64));
            } else {
                gone.push(*lock);
            }
        }
        self.unlock(gone).await?;
        Ok(events)
    }

    async fn ack(&mut self, events: &[Claimed<PgHandle>]) -> Result<()> {
        let handles: Vec<&PgHandle> = events.iter().map(|e| &e.handle).collect();
        let parked = self.run_batch(Which::Done, &handles).await?;
        let locks = events
            .iter()
            .map(|e| e.handle.lock)
            .filter(|l| !parked.contains(l))
            .collect();
        self.unlock(locks).await
    }

    async fn dead_letter(&mut self, events: &[DeadLetter<PgHandle>]) -> Result<()> {
        if self.config.mark_failed.is_none() {
            // Parked: the lock stays held, so no replica retries the row while we live.
            return Ok(());
        }
        let handles: Vec<&PgHandle> = events.iter().map(|e| &e.event.handle).collect();
        let parked = self.run_batch(Which::Failed, &handles).await?;
        let locks = handles
            .iter()
            .map(|h| h.lock)
            .filter(|l| !parked.contains(l))
            .collect();
        self.unlock(locks).await
    }

    async fn release(&mut self, events: &[Claimed<PgHandle>]) -> Result<()> {
        self.unlock(events.iter().map(|e| e.handle.lock).collect())
            .await
    }

    async fn backlog(&mut self) -> Result<Option<u64>> {
        self.ensure().await?;
        let conn = Self::session(&mut self.conn)?;
        if conn.count.is_none() {
            conn.count = Some(
                conn.client
                    .prepare(&statements::count(&self.config.query))
                    .await?,
            );
        }
        let Some(count) = &conn.count else {
            return Ok(None);
        };
        let n: i64 = conn.client.query_one(count, &[]).await?.try_get(0)?;
        Ok(u64::try_from(n).ok())
    }
}
