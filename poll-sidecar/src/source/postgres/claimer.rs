//! The PostgreSQL claim session: it holds the advisory locks and runs the
//! claim, the lease (pipelined with the re-read), unlock and relock; its
//! client is shared with the background settlement ([`PgUnlocker`]), which
//! releases a batch's locks right after its COMMIT while this session claims
//! the next batch (tokio-postgres pipelines requests of one client).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row, Statement};

use super::json::{self, Raw};
use super::writer::RawParam;
use super::{PgHandle, PgValues, session, statements};
use crate::Result;
use crate::source::Claimed;
use crate::source::sql::claim::{
    ClaimSession, DriverSettings, LockKey, Locked, Opened, Page, SqlEvent, Stamp, Unlock,
};

/// The claim session and its statements.
#[derive(Debug)]
pub struct Claimer {
    client: Arc<Client>,
    query: String,
    keys: Vec<String>,
    seed: i64,
    claim: Statement,
    /// Re-read statements by padded row count (powers of two).
    verify: HashMap<usize, Statement>,
    key_types: Vec<Type>,
    unlock: Statement,
    relock: Statement,
    lease: Statement,
    /// This process's lease holder id.
    holder: Arc<str>,
    count: Option<Statement>,
    /// `"name":` of each user column, JSON-escaped once.
    names: Vec<Bytes>,
    /// Index of each bound column among the user columns.
    bound_at: Vec<usize>,
}

impl Claimer {
    /// Connects and prepares the claim statements.
    pub async fn open(settings: &DriverSettings, seed: i64) -> Result<Opened<Self>> {
        let DriverSettings {
            config,
            keys,
            bound,
            holder,
        } = settings;
        let (client, fence) = session::connect_fenced(config).await?;
        let columns = session::columns(&client, &config.query).await?;
        let mut key_types = Vec::new();
        for key in keys {
            key_types.push(
                columns[session::find(&columns, key, "KIPPER_MARK_DONE")?]
                    .1
                    .clone(),
            );
        }
        let bound_at =
            bound.positions(keys, |name, setting| session::find(&columns, name, setting))?;
        // The claim statements name it.
        super::keeper::lease_table(&client, config).await?;
        let claim_sql = if keys.is_empty() {
            statements::claim_rows(&config.query, seed)
        } else {
            statements::claim_keys(&config.query, keys, seed)
        };
        let claim = client.prepare(&claim_sql).await?;
        let unlock = client.prepare(statements::UNLOCK).await?;
        let relock = client.prepare(statements::RELOCK).await?;
        let lease = client.prepare(&statements::lease(config.lease_ttl)).await?;
        let uptime = session::uptime(&client).await?;
        let session = Self {
            client: Arc::new(client),
            query: config.query.clone(),
            keys: keys.to_vec(),
            seed,
            claim,
            verify: HashMap::new(),
            key_types,
            unlock,
            relock,
            lease,
            holder: holder.clone(),
            count: None,
            names: session::json_names(&columns),
            bound_at,
        };
        Ok(Opened {
            session,
            fence,
            uptime,
        })
    }

    /// Encodes rows (user columns, then `kipper_key`) as claimed events.
    fn events(&self, rows: &[Row], stamp: &Stamp) -> Result<Vec<SqlEvent<PgValues>>> {
        let mut buf = BytesMut::with_capacity(rows.len() * 128);
        let mut events = Vec::with_capacity(rows.len());
        let n = self.names.len();
        for row in rows {
            buf.put_u8(b'{');
            for (i, column) in row.columns()[..n].iter().enumerate() {
                if i > 0 {
                    buf.put_u8(b',');
                }
                buf.put_slice(&self.names[i]);
                let Raw(raw) = row.try_get(i)?;
                json::write_value(&mut buf, column.type_(), raw);
            }
            buf.put_u8(b'}');
            let body = buf.split().freeze();
            let key = LockKey::from_i64(row.try_get(n)?);
            let values = self
                .bound_at
                .iter()
                .map(|&i| {
                    row.try_get::<_, Raw>(i)
                        .map(|Raw(raw)| raw.map(Bytes::copy_from_slice))
                })
                .collect::<Result<_, _>>()?;
            events.push(Claimed {
                id: key.hex64(),
                body,
                handle: PgHandle {
                    key,
                    values,
                    stamp: stamp.clone(),
                },
            });
        }
        Ok(events)
    }
}

fn keys_param(keys: impl Iterator<Item = LockKey>) -> Vec<i64> {
    keys.map(LockKey::as_i64).collect()
}

impl Claimer {
    /// The re-read statement for `rows` rows, padded to a power of two
    /// (prepared on first use).
    async fn verify_for(&mut self, rows: usize) -> Result<usize> {
        let padded = rows.next_power_of_two();
        if !self.verify.contains_key(&padded) {
            let sql = statements::verify(&self.query, &self.keys, self.seed, padded);
            let types: Vec<Type> = (0..padded)
                .flat_map(|_| self.key_types.iter().cloned())
                .collect();
            let statement = self.client.prepare_typed(&sql, &types).await?;
            self.verify.insert(padded, statement);
        }
        Ok(padded)
    }

    /// The re-read of `rows` with the statement `verify_for` prepared.
    async fn reread_padded(
        &self,
        rows: &[Row],
        padded: usize,
        stamp: &Stamp,
    ) -> Result<Vec<SqlEvent<PgValues>>> {
        let k = self.keys.len();
        // Pad to the prepared size by repeating the last row's identity.
        let mut params: Vec<RawParam> = Vec::with_capacity(padded * k);
        for i in 0..padded * k {
            let Raw(raw) = rows[(i / k).min(rows.len() - 1)].try_get(i % k)?;
            params.push(RawParam(raw));
        }
        let params: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let read = match self.verify.get(&padded) {
            Some(statement) => self.client.query(statement, &params).await?,
            None => Vec::new(),
        };
        self.events(&read, stamp)
    }

    /// The lease statement for `keys`.
    async fn lease_keys(&self, keys: &[LockKey]) -> Result<Vec<LockKey>> {
        let keys = keys_param(keys.iter().copied());
        let rows = self
            .client
            .query(&self.lease, &[&keys, &&*self.holder])
            .await?;
        rows.iter()
            .map(|row| Ok(LockKey::from_i64(row.try_get(0)?)))
            .collect()
    }
}

impl ClaimSession for Claimer {
    type Values = PgValues;
    type Rows = Vec<Row>;
    type Unlocker = PgUnlocker;

    async fn claim(&mut self, held: &HashSet<LockKey>, limit: usize) -> Result<Locked<Vec<Row>>> {
        // The claim statement tests `$1` before locking, so a row this session
        // holds is never locked twice (advisory locks count).
        let exclude = keys_param(held.iter().copied());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.client.query(&self.claim, &[&exclude, &limit]).await?;
        let k = self.keys.len();
        let mut keys = Vec::with_capacity(rows.len());
        let mut null_identity = Vec::new();
        for row in &rows {
            let key = LockKey::from_i64(row.try_get(k)?);
            keys.push(key);
            for i in 0..k {
                let Raw(raw) = row.try_get(i)?;
                if raw.is_none() {
                    null_identity.push(key);
                    break;
                }
            }
        }
        Ok(Locked {
            keys,
            null_identity,
            rows,
        })
    }

    async fn reread(
        &mut self,
        locked: &Locked<Vec<Row>>,
        stamp: &Stamp,
    ) -> Result<Vec<SqlEvent<PgValues>>> {
        if locked.rows.is_empty() {
            return Ok(Vec::new());
        }
        let padded = self.verify_for(locked.rows.len()).await?;
        self.reread_padded(&locked.rows, padded, stamp).await
    }

    async fn lease(&mut self, keys: &[LockKey]) -> Result<Vec<LockKey>> {
        self.lease_keys(keys).await
    }

    async fn lease_and_reread(
        &mut self,
        keys: &[LockKey],
        locked: &Locked<Vec<Row>>,
        stamp: &Stamp,
    ) -> Result<(Vec<LockKey>, Vec<SqlEvent<PgValues>>)> {
        if locked.rows.is_empty() {
            return Ok((self.lease_keys(keys).await?, Vec::new()));
        }
        let padded = self.verify_for(locked.rows.len()).await?;
        // Both requests go out back to back on the one client: one round trip.
        let (leased, events) = tokio::join!(
            self.lease_keys(keys),
            self.reread_padded(&locked.rows, padded, stamp)
        );
        Ok((leased?, events?))
    }

    async fn claim_page(
        &mut self,
        held: &HashSet<LockKey>,
        limit: usize,
        offset: u64,
        stamp: &Stamp,
    ) -> Result<Page<PgValues>> {
        let exclude = keys_param(held.iter().copied());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let rows = self
            .client
            .query(&self.claim, &[&exclude, &limit, &offset])
            .await?;
        let returned = rows.len();
        // User columns, kipper_key, then kipper_got: whether this session took it.
        let got = self.names.len() + 1;
        let mut taken = Vec::with_capacity(rows.len());
        for row in rows {
            if row.try_get::<_, bool>(got)? {
                taken.push(row);
            }
        }
        Ok(Page {
            returned,
            events: self.events(&taken, stamp)?,
        })
    }

    async fn unlock(&mut self, keys: &[LockKey]) -> Result<()> {
        let keys = keys_param(keys.iter().copied());
        self.client
            .execute(&self.unlock, &[&keys, &&*self.holder])
            .await?;
        Ok(())
    }

    async fn relock(&mut self, keys: &[LockKey]) -> Result<HashSet<LockKey>> {
        let keys = keys_param(keys.iter().copied());
        let mut got = HashSet::with_capacity(keys.len());
        for row in self.client.query(&self.relock, &[&keys]).await? {
            got.insert(LockKey::from_i64(row.try_get(0)?));
        }
        Ok(got)
    }

    async fn count(&mut self) -> Result<Option<u64>> {
        if self.count.is_none() {
            let sql = statements::count(&self.query);
            self.count = Some(self.client.prepare(&sql).await?);
        }
        let Some(count) = &self.count else {
            return Ok(None);
        };
        let n: i64 = self.client.query_one(count, &[]).await?.try_get(0)?;
        Ok(u64::try_from(n).ok())
    }

    fn unlocker(&self) -> Option<PgUnlocker> {
        Some(PgUnlocker {
            client: self.client.clone(),
            unlock: self.unlock.clone(),
            holder: self.holder.clone(),
        })
    }

    fn event_id(key: LockKey) -> String {
        key.hex64()
    }
}

/// Releases locks of the claim session from the background settlement.
#[derive(Debug)]
pub struct PgUnlocker {
    client: Arc<Client>,
    unlock: Statement,
    holder: Arc<str>,
}

impl Unlock for PgUnlocker {
    async fn unlock(&self, keys: &[LockKey]) -> Result<()> {
        let keys = keys_param(keys.iter().copied());
        self.client
            .execute(&self.unlock, &[&keys, &&*self.holder])
            .await?;
        Ok(())
    }
}
