//! The PostgreSQL trigger (tokio-postgres): claims rows of the user's SELECT
//! with session-level advisory locks, re-reads them after locking, and runs
//! the mark-dones of a batch pipelined in one transaction. The design and its
//! reasons are in [`crate::source::sql`] and ARCHITECTURE.md.
//!
//! Two sessions: the claim session holds the locks (claim, re-read, unlock);
//! the [`writer`] session runs the mark-dones. An acknowledgement runs in the
//! background while the pump claims the next batch; the next
//! acknowledgement (or [`Source::flush`]) waits for it, and its locks are
//! released on the claim session only after its COMMIT.
//!
//! Across a restart of the server (see [`crate::source::sql`]): each claim
//! session is an *epoch* with a fence token cancelled when its connection
//! ends; rows of an older epoch get no further attempt, are locked again
//! before their mark-done, and a new session claims nothing until the server
//! has been up for the quiet period.

mod json;
mod session;
mod statements;
mod writer;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::task::JoinHandle;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Statement};
use tokio_util::sync::CancellationToken;

pub use json::{Raw, write_value};
use writer::{RawParam, Which, Writer};

use super::sql::{BoundColumns, ClaimFrom, NO_MARK_DONE, NO_MARK_FAILED, fnv64, key_columns};
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
    /// The claim session (epoch) that locked it.
    epoch: u64,
    /// Cancelled when that session ends.
    fence: CancellationToken,
}

/// Locks the claim session holds: events in flight and parked rows. Shared
/// with the background acknowledgement, which removes a lock once released.
type Held = Arc<Mutex<HashSet<i64>>>;

/// The PostgreSQL source.
#[derive(Debug)]
pub struct PostgresSource {
    config: SqlConfig,
    seed: i64,
    keys: Vec<String>,
    bound: BoundColumns,
    claimer: Option<Claimer>,
    writer: Option<Arc<Writer>>,
    held: Held,
    /// The acknowledgement running in the background, if any.
    pending: Option<JoinHandle<Result<()>>>,
    /// No mark-done: where the current pass over the query stands.
    offset: i64,
    /// No mark-done: the last page of a pass was handed out.
    pass_ended: bool,
    /// Claim sessions opened so far: the epoch of the current one.
    epoch: u64,
    /// Locks of rows handed to the pump and not yet given back (ack,
    /// dead-letter, release): what may still have a request running.
    outstanding: HashSet<i64>,
}

/// The claim session and its statements.
#[derive(Debug)]
struct Claimer {
    client: Arc<Client>,
    claim: Statement,
    /// Re-read statements by padded row count (powers of two).
    verify: HashMap<usize, Statement>,
    key_types: Vec<Type>,
    unlock: Statement,
    count: Option<Statement>,
    /// `"name":` of each user column, JSON-escaped once.
    names: Vec<Bytes>,
    /// Index of each bound column among the user columns.
    bound_at: Vec<usize>,
    relock: Statement,
    epoch: u64,
    /// Cancelled when the session ends: the fence of its rows.
    fence: CancellationToken,
    /// Not before the server has been up for the quiet period.
    claim_from: ClaimFrom,
}

fn held(held: &Held) -> std::sync::MutexGuard<'_, HashSet<i64>> {
    // The set stays consistent even if a holder panicked mid-update.
    held.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PostgresSource {
    /// Connects both sessions and prepares every statement, so a query or
    /// placeholder that does not fit fails here, at start, with one line.
    pub async fn connect(config: &SqlConfig) -> Result<Self> {
        let mut source = Self {
            seed: i64::from_ne_bytes(fnv64(&config.query).to_ne_bytes()) & 0x7fff_ffff_ffff,
            bound: BoundColumns::new(config.mark_done.as_ref(), config.mark_failed.as_ref()),
            keys: key_columns(config.mark_done.as_ref()),
            config: config.clone(),
            claimer: None,
            writer: None,
            held: Arc::default(),
            pending: None,
            offset: 0,
            pass_ended: false,
            epoch: 0,
            outstanding: HashSet::new(),
        };
        source.ensure().await?;
        // Warned only once the statements are known to fit: a start refused
        // for bad configuration prints its one line and nothing else.
        if config.mark_done.is_none() {
            tracing::warn!(message = NO_MARK_DONE);
        } else if config.mark_failed.is_none() {
            tracing::warn!(message = NO_MARK_FAILED);
        }
        Ok(source)
    }

    async fn open_claimer(&self, epoch: u64) -> Result<Claimer> {
        let (client, fence) = session::connect_fenced(&self.config).await?;
        let columns = session::columns(&client, &self.config.query).await?;
        let mut key_types = Vec::new();
        for key in &self.keys {
            key_types.push(
                columns[session::find(&columns, key, "KIPPER_MARK_DONE")?]
                    .1
                    .clone(),
            );
        }
        let mut bound_at = Vec::new();
        for name in &self.bound.names {
            let setting = if self.keys.contains(name) {
                "KIPPER_MARK_DONE"
            } else {
                "KIPPER_MARK_FAILED"
            };
            bound_at.push(session::find(&columns, name, setting)?);
        }
        let claim_sql = if self.keys.is_empty() {
            statements::claim_rows(&self.config.query, self.seed)
        } else {
            statements::claim_keys(&self.config.query, &self.keys, self.seed)
        };
        let claim = client.prepare(&claim_sql).await?;
        let unlock = client.prepare(statements::UNLOCK).await?;
        let relock = client.prepare(statements::RELOCK).await?;
        let uptime = session::uptime(&client).await?;
        Ok(Claimer {
            relock,
            epoch,
            fence,
            claim_from: ClaimFrom::new(uptime, self.config.restart_quiet),
            names: session::json_names(&columns),
            client: Arc::new(client),
            claim,
            verify: HashMap::new(),
            key_types,
            unlock,
            count: None,
            bound_at,
        })
    }

    /// Both sessions, opened again after one was lost. A lost claim session
    /// took its locks with it: its fence is cancelled (no further attempt of
    /// its rows), and its rows stay in the held set, so this replica does not
    /// claim them again while a request of theirs may still run.
    async fn ensure(&mut self) -> Result<()> {
        if self
            .claimer
            .as_ref()
            .is_some_and(|c| c.client.is_closed() || c.fence.is_cancelled())
        {
            tracing::warn!(
                message = "PostgreSQL claim session lost; reconnecting. Its row locks are gone: its rows get no further attempt from this replica."
            );
            if let Some(lost) = self.claimer.take() {
                lost.fence.cancel();
            }
        }
        if self.claimer.is_none() {
            // Of the lost sessions' rows, only those still with the pump need
            // excluding; the rest (parked, or whose settlement failed) are free.
            let outstanding = &self.outstanding;
            held(&self.held).retain(|lock| outstanding.contains(lock));
            self.epoch += 1;
            self.claimer = Some(self.open_claimer(self.epoch).await?);
        }
        if self.writer.as_ref().is_some_and(|w| w.is_closed()) {
            tracing::warn!(message = "PostgreSQL writer session lost; reconnecting.");
            self.writer = None;
        }
        if self.writer.is_none() {
            self.writer = Some(Arc::new(
                Writer::open(&self.config, self.bound.clone()).await?,
            ));
        }
        Ok(())
    }

    fn claimer(claimer: &mut Option<Claimer>) -> Result<&mut Claimer> {
        claimer.as_mut().ok_or_else(|| Error::Source {
            kind: "postgres",
            message: "no session".into(),
        })
    }

    /// Waits for the acknowledgement running in the background.
    async fn finish_pending(&mut self) -> Result<()> {
        match self.pending.take() {
            None => Ok(()),
            Some(task) => task.await.unwrap_or_else(|e| {
                Err(Error::Source {
                    kind: "postgres",
                    message: format!("acknowledgement task failed: {e}"),
                })
            }),
        }
    }

    /// Starts settling `rows` with `which` in the background, after the
    /// previous settlement finished (whose result this returns).
    async fn settle(&mut self, which: Which, rows: Vec<PgHandle>) -> Result<()> {
        let previous = self.finish_pending().await;
        self.ensure().await?;
        let rows = self.relocked(rows).await?;
        if rows.is_empty() {
            return previous;
        }
        let claimer = Self::claimer(&mut self.claimer)?;
        let (client, unlock) = (claimer.client.clone(), claimer.unlock.clone());
        let writer = self.writer.clone().ok_or_else(|| Error::Source {
            kind: "postgres",
            message: "no writer".into(),
        })?;
        let held = self.held.clone();
        self.pending = Some(tokio::spawn(async move {
            let outcome = writer.run(which, &rows).await;
            // On a failure of the whole batch nothing was written: unlock every
            // row so it comes back; rows that failed alone stay parked.
            let parked: HashSet<i64> = outcome
                .as_ref()
                .map(|p| p.iter().copied().collect())
                .unwrap_or_default();
            let locks: Vec<i64> = rows
                .iter()
                .map(|r| r.lock)
                .filter(|l| !parked.contains(l))
                .collect();
            let unlocked = client.execute(&unlock, &[&locks]).await;
            {
                let mut held = self::held(&held);
                for lock in &locks {
                    held.remove(lock);
                }
            }
            outcome?;
            unlocked?;
            Ok(())
        }));
        previous
    }

    /// `rows` with those of a lost session (an older epoch) locked again on
    /// the current one first; a row another replica holds now is dropped
    /// (never settled through this session without its lock).
    async fn relocked(&mut self, mut rows: Vec<PgHandle>) -> Result<Vec<PgHandle>> {
        let claimer = Self::claimer(&mut self.claimer)?;
        let epoch = claimer.epoch;
        let stale: Vec<i64> = rows
            .iter()
            .filter(|r| r.epoch != epoch)
            .map(|r| r.lock)
            .collect();
        if stale.is_empty() {
            return Ok(rows);
        }
        let got: HashSet<i64> = claimer
            .client
            .query(&claimer.relock, &[&stale])
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?;
        let fence = claimer.fence.clone();
        {
            let mut held = held(&self.held);
            for lock in stale.iter().filter(|l| !got.contains(l)) {
                held.remove(lock);
            }
        }
        tracing::info!(
            message = "Rows of a lost session locked again before settling.",
            relocked = got.len(),
            taken_by_others = stale.len() - got.len()
        );
        rows.retain_mut(|r| {
            if r.epoch == epoch {
                return true;
            }
            r.epoch = epoch;
            r.fence = fence.clone();
            got.contains(&r.lock)
        });
        Ok(rows)
    }

    /// Drops `locks` of the held set; unlocks those of the current session.
    async fn release_rows(&mut self, rows: &[PgHandle]) -> Result<()> {
        let epoch = self.epoch;
        let mut current = Vec::with_capacity(rows.len());
        {
            let mut held = held(&self.held);
            for row in rows {
                if row.epoch == epoch {
                    current.push(row.lock);
                } else {
                    // Its lock died with its session: nothing to unlock.
                    held.remove(&row.lock);
                }
            }
        }
        self.unlock(current).await
    }

    async fn unlock(&mut self, locks: Vec<i64>) -> Result<()> {
        if locks.is_empty() {
            return Ok(());
        }
        self.ensure().await?;
        let claimer = Self::claimer(&mut self.claimer)?;
        claimer.client.execute(&claimer.unlock, &[&locks]).await?;
        let mut held = held(&self.held);
        for lock in &locks {
            held.remove(lock);
        }
        Ok(())
    }

    async fn claim_without_mark_done(&mut self, max: usize) -> Result<Vec<Claimed<PgHandle>>> {
        if self.pass_ended {
            // Report idle once so the pump waits the poll interval between passes.
            self.pass_ended = false;
            return Ok(Vec::new());
        }
        let held: Vec<i64> = held(&self.held).iter().copied().collect();
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let offset = self.offset;
        let claimer = Self::claimer(&mut self.claimer)?;
        let rows = claimer
            .client
            .query(&claimer.claim, &[&held, &limit, &offset])
            .await?;
        let events = events(&rows, claimer)?;
        self.pass_ended = rows.len() < max;
        self.offset = if self.pass_ended { 0 } else { offset + limit };
        self::held(&self.held).extend(events.iter().map(|e| e.handle.lock));
        Ok(events)
    }
}

/// Encodes rows (user columns, then `kipper_key`) as claimed events.
fn events(rows: &[tokio_postgres::Row], claimer: &Claimer) -> Result<Vec<Claimed<PgHandle>>> {
    let mut buf = BytesMut::with_capacity(rows.len() * 128);
    let mut events = Vec::with_capacity(rows.len());
    let n = claimer.names.len();
    for row in rows {
        buf.put_u8(b'{');
        for (i, column) in row.columns()[..n].iter().enumerate() {
            if i > 0 {
                buf.put_u8(b',');
            }
            buf.put_slice(&claimer.names[i]);
            let Raw(raw) = row.try_get(i)?;
            json::write_value(&mut buf, column.type_(), raw);
        }
        buf.put_u8(b'}');
        let body = buf.split().freeze();
        let lock: i64 = row.try_get(n)?;
        let values = claimer
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
            handle: PgHandle {
                lock,
                values,
                epoch: claimer.epoch,
                fence: claimer.fence.clone(),
            },
        });
    }
    Ok(events)
}

impl Source for PostgresSource {
    type Handle = PgHandle;

    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn claim(&mut self, max: usize) -> Result<Vec<Claimed<PgHandle>>> {
        let events = self.claim_batch(max).await?;
        self.outstanding
            .extend(events.iter().map(|e| e.handle.lock));
        Ok(events)
    }

    async fn ack(&mut self, events: &[Claimed<PgHandle>]) -> Result<()> {
        self.given_back(events.iter().map(|e| &e.handle));
        self.settle(
            Which::Done,
            events.iter().map(|e| e.handle.clone()).collect(),
        )
        .await
    }

    async fn dead_letter(&mut self, events: &[DeadLetter<PgHandle>]) -> Result<()> {
        self.given_back(events.iter().map(|e| &e.event.handle));
        if self.config.mark_failed.is_none() {
            // Parked: the lock stays held, so no replica retries the row while we live.
            return Ok(());
        }
        self.settle(
            Which::Failed,
            events.iter().map(|e| e.event.handle.clone()).collect(),
        )
        .await
    }

    async fn release(&mut self, events: &[Claimed<PgHandle>]) -> Result<()> {
        self.given_back(events.iter().map(|e| &e.handle));
        let rows: Vec<PgHandle> = events.iter().map(|e| e.handle.clone()).collect();
        self.release_rows(&rows).await
    }

    fn fence(handle: &PgHandle) -> Option<&CancellationToken> {
        Some(&handle.fence)
    }

    async fn flush(&mut self) -> Result<()> {
        self.finish_pending().await
    }

    async fn backlog(&mut self) -> Result<Option<u64>> {
        self.count_backlog().await
    }
}

impl PostgresSource {
    fn given_back<'a>(&mut self, handles: impl Iterator<Item = &'a PgHandle>) {
        for handle in handles {
            self.outstanding.remove(&handle.lock);
        }
    }

    async fn claim_batch(&mut self, max: usize) -> Result<Vec<Claimed<PgHandle>>> {
        self.ensure().await?;
        if !Self::claimer(&mut self.claimer)?
            .claim_from
            .ready("postgres")
        {
            return Ok(Vec::new());
        }
        if self.keys.is_empty() {
            return self.claim_without_mark_done(max).await;
        }
        let exclude: Vec<i64> = held(&self.held).iter().copied().collect();
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let claimer = Self::claimer(&mut self.claimer)?;
        let keys = claimer
            .client
            .query(&claimer.claim, &[&exclude, &limit])
            .await?;
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
        held(&self.held).extend(&locked);
        // Re-read through a fresh snapshot: a row another replica marked
        // done just before releasing it no longer matches.
        let padded = keys.len().next_power_of_two();
        if !claimer.verify.contains_key(&padded) {
            let sql = statements::verify(&self.config.query, &self.keys, self.seed, padded);
            let types: Vec<Type> = (0..padded)
                .flat_map(|_| claimer.key_types.iter().cloned())
                .collect();
            let statement = claimer.client.prepare_typed(&sql, &types).await?;
            claimer.verify.insert(padded, statement);
        }
        // Pad to the prepared size by repeating the last row's identity.
        let params: Vec<RawParam> = (0..padded * k)
            .map(|i| RawParam(values[(i / k).min(keys.len() - 1) * k + i % k]))
            .collect();
        let params: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let rows = match claimer.verify.get(&padded) {
            Some(statement) => claimer.client.query(statement, &params).await?,
            None => Vec::new(),
        };
        let mut events = events(&rows, claimer)?;
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

    async fn count_backlog(&mut self) -> Result<Option<u64>> {
        self.ensure().await?;
        let claimer = Self::claimer(&mut self.claimer)?;
        if claimer.count.is_none() {
            claimer.count = Some(
                claimer
                    .client
                    .prepare(&statements::count(&self.config.query))
                    .await?,
            );
        }
        let Some(count) = &claimer.count else {
            return Ok(None);
        };
        let n: i64 = claimer.client.query_one(count, &[]).await?.try_get(0)?;
        Ok(u64::try_from(n).ok())
    }
}
