//! The claim engine, written once for PostgreSQL and MySQL: [`SqlSource`]
//! over a [`Driver`] that brings only the database's SQL, sessions and row
//! encoder. The design and its reasons are in [`crate::source::sql`].
//!
//! A claim: lock up to a batch of rows in one statement, skipping those this
//! replica holds ([`ClaimSession::claim`]); keep apart rows this replica
//! still holds from a lost session (locked again now, not handed out twice);
//! read the rest again through a fresh snapshot ([`ClaimSession::reread`]);
//! keep those that still match, park those with a NULL identity (they can be
//! neither re-read nor marked done), and unlock the others.
//!
//! An acknowledgement (`settle`) runs in the background on the writer
//! session while the next batch is claimed; the batch's locks are released
//! after its COMMIT, by the settlement itself when the claim session can be
//! shared ([`ClaimSession::unlocker`]), else by the engine at its next call.
//!
//! Leases: every row handed out also has a lease in the lease table, taken
//! right after its lock ([`ClaimSession::lease`], one statement per batch)
//! and renewed by the keeper ([`lease`]) until the row is given up; a claim
//! skips rows with a live lease, so a row stays this replica's after the
//! session holding its lock is gone (killed on a running server, a restart,
//! a failover). A row whose lease another holder still has is unlocked and
//! not handed out.
//!
//! Across a restart: each claim session is an *epoch* with a fence token;
//! when it is lost (its fence cancelled, or a call fails in a way
//! [`Driver::breaks_session`] recognises) its rows get no further attempt,
//! stay excluded while the pump still has them, and are locked again before
//! their mark-done; a new session claims nothing during the quiet period.
//!
//! The sets of locks, all of [`LockKey`]s:
//! - `held`: every lock this replica must not claim again: rows in flight,
//!   parked rows, rows settling; and rows of a lost session still with the
//!   pump. A lock leaves it only once released (or its session is gone).
//! - `outstanding`: rows handed to the pump and not yet given back.
//! - `relocked`: rows of a lost session a claim of the current one locked.
//! - the [`LeaseBook`]: the held rows whose leases the keeper renews (every
//!   row handed out, parked or settling; a subset of `held`).

mod driver;
mod key;
mod lease;
mod settle;

use std::collections::HashSet;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use driver::{
    ClaimSession, Driver, DriverSettings, KeeperSession, Locked, Opened, Page, SqlEvent, Unlock,
    Which, WriterSession, Written,
};
pub use key::{LockKey, SqlHandle, Stamp};
pub use lease::{LAPSE, LeaseBook, holder_id};
use settle::Settled;

use super::{ClaimFrom, NO_MARK_DONE, NO_MARK_FAILED};
use crate::config::SqlConfig;
use crate::source::{Claimed, DeadLetter, Source};
use crate::{Error, Result};

/// A SQL source: the claim engine over database `D`.
#[derive(Debug)]
pub struct SqlSource<D: Driver> {
    driver: D,
    has_mark_done: bool,
    has_mark_failed: bool,
    /// The quiet period after a server start (rule 3).
    restart_quiet: Duration,
    session: Option<Epoch<D::Session>>,
    /// The writer, unless a settlement has it (or its connection broke).
    writer: Option<D::Writer>,
    /// The settlement running in the background, if any.
    pending: Option<JoinHandle<Settled<D::Writer>>>,
    /// A settlement's failure a claim absorbed, for the next `ack`/`flush`.
    unreported: Option<Error>,
    held: HashSet<LockKey>,
    outstanding: HashSet<LockKey>,
    relocked: HashSet<LockKey>,
    /// The leased keys and the current fence, shared with the keeper.
    leases: LeaseBook,
    /// Stops the keeper when the source is dropped.
    keeper: Option<Keeper>,
    /// Claim sessions opened so far: the epoch of the newest.
    epoch: u64,
    /// A claim session was lost and no call has reported it yet.
    loss_unreported: bool,
    /// No mark-done: where the current pass over the query stands.
    offset: u64,
    /// No mark-done: the last page of a pass was handed out.
    pass_ended: bool,
}

/// The keeper task, stopped on drop.
#[derive(Debug)]
struct Keeper {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.stop.cancel();
        self.task.abort();
    }
}

/// A claim session with the stamp its rows carry.
#[derive(Debug)]
struct Epoch<S> {
    session: S,
    stamp: Stamp,
    /// Not before the server has been up for the quiet period.
    claim_from: ClaimFrom,
}

impl<D: Driver> SqlSource<D> {
    /// Opens the sessions of `driver` and prepares every statement, so a
    /// query or placeholder that does not fit, or a lease table that cannot
    /// be created or used, fails here, at start.
    pub async fn start(driver: D, config: &SqlConfig) -> Result<Self> {
        let mut source = Self {
            driver,
            has_mark_done: config.mark_done.is_some(),
            has_mark_failed: config.mark_failed.is_some(),
            restart_quiet: config.restart_quiet,
            session: None,
            writer: None,
            pending: None,
            unreported: None,
            held: HashSet::new(),
            outstanding: HashSet::new(),
            relocked: HashSet::new(),
            leases: LeaseBook::default(),
            keeper: None,
            epoch: 0,
            loss_unreported: false,
            offset: 0,
            pass_ended: false,
        };
        source.ensure().await?;
        source.writer = Some(source.driver.open_writer().await?);
        let keeper = source.driver.open_keeper().await?;
        let stop = CancellationToken::new();
        source.keeper = Some(Keeper {
            task: tokio::spawn(lease::keep(
                source.driver.clone(),
                Some(keeper),
                source.leases.clone(),
                stop.clone(),
            )),
            stop,
        });
        // Warned only once the statements are known to fit: a start refused
        // for bad configuration prints its one line and nothing else.
        if !source.has_mark_done {
            tracing::warn!(message = NO_MARK_DONE);
        } else if !source.has_mark_failed {
            tracing::warn!(message = NO_MARK_FAILED);
        }
        Ok(source)
    }

    /// The claim session, opened again if it was lost (and the writer, if it
    /// is idle and known to be lost). Of the lost sessions' rows only those
    /// still with the pump stay excluded; the rest (parked, settled, or whose
    /// settlement failed) lost their locks and are free.
    async fn ensure(&mut self) -> Result<()> {
        self.drop_fenced();
        if self.session.is_none() {
            let outstanding = &self.outstanding;
            self.held.retain(|key| outstanding.contains(key));
            let held = &self.held;
            self.leases.retain(|key| held.contains(key));
            let opened = self.driver.open_session().await?;
            self.leases.began(opened.fence.clone());
            self.epoch += 1;
            self.session = Some(Epoch {
                session: opened.session,
                stamp: Stamp {
                    epoch: self.epoch,
                    fence: opened.fence,
                },
                claim_from: ClaimFrom::new(opened.uptime, self.restart_quiet),
            });
        }
        // A writer known to be lost is opened again now rather than at the
        // next acknowledgement, so a claim reports an outage it saw first.
        if self.writer.as_ref().is_some_and(WriterSession::is_lost) {
            tracing::warn!(
                message = "SQL writer session lost; reconnecting.",
                source = D::KIND
            );
            self.writer = None;
            self.writer = Some(self.driver.open_writer().await?);
        }
        Ok(())
    }

    /// Lets the claim session go if it is known to be gone (its fence was
    /// cancelled): its locks are not released on it, they died with it.
    fn drop_fenced(&mut self) {
        if self
            .session
            .as_ref()
            .is_some_and(|s| s.stamp.fence.is_cancelled())
        {
            self.lose_session(None);
        }
    }

    /// Lets the claim session go: its fence is cancelled (no further attempt
    /// of its rows) and its rows stay held until they are given back.
    fn lose_session(&mut self, error: Option<&Error>) {
        if let Some(lost) = self.session.take() {
            tracing::warn!(
                message = "SQL claim session lost; reconnecting. Its row locks are gone: its rows get no further attempt from this replica.",
                source = D::KIND,
                error = error.map(tracing::field::display),
            );
            lost.stamp.fence.cancel();
            self.loss_unreported = true;
        }
        // Locks a claim of the lost session took again are gone with it too.
        self.relocked.clear();
    }

    /// `result` of a call on the claim session; drops the session when the
    /// failure means it is gone.
    fn checked<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(error) = &result
            && D::breaks_session(error)
        {
            self.lose_session(Some(error));
        }
        result
    }

    fn no_session(&self) -> Error {
        Error::Source {
            kind: D::KIND,
            message: "no claim session".into(),
        }
    }

    /// Releases `keys`, locks of the current session, ends their leases and
    /// forgets them. Without a session the locks are gone with the last one
    /// and the leases expire.
    async fn unlock(&mut self, keys: &[LockKey]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        self.drop_fenced();
        let result = match self.session.as_mut() {
            Some(current) => current.session.unlock(keys).await,
            None => Ok(()),
        };
        if result.is_ok() {
            self.forget(keys);
        }
        self.checked(result)
    }

    /// `result` of leasing rows just locked; when it failed (e.g. a MySQL
    /// deadlock) the rows are let go, so they are not stuck locked by a
    /// session that goes on, and come back at a later claim.
    async fn or_let_go<T>(&mut self, result: Result<T>, locked: &[LockKey]) -> Result<T> {
        if let Err(error) = &result
            && !D::breaks_session(error)
        {
            // The failure reported is the lease's.
            let _ = self.unlock(locked).await;
        }
        result
    }

    /// The leases a claim took of the `locked` keys it asked for: they join
    /// the keeper's book; fewer than asked is logged.
    fn book(&mut self, leased: Vec<LockKey>, locked: usize) -> HashSet<LockKey> {
        let leased: HashSet<LockKey> = leased.into_iter().collect();
        self.leases.add(leased.iter().copied());
        refused_log::<D>(locked, leased.len());
        leased
    }

    /// Rows given up: no longer held, their leases no longer renewed.
    fn forget(&mut self, keys: &[LockKey]) {
        if keys.is_empty() {
            return;
        }
        for key in keys {
            self.held.remove(key);
        }
        self.leases.remove(keys);
    }

    /// Claims with a mark-done: lock, re-read, keep what still matches.
    async fn claim_rows(&mut self, max: usize) -> Result<Vec<SqlEvent<D::Values>>> {
        let Some(current) = self.session.as_mut() else {
            return Ok(Vec::new());
        };
        let locked = current.session.claim(&self.held, max).await?;
        let mut fresh = Vec::with_capacity(locked.keys.len());
        let mut distinct = HashSet::with_capacity(locked.keys.len());
        for &key in &locked.keys {
            if self.held.contains(&key) {
                // Held from a lost session: locked now, not handed out twice;
                // the lock is used when the old one settles.
                self.relocked.insert(key);
            } else if distinct.insert(key) {
                fresh.push(key);
            }
        }
        if fresh.is_empty() {
            return Ok(Vec::new());
        }
        self.held.extend(&fresh);
        // One order for every replica's lease writes: fewer lock waits.
        fresh.sort_unstable();
        // Lease, and re-read through a fresh snapshot (a row another replica
        // marked done just before releasing it no longer matches), pipelined
        // where the session can.
        let leased = current
            .session
            .lease_and_reread(&fresh, &locked, &current.stamp)
            .await;
        let (leased, mut events) = self.or_let_go(leased, &fresh).await?;
        let leased = self.book(leased, fresh.len());
        // Only rows whose lease is committed are handed out.
        let mut seen = HashSet::with_capacity(events.len());
        events.retain(|e| leased.contains(&e.handle.key) && seen.insert(e.handle.key));
        let mut gone = Vec::new();
        for key in &fresh {
            if seen.contains(key) {
                continue;
            }
            if leased.contains(key) && locked.null_identity.contains(key) {
                // Parked so it does not fill every claim.
                tracing::warn!(message = "A row has NULL in a mark-done column; it is skipped (parked) until the sidecar exits.", id = %<D::Session as ClaimSession>::event_id(*key));
            } else {
                gone.push(*key);
            }
        }
        self.unlock(&gone).await?;
        Ok(events)
    }

    /// Claims without a mark-done: the next page of the pass over the query.
    async fn claim_page(&mut self, max: usize) -> Result<Vec<SqlEvent<D::Values>>> {
        if self.pass_ended {
            // Report idle once so the pump waits the poll interval between passes.
            self.pass_ended = false;
            return Ok(Vec::new());
        }
        let Some(current) = self.session.as_mut() else {
            return Ok(Vec::new());
        };
        let page = current
            .session
            .claim_page(&self.held, max, self.offset, &current.stamp)
            .await?;
        let mut events = page.events;
        let (held, relocked) = (&self.held, &mut self.relocked);
        events.retain(|e| {
            let stale = held.contains(&e.handle.key);
            if stale {
                relocked.insert(e.handle.key);
            }
            !stale
        });
        self.pass_ended = page.returned < max;
        self.offset = if self.pass_ended {
            0
        } else {
            self.offset + max as u64
        };
        if events.is_empty() {
            return Ok(events);
        }
        self.held.extend(events.iter().map(|e| e.handle.key));
        // Identical rows share a key: lease each key once.
        let mut distinct = HashSet::with_capacity(events.len());
        let mut keys: Vec<LockKey> = events
            .iter()
            .map(|e| e.handle.key)
            .filter(|key| distinct.insert(*key))
            .collect();
        keys.sort_unstable();
        let leased = current.session.lease(&keys).await;
        let leased = self.or_let_go(leased, &keys).await?;
        let leased = self.book(leased, keys.len());
        events.retain(|e| leased.contains(&e.handle.key));
        let refused: Vec<LockKey> = keys.into_iter().filter(|k| !leased.contains(k)).collect();
        self.unlock(&refused).await?;
        Ok(events)
    }

    fn given_back<'a>(&mut self, handles: impl Iterator<Item = &'a SqlHandle<D::Values>>) {
        for handle in handles {
            self.outstanding.remove(&handle.key);
        }
    }
}

/// Logs rows a claim locked but could not lease: another holder's lease is
/// still live (its session died after taking it; its request may still run).
fn refused_log<D: Driver>(locked: usize, leased: usize) {
    if leased < locked {
        tracing::info!(
            message = "Rows locked but leased by another replica whose session is gone; skipped until its lease ends.",
            source = D::KIND,
            rows = locked - leased,
        );
    }
}

impl<D: Driver> Source for SqlSource<D> {
    type Handle = SqlHandle<D::Values>;

    fn kind(&self) -> &'static str {
        D::KIND
    }

    async fn claim(&mut self, max: usize) -> Result<Vec<SqlEvent<D::Values>>> {
        self.absorb_finished().await;
        let ensured = self.ensure().await;
        // A lost claim session is an outage of the source even when its
        // successor opened at once (a quick restart): the claim reports it
        // once, so the health counts the outage and its end.
        if std::mem::take(&mut self.loss_unreported) {
            ensured?;
            return Err(Error::Source {
                kind: D::KIND,
                message: "the claim session was lost (server restart or broken connection) and is open again".into(),
            });
        }
        ensured?;
        let Some(current) = self.session.as_mut() else {
            return Err(self.no_session());
        };
        if !current.claim_from.ready(D::KIND) {
            return Ok(Vec::new());
        }
        let claimed = if self.has_mark_done {
            self.claim_rows(max).await
        } else {
            self.claim_page(max).await
        };
        let claimed = self.checked(claimed);
        if claimed.is_err() {
            // This error reports a loss it caused.
            self.loss_unreported = false;
        }
        let events = claimed?;
        self.outstanding.extend(events.iter().map(|e| e.handle.key));
        Ok(events)
    }

    async fn ack(&mut self, events: &[Claimed<Self::Handle>]) -> Result<()> {
        self.given_back(events.iter().map(|e| &e.handle));
        self.settle(
            Which::Done,
            events.iter().map(|e| e.handle.clone()).collect(),
        )
        .await
    }

    async fn dead_letter(&mut self, events: &[DeadLetter<Self::Handle>]) -> Result<()> {
        self.given_back(events.iter().map(|e| &e.event.handle));
        if !self.has_mark_failed {
            // Parked: the lock stays held, so no replica retries the row while we live.
            return Ok(());
        }
        self.settle(
            Which::Failed,
            events.iter().map(|e| e.event.handle.clone()).collect(),
        )
        .await
    }

    async fn release(&mut self, events: &[Claimed<Self::Handle>]) -> Result<()> {
        self.given_back(events.iter().map(|e| &e.handle));
        // Reconnects first, as every call does: a session lost meanwhile is
        // reported (an outage the health counts), and its rows are not
        // unlocked on the session that replaces it.
        self.ensure().await?;
        let epoch = self.session.as_ref().map(|s| s.stamp.epoch);
        let mut current = Vec::with_capacity(events.len());
        let mut lost = Vec::new();
        for event in events {
            let key = event.handle.key;
            if Some(event.handle.stamp.epoch) == epoch || self.relocked.remove(&key) {
                current.push(key);
            } else {
                // Its lock died with its session: nothing to unlock; its
                // lease expires.
                lost.push(key);
            }
        }
        self.forget(&lost);
        self.unlock(&current).await
    }

    fn fence(handle: &Self::Handle) -> Option<&tokio_util::sync::CancellationToken> {
        Some(&handle.stamp.fence)
    }

    async fn flush(&mut self) -> Result<()> {
        self.finish_pending().await
    }

    async fn backlog(&mut self) -> Result<Option<u64>> {
        self.ensure().await?;
        let Some(current) = self.session.as_mut() else {
            return Ok(None);
        };
        let result = current.session.count().await;
        self.checked(result)
    }
}

#[cfg(test)]
mod tests;
