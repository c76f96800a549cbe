//! The writer connection: runs the mark-dones (or mark-faileds) of a batch
//! in one transaction (one bulk execution on MariaDB) on a connection of its
//! own, in the background, so the claim connection claims the next batch
//! meanwhile. A failing row is found by running the batch once more row by
//! row, so it does not sink the others.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Statement, Value};

use super::session::server_message;
use super::{MyHandle, MyValues};
use crate::config::SqlConfig;
use crate::source::sql::BoundColumns;
use crate::source::sql::claim::{Which, WriterSession, Written};
use crate::{Error, Result};

/// The writer connection and its two statements.
#[derive(Debug)]
pub struct Writer {
    conn: Conn,
    mark_done: Option<Statement>,
    mark_failed: Option<Statement>,
    bound: BoundColumns,
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
}

impl WriterSession for Writer {
    type Values = MyValues;

    async fn run(mut self, which: Which, rows: &[MyHandle]) -> Written<Self> {
        let (statement, columns) = match which {
            Which::Done => (self.mark_done.clone(), &self.bound.mark_done),
            Which::Failed => (self.mark_failed.clone(), &self.bound.mark_failed),
        };
        let Some(statement) = statement else {
            return Written {
                writer: Some(self),
                parked: Vec::new(),
                result: Ok(()),
            };
        };
        let params: Vec<Vec<Value>> = rows
            .iter()
            .map(|r| columns.iter().map(|&i| r.values[i].clone()).collect())
            .collect();
        // The connection broke: nothing is known to be written; every row is
        // released so it comes back.
        let broke = |e| Written {
            writer: None,
            parked: Vec::new(),
            result: Err(Error::Mysql(e)),
        };
        let conn = &mut self.conn;
        let batch = async {
            conn.query_drop("START TRANSACTION").await?;
            conn.exec_batch(&statement, params.iter().cloned()).await?;
            conn.query_drop("COMMIT").await
        };
        match batch.await {
            Ok(()) => {
                return Written {
                    writer: Some(self),
                    parked: Vec::new(),
                    result: Ok(()),
                };
            }
            Err(mysql_async::Error::Server(_)) => {}
            Err(e) => return broke(e),
        }
        let _ = conn.query_drop("ROLLBACK").await;
        let mut parked = Vec::new();
        for (p, row) in params.into_iter().zip(rows) {
            match conn.exec_drop(&statement, p).await {
                Ok(()) => {}
                Err(e @ mysql_async::Error::Server(_)) => {
                    tracing::warn!(
                        message = "Statement failed for a row; it stays locked (parked) until the sidecar exits.",
                        statement = which.setting(),
                        id = %row.key.hex128(),
                        error = %server_message(&e)
                    );
                    parked.push(row.key);
                }
                Err(e) => return broke(e),
            }
        }
        Written {
            writer: Some(self),
            parked,
            result: Ok(()),
        }
    }

    /// mysql_async notices a broken connection only when it is used; a
    /// batch that finds it broken hands no writer back.
    fn is_lost(&self) -> bool {
        false
    }
}
