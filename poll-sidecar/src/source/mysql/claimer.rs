//! The MySQL / MariaDB claim session's part of the claim engine: claim,
//! lease, re-read, unlock, relock and count on the claim connection, and the
//! rows it reads turned into events. The connection is `&mut` (mysql_async), so
//! it cannot be shared with the background settlement: the engine releases
//! a batch's locks itself at its next call.
//!
//! A lock is named `kp<seed>:` + the MD5 of the row's identity; the engine
//! keeps only the digest ([`LockKey`]) and [`lock_name`] spells the name
//! again when it is sent.

use std::collections::HashSet;
use std::convert::Infallible;

use bytes::{BufMut, BytesMut};
use mysql_async::prelude::Queryable;
use mysql_async::{Row, Value};

use super::json;
use super::session::{Session, cached};
use super::statements;
use super::{MyHandle, MyValues};
use crate::source::Claimed;
use crate::source::sql::claim::{ClaimSession, LockKey, Locked, Page, SqlEvent, Stamp};
use crate::{Error, Result};

/// Locks released (or taken again) per statement.
const UNLOCK_CHUNK: usize = 256;

/// Whether the row's `kipper_got` column (at `index`) says the lock was taken.
fn taken(row: &Row, index: usize) -> bool {
    matches!(row.as_ref(index), Some(Value::Int(1) | Value::UInt(1)))
        || matches!(row.as_ref(index), Some(Value::Bytes(b)) if b.as_slice() == b"1")
}

/// The lock of a row from its `kipper_key` column (at `index`).
fn lock_key(row: &Row, index: usize) -> Result<LockKey> {
    let name = match row.as_ref(index) {
        Some(Value::Bytes(name)) => String::from_utf8_lossy(name),
        _ => "".into(),
    };
    name.rsplit(':')
        .next()
        .and_then(LockKey::from_hex)
        .ok_or_else(|| Error::Source {
            kind: "mysql",
            message: format!("the lock name {name:?} is not `kp<seed>:<md5>`"),
        })
}

/// The `GET_LOCK` name of `key` for a query with `seed`.
fn lock_name(seed: u64, key: LockKey) -> Value {
    Value::Bytes(format!("kp{seed:x}:{}", key.hex128()).into_bytes())
}

/// The parameters of a statement over `chunk` padded to `padded` keys
/// (repeating the last one: taking, renewing or ending a lease twice, or
/// releasing a lock no longer held, changes nothing), after `before`.
pub fn padded_names(seed: u64, chunk: &[LockKey], padded: usize, before: &[Value]) -> Vec<Value> {
    before
        .iter()
        .cloned()
        .chain((0..padded).map(|i| lock_name(seed, chunk[i.min(chunk.len() - 1)])))
        .collect()
}

/// Whether a row has NULL in one of its first `k` (identity) columns.
fn null_identity(row: &Row, k: usize) -> bool {
    (0..k).any(|i| matches!(row.as_ref(i), None | Some(Value::NULL)))
}

impl Session {
    /// Encodes rows (user columns + `kipper_key` last) as claimed events.
    fn events(&self, rows: &[Row], stamp: &Stamp) -> Result<Vec<SqlEvent<MyValues>>> {
        let mut buf = BytesMut::with_capacity(rows.len() * 128);
        let mut events = Vec::with_capacity(rows.len());
        let n = self.names.len();
        for row in rows {
            // User columns, then kipper_key (and, from a claim, kipper_got).
            buf.put_u8(b'{');
            for i in 0..n {
                if i > 0 {
                    buf.put_u8(b',');
                }
                buf.put_slice(&self.names[i]);
                json::write_value(
                    &mut buf,
                    self.shapes[i],
                    row.as_ref(i).unwrap_or(&Value::NULL),
                );
            }
            buf.put_u8(b'}');
            let body = buf.split().freeze();
            let key = lock_key(row, n)?;
            let values = self
                .bound_at
                .iter()
                .map(|&i| row.as_ref(i).cloned().unwrap_or(Value::NULL))
                .collect();
            events.push(Claimed {
                id: key.hex128(),
                body,
                handle: MyHandle {
                    key,
                    values,
                    stamp: stamp.clone(),
                },
            });
        }
        Ok(events)
    }
}

impl ClaimSession for Session {
    type Values = MyValues;
    type Rows = Vec<Row>;
    type Unlocker = Infallible;

    async fn claim(&mut self, _: &HashSet<LockKey>, limit: usize) -> Result<Locked<Vec<Row>>> {
        // `IS_USED_LOCK(..) IS NULL` skips the rows this session holds; those
        // a lost session held are locked now, and the engine keeps them apart.
        let rows: Vec<Row> = self.conn.exec(&self.claim, (limit as u64,)).await?;
        let k = self.keys.len();
        // Rows whose lock another session took first are not ours.
        let rows: Vec<Row> = rows.into_iter().filter(|r| taken(r, k + 1)).collect();
        let mut keys = Vec::with_capacity(rows.len());
        let mut nulls = Vec::new();
        for row in &rows {
            let key = lock_key(row, k)?;
            keys.push(key);
            if null_identity(row, k) {
                nulls.push(key);
            }
        }
        Ok(Locked {
            keys,
            null_identity: nulls,
            rows,
        })
    }

    async fn reread(
        &mut self,
        locked: &Locked<Vec<Row>>,
        stamp: &Stamp,
    ) -> Result<Vec<SqlEvent<MyValues>>> {
        let (rows, k) = (&locked.rows, self.keys.len());
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let padded = rows.len().next_power_of_two();
        if !self.verify.contains_key(&padded) {
            let sql = statements::verify(&self.query, &self.keys, self.seed, padded);
            let statement = self.conn.prep(sql).await?;
            self.verify.insert(padded, statement);
        }
        // Pad to the prepared size by repeating the last row's identity.
        let params: Vec<Value> = (0..padded * k)
            .map(|i| {
                rows[(i / k).min(rows.len() - 1)]
                    .as_ref(i % k)
                    .cloned()
                    .unwrap_or(Value::NULL)
            })
            .collect();
        let read: Vec<Row> = match self.verify.get(&padded) {
            Some(statement) => self.conn.exec(statement, params).await?,
            None => Vec::new(),
        };
        self.events(&read, stamp)
    }

    async fn claim_page(
        &mut self,
        _: &HashSet<LockKey>,
        limit: usize,
        offset: u64,
        stamp: &Stamp,
    ) -> Result<Page<MyValues>> {
        let rows: Vec<Row> = self.conn.exec(&self.claim, (limit as u64, offset)).await?;
        let returned = rows.len();
        let got = self.names.len() + 1;
        let rows: Vec<Row> = rows.into_iter().filter(|r| taken(r, got)).collect();
        Ok(Page {
            returned,
            events: self.events(&rows, stamp)?,
        })
    }

    async fn lease(&mut self, keys: &[LockKey]) -> Result<Vec<LockKey>> {
        let holder = Value::from(&*self.holder);
        let ttl = self.lease_ttl;
        let mut leased = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(UNLOCK_CHUNK) {
            let padded = chunk.len().next_power_of_two();
            let take = cached(&mut self.conn, &mut self.lease, padded, |n| {
                statements::lease(n, ttl)
            })
            .await?;
            let params: Vec<Value> = padded_names(self.seed, chunk, padded, &[])
                .into_iter()
                .flat_map(|name| [name, holder.clone()])
                .collect();
            self.conn.exec_drop(&take, params).await?;
            // No RETURNING for an upsert: read back which are this holder's.
            let read = cached(&mut self.conn, &mut self.leased, padded, statements::leased).await?;
            let params = padded_names(self.seed, chunk, padded, std::slice::from_ref(&holder));
            let rows: Vec<Row> = self.conn.exec(&read, params).await?;
            for row in &rows {
                leased.push(lock_key(row, 0)?);
            }
        }
        Ok(leased)
    }

    async fn unlock(&mut self, keys: &[LockKey]) -> Result<()> {
        let holder = Value::from(&*self.holder);
        for chunk in keys.chunks(UNLOCK_CHUNK) {
            let padded = chunk.len().next_power_of_two();
            // The lease first: a lease without its lock, or the other way
            // round, keeps other replicas out either way.
            let end = cached(
                &mut self.conn,
                &mut self.end_leases,
                padded,
                statements::end_leases,
            )
            .await?;
            let params = padded_names(self.seed, chunk, padded, std::slice::from_ref(&holder));
            self.conn.exec_drop(&end, params).await?;
            let unlock =
                cached(&mut self.conn, &mut self.unlock, padded, statements::unlock).await?;
            self.conn
                .exec_drop(&unlock, padded_names(self.seed, chunk, padded, &[]))
                .await?;
        }
        Ok(())
    }

    async fn relock(&mut self, keys: &[LockKey]) -> Result<HashSet<LockKey>> {
        let mut got = HashSet::with_capacity(keys.len());
        for chunk in keys.chunks(UNLOCK_CHUNK) {
            let params: Vec<Value> = chunk.iter().map(|&key| lock_name(self.seed, key)).collect();
            let row: Option<Row> = self
                .conn
                .exec_first(statements::relock(chunk.len()), params)
                .await?;
            if let Some(row) = row {
                got.extend(
                    chunk
                        .iter()
                        .enumerate()
                        .filter(|&(i, _)| taken(&row, i))
                        .map(|(_, &key)| key),
                );
            }
        }
        Ok(got)
    }

    async fn count(&mut self) -> Result<Option<u64>> {
        if self.count.is_none() {
            self.count = Some(self.conn.prep(statements::count(&self.query)).await?);
        }
        let Some(count) = self.count.clone() else {
            return Ok(None);
        };
        Ok(self.conn.exec_first::<u64, _, _>(&count, ()).await?)
    }

    fn unlocker(&self) -> Option<Infallible> {
        None
    }

    fn event_id(key: LockKey) -> String {
        key.hex128()
    }
}
