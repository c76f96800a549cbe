//! The MySQL / MariaDB trigger (mysql_async): claims rows of the user's
//! SELECT with `GET_LOCK` session locks, re-reads them after locking, and
//! runs the mark-dones of a batch in one transaction (one round trip on
//! MariaDB, whose bulk execution takes the whole batch). The design is in
//! [`crate::source::sql`].
//!
//! Two connections: the claim connection holds the locks; the [`writer`]
//! runs the mark-dones in the background while the next batch is claimed.
//! The locks of a batch are released on the claim connection once its
//! COMMIT is done (at the next claim, acknowledgement or flush).
//!
//! Across a restart of the server (see [`crate::source::sql`]): each claim
//! session is an *epoch* with a fence token, cancelled by its watcher or a
//! failed call; rows of an older epoch get no further attempt, are locked
//! again before their mark-done, and a new session claims nothing until the
//! server has been up for the quiet period.

mod json;
mod session;
mod statements;
mod writer;

use std::collections::HashSet;

use mysql_async::prelude::Queryable;
use mysql_async::{Row, Value};
use tokio_util::sync::CancellationToken;

use super::sql::{BoundColumns, NO_MARK_DONE, NO_MARK_FAILED, fnv64, key_columns};
use super::{Claimed, DeadLetter, Source};
use crate::config::SqlConfig;
use crate::{Error, Result};
use session::{Session, events, idempotency_id, taken};
use tokio::task::JoinHandle;
use writer::{Settled, Which, Writer};

/// Locks released per statement.
const UNLOCK_CHUNK: usize = 256;

/// What the source keeps of a claimed row.
#[derive(Debug, Clone)]
pub struct MyHandle {
    /// The `GET_LOCK` name held for the row.
    lock: String,
    /// Values of the columns the mark-done / mark-failed bind.
    values: Box<[Value]>,
    /// The claim session (epoch) that locked it.
    epoch: u64,
    /// Cancelled when that session is gone.
    fence: CancellationToken,
}

/// The MySQL / MariaDB source.
#[derive(Debug)]
pub struct MysqlSource {
    config: SqlConfig,
    seed: u64,
    keys: Vec<String>,
    bound: BoundColumns,
    session: Option<Session>,
    writer: Option<Writer>,
    /// The acknowledgement running in the background, if any.
    pending: Option<JoinHandle<Settled>>,
    /// Locks of events in flight and parked rows: this session's, and those
    /// of lost sessions until they settle (never claimed again meanwhile).
    held: HashSet<String>,
    /// Rows of lost sessions that a claim of the current session locked
    /// again (and did not hand out a second time).
    relocked: HashSet<String>,
    offset: u64,
    pass_ended: bool,
    /// Claim sessions opened so far.
    epoch: u64,
    /// Locks of rows handed to the pump and not yet given back (ack,
    /// dead-letter, release): what may still have a request running.
    outstanding: HashSet<String>,
}

impl MysqlSource {
    /// Connects and prepares every statement, so a query or placeholder that
    /// does not fit fails here, at start, with one line.
    pub async fn connect(config: &SqlConfig) -> Result<Self> {
        let mut source = Self {
            seed: fnv64(&config.query),
            keys: key_columns(config.mark_done.as_ref()),
            bound: BoundColumns::new(config.mark_done.as_ref(), config.mark_failed.as_ref()),
            config: config.clone(),
            session: None,
            writer: None,
            pending: None,
            held: HashSet::new(),
            relocked: HashSet::new(),
            offset: 0,
            pass_ended: false,
            epoch: 0,
            outstanding: HashSet::new(),
        };
        source.ensure().await?;
        source.writer = Some(Writer::open(config, source.bound.clone()).await?);
        // Warned only once the statements are known to fit: a start refused
        // for bad configuration prints its one line and nothing else.
        if config.mark_done.is_none() {
            tracing::warn!(message = NO_MARK_DONE);
        } else if config.mark_failed.is_none() {
            tracing::warn!(message = NO_MARK_FAILED);
        }
        Ok(source)
    }

    async fn ensure(&mut self) -> Result<()> {
        if self
            .session
            .as_ref()
            .is_some_and(|s| s.fence.is_cancelled())
        {
            tracing::warn!(
                message = "MySQL claim session lost; reconnecting. Its row locks are gone: its rows get no further attempt from this replica."
            );
            self.drop_session();
        }
        if self.session.is_none() {
            // Of the lost sessions' rows, only those still with the pump need
            // excluding; the rest (parked, or whose settlement failed) are free.
            let outstanding = &self.outstanding;
            self.held.retain(|lock| outstanding.contains(lock));
            let epoch = self.epoch + 1;
            self.session =
                Some(Session::open(&self.config, &self.keys, &self.bound, self.seed, epoch).await?);
            self.epoch = epoch;
        }
        Ok(())
    }

    /// Lets the claim session go: its fence is cancelled and its rows stay
    /// in the held set (not claimed again while a request may still run).
    fn drop_session(&mut self) {
        if let Some(lost) = self.session.take() {
            lost.fence.cancel();
        }
        // Locks a claim of the lost session took again are gone with it too.
        self.relocked.clear();
    }

    fn session(session: &mut Option<Session>) -> Result<&mut Session> {
        session.as_mut().ok_or_else(|| Error::Source {
            kind: "mysql",
            message: "no session".into(),
        })
    }

    /// Drops the session after an error that may have broken it: its locks
    /// are gone with it (the server frees them), so the held set is cleared.
    fn after_error(&mut self, error: mysql_async::Error) -> Error {
        if !matches!(error, mysql_async::Error::Server(_)) {
            tracing::warn!(message = "MySQL claim session lost; reconnecting. Its row locks are gone: its rows get no further attempt from this replica.", %error);
            self.drop_session();
        }
        Error::Mysql(error)
    }

    /// Waits for the acknowledgement running in the background, takes its
    /// writer back and releases its locks; returns its result.
    async fn finish_pending(&mut self) -> Result<()> {
        let Some(task) = self.pending.take() else {
            return Ok(());
        };
        let settled = task.await.map_err(|e| Error::Source {
            kind: "mysql",
            message: format!("acknowledgement task failed: {e}"),
        })?;
        if settled.writer.is_none() {
            tracing::warn!(message = "MySQL writer connection lost; reconnecting.");
        }
        self.writer = settled.writer;
        let unlocked = self.unlock(settled.unlock).await;
        settled.result.and(unlocked)
    }

    /// Starts settling `rows` in the background, after the previous
    /// settlement finished (whose result this returns).
    async fn settle(&mut self, which: Which, rows: Vec<MyHandle>) -> Result<()> {
        let previous = self.finish_pending().await;
        let rows = self.relocked(rows).await?;
        if rows.is_empty() {
            return previous;
        }
        let writer = match self.writer.take() {
            Some(writer) => writer,
            None => Writer::open(&self.config, self.bound.clone()).await?,
        };
        self.pending = Some(tokio::spawn(writer.run(which, rows)));
        previous
    }

    /// `rows` with those of a lost session locked again on the current one
    /// first; a row another replica holds now is dropped (never settled
    /// through this session without its lock).
    async fn relocked(&mut self, mut rows: Vec<MyHandle>) -> Result<Vec<MyHandle>> {
        let epoch = self.epoch;
        if rows.iter().all(|r| r.epoch == epoch) {
            return Ok(rows);
        }
        self.ensure().await?;
        let epoch = self.epoch;
        let mut got: HashSet<String> = HashSet::new();
        let mut tried = Vec::new();
        for row in rows.iter().filter(|r| r.epoch != epoch) {
            if self.relocked.remove(&row.lock) {
                got.insert(row.lock.clone());
            } else {
                tried.push(row.lock.clone());
            }
        }
        let session = Self::session(&mut self.session)?;
        for chunk in tried.chunks(UNLOCK_CHUNK) {
            let params: Vec<Value> = chunk.iter().map(|l| Value::from(l.as_str())).collect();
            let taken = session
                .conn
                .exec_first::<Row, _, _>(statements::relock(chunk.len()), params)
                .await;
            let taken = match taken {
                Ok(row) => row,
                Err(e) => return Err(self.after_error(e)),
            };
            if let Some(row) = taken {
                for (i, lock) in chunk.iter().enumerate() {
                    if session::taken(&row, i) {
                        got.insert(lock.clone());
                    }
                }
            }
        }
        let fence = Self::session(&mut self.session)?.fence.clone();
        tracing::info!(
            message = "Rows of a lost session locked again before settling.",
            relocked = got.len(),
            taken_by_others = rows
                .iter()
                .filter(|r| r.epoch != epoch && !got.contains(&r.lock))
                .count()
        );
        let held = &mut self.held;
        rows.retain_mut(|r| {
            if r.epoch == epoch {
                return true;
            }
            if !got.contains(&r.lock) {
                held.remove(&r.lock);
                return false;
            }
            r.epoch = epoch;
            r.fence = fence.clone();
            true
        });
        Ok(rows)
    }

    async fn unlock(&mut self, locks: Vec<String>) -> Result<()> {
        if locks.is_empty() {
            return Ok(());
        }
        for lock in &locks {
            self.held.remove(lock);
        }
        self.ensure().await?;
        let session = Self::session(&mut self.session)?;
        for chunk in locks.chunks(UNLOCK_CHUNK) {
            let padded = chunk.len().next_power_of_two();
            if !session.unlock.contains_key(&padded) {
                let statement = session.conn.prep(statements::unlock(padded)).await?;
                session.unlock.insert(padded, statement);
            }
            let params: Vec<Value> = (0..padded)
                .map(|i| Value::from(chunk[i.min(chunk.len() - 1)].as_str()))
                .collect();
            if let Some(statement) = session.unlock.get(&padded) {
                let result = session.conn.exec_drop(statement, params).await;
                if let Err(e) = result {
                    return Err(self.after_error(e));
                }
            }
        }
        Ok(())
    }

    /// A claim of the current session locked rows this replica still holds
    /// from a lost session (GET_LOCK does not know them as ours): they are not
    /// handed out twice; the lock is kept, and used when the old one settles.
    fn keep_stale(&mut self, events: &mut Vec<Claimed<MyHandle>>) {
        let held = &self.held;
        let relocked = &mut self.relocked;
        events.retain(|e| {
            if held.contains(&e.handle.lock) {
                relocked.insert(e.handle.lock.clone());
                false
            } else {
                true
            }
        });
    }

    async fn claim_inner(
        &mut self,
        max: usize,
    ) -> Result<Vec<Claimed<MyHandle>>, mysql_async::Error> {
        let limit = max as u64;
        let session = match Self::session(&mut self.session) {
            Ok(s) => s,
            Err(_) => return Ok(Vec::new()),
        };
        if self.keys.is_empty() {
            if self.pass_ended {
                self.pass_ended = false;
                return Ok(Vec::new());
            }
            let rows: Vec<Row> = session
                .conn
                .exec(&session.claim, (limit, self.offset))
                .await?;
            let page = rows.len();
            let got = session.names.len() + 1;
            let rows: Vec<Row> = rows.into_iter().filter(|r| taken(r, got)).collect();
            let mut events = events(&rows, session);
            self.keep_stale(&mut events);
            self.pass_ended = page < max;
            self.offset = if self.pass_ended {
                0
            } else {
                self.offset + limit
            };
            self.held
                .extend(events.iter().map(|e| e.handle.lock.clone()));
            return Ok(events);
        }
        let keys: Vec<Row> = session.conn.exec(&session.claim, (limit,)).await?;
        let k = self.keys.len();
        // Rows whose lock another replica took first are not ours.
        let keys: Vec<Row> = keys.into_iter().filter(|r| taken(r, k + 1)).collect();
        // Rows this replica still holds from a lost session: locked now, not
        // handed out twice (see keep_stale).
        let keys: Vec<Row> = keys
            .into_iter()
            .filter(|row| match row.as_ref(k) {
                Some(Value::Bytes(name)) => {
                    let name = String::from_utf8_lossy(name);
                    if self.held.contains(name.as_ref()) {
                        self.relocked.insert(name.into_owned());
                        false
                    } else {
                        true
                    }
                }
                _ => true,
            })
            .collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut locked = Vec::with_capacity(keys.len());
        let mut values: Vec<Value> = Vec::with_capacity(keys.len() * k);
        for row in &keys {
            for i in 0..k {
                values.push(row.as_ref(i).cloned().unwrap_or(Value::NULL));
            }
            locked.push(match row.as_ref(k) {
                Some(Value::Bytes(name)) => String::from_utf8_lossy(name).into_owned(),
                _ => String::new(),
            });
        }
        self.held.extend(locked.iter().cloned());
        // Re-read through a fresh statement: a row another replica marked
        // done just before releasing it no longer matches.
        let padded = keys.len().next_power_of_two();
        if !session.verify.contains_key(&padded) {
            let statement = session
                .conn
                .prep(statements::verify(
                    &self.config.query,
                    &self.keys,
                    self.seed,
                    padded,
                ))
                .await?;
            session.verify.insert(padded, statement);
        }
        let params: Vec<Value> = (0..padded * k)
            .map(|i| values[(i / k).min(keys.len() - 1) * k + i % k].clone())
            .collect();
        let rows: Vec<Row> = match session.verify.get(&padded) {
            Some(statement) => session.conn.exec(statement, params).await?,
            None => Vec::new(),
        };
        let mut events = events(&rows, session);
        let claimed: HashSet<&str> = locked.iter().map(String::as_str).collect();
        let mut seen: HashSet<String> = HashSet::with_capacity(events.len());
        events.retain(|e| {
            claimed.contains(e.handle.lock.as_str()) && seen.insert(e.handle.lock.clone())
        });
        let mut gone = Vec::new();
        for (r, lock) in locked.iter().enumerate() {
            if seen.contains(lock) {
                continue;
            }
            if values[r * k..(r + 1) * k].contains(&Value::NULL) {
                tracing::warn!(message = "A row has NULL in a mark-done column; it is skipped (parked) until the sidecar exits.", id = %idempotency_id(lock));
            } else {
                gone.push(lock.clone());
            }
        }
        if let Err(Error::Mysql(e)) = self.unlock(gone).await {
            return Err(e);
        }
        Ok(events)
    }
}

impl Source for MysqlSource {
    type Handle = MyHandle;

    fn kind(&self) -> &'static str {
        "mysql"
    }

    async fn claim(&mut self, max: usize) -> Result<Vec<Claimed<MyHandle>>> {
        // Release what a finished background acknowledgement committed.
        if self.pending.as_ref().is_some_and(JoinHandle::is_finished) {
            self.finish_pending().await?;
        }
        self.ensure().await?;
        if !Self::session(&mut self.session)?.claim_from.ready("mysql") {
            return Ok(Vec::new());
        }
        match self.claim_inner(max).await {
            Ok(events) => {
                self.outstanding
                    .extend(events.iter().map(|e| e.handle.lock.clone()));
                Ok(events)
            }
            Err(e) => Err(self.after_error(e)),
        }
    }

    async fn ack(&mut self, events: &[Claimed<MyHandle>]) -> Result<()> {
        for event in events {
            self.outstanding.remove(&event.handle.lock);
        }
        self.settle(
            Which::Done,
            events.iter().map(|e| e.handle.clone()).collect(),
        )
        .await
    }

    async fn dead_letter(&mut self, events: &[DeadLetter<MyHandle>]) -> Result<()> {
        for dead in events {
            self.outstanding.remove(&dead.event.handle.lock);
        }
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

    async fn flush(&mut self) -> Result<()> {
        self.finish_pending().await
    }

    async fn release(&mut self, events: &[Claimed<MyHandle>]) -> Result<()> {
        let epoch = self.epoch;
        let mut current = Vec::with_capacity(events.len());
        for event in events {
            let lock = &event.handle.lock;
            self.outstanding.remove(lock);
            if event.handle.epoch == epoch || self.relocked.remove(lock) {
                current.push(lock.clone());
            } else {
                // Its lock died with its session: nothing to unlock.
                self.held.remove(lock);
            }
        }
        self.unlock(current).await
    }

    fn fence(handle: &MyHandle) -> Option<&CancellationToken> {
        Some(&handle.fence)
    }

    async fn backlog(&mut self) -> Result<Option<u64>> {
        self.ensure().await?;
        let session = Self::session(&mut self.session)?;
        if session.count.is_none() {
            session.count = Some(
                session
                    .conn
                    .prep(statements::count(&self.config.query))
                    .await?,
            );
        }
        let Some(count) = session.count.clone() else {
            return Ok(None);
        };
        match session.conn.exec_first::<u64, _, _>(&count, ()).await {
            Ok(n) => Ok(n),
            Err(e) => Err(self.after_error(e)),
        }
    }
}
