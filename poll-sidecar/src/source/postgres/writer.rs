//! The writer session: runs the mark-dones (or mark-faileds) of a batch
//! pipelined in one transaction, on a session of its own so the claim
//! session can claim the next batch meanwhile (the engine moves it into the
//! background settlement and takes it back). A failing row is found by
//! running the batch once more row by row, so it does not sink the others.

use bytes::{BufMut, BytesMut};
use futures::future::join_all;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, Statement};

use super::session::{self, db_message};
use super::{PgHandle, PgValues};
use crate::config::SqlConfig;
use crate::source::sql::BoundColumns;
use crate::source::sql::claim::{LockKey, Which, WriterSession, Written};
use crate::{Error, Result};

/// A column value bound back in the binary format it was read in, so a
/// parameter has exactly the row's value whatever its type.
#[derive(Debug)]
pub struct RawParam<'a>(pub Option<&'a [u8]>);

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

/// The writer session and its two statements.
#[derive(Debug)]
pub struct Writer {
    client: Client,
    mark_done: Option<Statement>,
    mark_failed: Option<Statement>,
    bound: BoundColumns,
}

impl Writer {
    /// Opens the writer session and prepares the statements.
    pub async fn open(config: &SqlConfig, bound: BoundColumns) -> Result<Self> {
        let client = session::connect(config).await?;
        let columns = session::columns(&client, &config.query).await?;
        let mark_done = session::prepare_template(
            &client,
            config.mark_done.as_ref(),
            &columns,
            "KIPPER_MARK_DONE",
        )
        .await?;
        let mark_failed = session::prepare_template(
            &client,
            config.mark_failed.as_ref(),
            &columns,
            "KIPPER_MARK_FAILED",
        )
        .await?;
        Ok(Self {
            client,
            mark_done,
            mark_failed,
            bound,
        })
    }

    /// Runs the statement for every row; returns the keys of the rows whose
    /// statement failed on its own (parked).
    async fn write(&self, which: Which, rows: &[PgHandle]) -> Result<Vec<LockKey>> {
        let (statement, columns) = match which {
            Which::Done => (self.mark_done.as_ref(), &self.bound.mark_done),
            Which::Failed => (self.mark_failed.as_ref(), &self.bound.mark_failed),
        };
        let Some(statement) = statement else {
            return Ok(Vec::new());
        };
        let params: Vec<Vec<RawParam>> = rows
            .iter()
            .map(|r| {
                columns
                    .iter()
                    .map(|&i| RawParam(r.values[i].as_deref()))
                    .collect()
            })
            .collect();
        let refs: Vec<Vec<&(dyn ToSql + Sync)>> = params
            .iter()
            .map(|p| p.iter().map(|v| v as &(dyn ToSql + Sync)).collect())
            .collect();
        let client = &self.client;
        // One round trip: the statements are sent back to back and answered in order.
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
                    message: "writer session lost during a batch".into(),
                },
                Error::from,
            ));
        }
        // COMMIT of a failed transaction is a ROLLBACK: nothing was written.
        let _ = client.batch_execute("ROLLBACK").await;
        let single = join_all(refs.iter().map(|p| client.execute(statement, p))).await;
        let mut parked = Vec::new();
        for (result, row) in single.iter().zip(rows) {
            if let Err(e) = result {
                tracing::warn!(
                    message = "Statement failed for a row; it stays locked (parked) until the sidecar exits.",
                    statement = which.setting(),
                    id = %row.key.hex64(),
                    error = %db_message(e)
                );
                parked.push(row.key);
            }
        }
        Ok(parked)
    }
}

impl WriterSession for Writer {
    type Values = PgValues;

    async fn run(self, which: Which, rows: &[PgHandle]) -> Written<Self> {
        let (parked, result) = match self.write(which, rows).await {
            Ok(parked) => (parked, Ok(())),
            // Nothing was written: every row is released and comes back.
            Err(error) => (Vec::new(), Err(error)),
        };
        Written {
            writer: (!self.client.is_closed()).then_some(self),
            parked,
            result,
        }
    }

    fn is_lost(&self) -> bool {
        self.client.is_closed()
    }
}
