//! The writer connection: runs the mark-dones (or mark-faileds) of a batch
//! in one transaction (one bulk execution on MariaDB) on a connection of its
//! own, in the background, so the claim connection claims the next batch
//! meanwhile. A failing row is found by running the batch once more row by
//! row, so it does not sink the others.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Statement, Value};

use super::MyHandle;
use super::session::{idempotency_id, server_message};
use crate::config::SqlConfig;
use crate::source::sql::BoundColumns;
use crate::{Error, Result};

/// Which statement a batch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Done,
    Failed,
}

/// The writer connection and its two statements.
#[derive(Debug)]
pub struct Writer {
    conn: Conn,
    mark_done: Option<Statement>,
    mark_failed: Option<Statement>,
    bound: BoundColumns,
}

/// How a batch ended: the writer back (unless its connection broke), the
/// locks to release (all but the parked rows), and the error to report.
#[derive(Debug)]
pub struct Settled {
    pub writer: Option<Writer>,
    pub unlock: Vec<String>,
    pub result: Result<()>,
}

impl Writer {
    /// Opens the writer connection and prepares the statements.
    pub async fn open(config: &SqlConfig, bound: BoundColumns) -> Result<Self> {
        let mut conn = super::session::connect(config).await?;
        // A statement the database refuses stops the start with one line.
        let mut prepare = async |t: Option<&crate::source::sql::template::Template>,
                                 setting: &'static str| match t {
            None => Ok(None),
            Some(t) => conn.prep(t.sql.as_str()).await.map(Some).map_err(|e| {
                Error::config(
                    setting,
                    format!("the database refuses the statement: {}", server_message(&e)),
                )
            }),
        };
        let mark_done = prepare(config.mark_done.as_ref(), "KIPPER_MARK_DONE").await?;
        let mark_failed = prepare(config.mark_failed.as_ref(), "KIPPER_MARK_FAILED").await?;
        Ok(Self {
            conn,
            mark_done,
            mark_failed,
            bound,
        })
    }

    /// Runs the statement for every row and says what to release.
    pub async fn run(mut self, which: Which, rows: Vec<MyHandle>) -> Settled {
        let all = || rows.iter().map(|r| r.lock.clone()).collect::<Vec<_>>();
        let (statement, columns) = match which {
            Which::Done => (self.mark_done.clone(), &self.bound.mark_done),
            Which::Failed => (self.mark_failed.clone(), &self.bound.mark_failed),
        };
        let Some(statement) = statement else {
            return Settled {
                unlock: all(),
                writer: Some(self),
                result: Ok(()),
            };
        };
        let params: Vec<Vec<Value>> = rows
            .iter()
            .map(|r| columns.iter().map(|&i| r.values[i].clone()).collect())
            .collect();
        let conn = &mut self.conn;
        let batch = async {
            conn.query_drop("START TRANSACTION").await?;
            conn.exec_batch(&statement, params.iter().cloned()).await?;
            conn.query_drop("COMMIT").await
        };
        match batch.await {
            Ok(()) => {
                return Settled {
                    unlock: all(),
                    writer: Some(self),
                    result: Ok(()),
                };
            }
            Err(mysql_async::Error::Server(_)) => {}
            // The connection broke: nothing is known to be written; release
            // every row so it comes back.
            Err(e) => {
                return Settled {
                    unlock: all(),
                    writer: None,
                    result: Err(Error::Mysql(e)),
                };
            }
        }
        let _ = conn.query_drop("ROLLBACK").await;
        let mut unlock = Vec::with_capacity(rows.len());
        for (p, row) in params.into_iter().zip(&rows) {
            match conn.exec_drop(&statement, p).await {
                Ok(()) => unlock.push(row.lock.clone()),
                Err(e @ mysql_async::Error::Server(_)) => {
                    let setting = if which == Which::Failed {
                        "KIPPER_MARK_FAILED"
                    } else {
                        "KIPPER_MARK_DONE"
                    };
                    tracing::warn!(
                        message = "Statement failed for a row; it stays locked (parked) until the sidecar exits.",
                        statement = setting,
                        id = %idempotency_id(&row.lock),
                        error = %server_message(&e)
                    );
                }
                Err(e) => {
                    return Settled {
                        unlock: all(),
                        writer: None,
                        result: Err(Error::Mysql(e)),
                    };
                }
            }
        }
        Settled {
            unlock,
            writer: Some(self),
            result: Ok(()),
        }
    }
}
