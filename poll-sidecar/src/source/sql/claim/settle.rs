//! The background settlement: the mark-dones (or mark-faileds) of a batch run
//! on the writer session while the claim session claims the next batch; the
//! batch's locks are released only after its COMMIT. The next
//! acknowledgement, a claim that finds it finished, or `flush` absorbs it.
//!
//! Rows of a lost claim session (an older epoch) are locked again on the
//! current one before their statement runs ([`SqlSource::relocked`]): a row
//! is never settled through a session that does not hold its lock.

use std::collections::HashSet;

use tokio::task::JoinHandle;

use super::SqlSource;
use super::driver::{ClaimSession, Driver, Unlock, Which, WriterSession};
use super::key::{LockKey, SqlHandle};
use crate::{Error, Result};

/// How a background settlement ended.
#[derive(Debug)]
pub(super) struct Settled<W> {
    /// The writer back, unless its connection broke.
    writer: Option<W>,
    /// The claim session whose locks the rows hold.
    epoch: u64,
    /// Locks to release: every row but those parked.
    release: Vec<LockKey>,
    /// Whether the task released them itself, and how that went; `None`
    /// when the engine must release them on the claim session.
    unlocked: Option<Result<()>>,
    /// The batch's own result.
    result: Result<()>,
}

/// Runs `which` for `rows` (all locked on claim session `epoch`), then
/// releases their locks through `unlocker` when the session can be shared.
async fn run<W: WriterSession, U: Unlock>(
    writer: W,
    which: Which,
    rows: Vec<SqlHandle<W::Values>>,
    epoch: u64,
    unlocker: Option<U>,
) -> Settled<W> {
    let written = writer.run(which, &rows).await;
    // An empty set does not allocate: rows are rarely parked.
    let parked: HashSet<LockKey> = written.parked.iter().copied().collect();
    let release: Vec<LockKey> = rows
        .iter()
        .map(|r| r.key)
        .filter(|key| !parked.contains(key))
        .collect();
    let unlocked = match &unlocker {
        Some(_) if release.is_empty() => Some(Ok(())),
        Some(unlocker) => Some(unlocker.unlock(&release).await),
        None => None,
    };
    Settled {
        writer: written.writer,
        epoch,
        release,
        unlocked,
        result: written.result,
    }
}

impl<D: Driver> SqlSource<D> {
    /// Starts settling `rows` with `which` in the background, once the
    /// previous settlement finished (whose result this returns).
    pub(super) async fn settle(
        &mut self,
        which: Which,
        rows: Vec<SqlHandle<D::Values>>,
    ) -> Result<()> {
        let previous = self.finish_pending().await;
        self.ensure().await?;
        let rows = self.relocked(rows).await?;
        if rows.is_empty() {
            return previous;
        }
        let writer = match self.writer.take() {
            Some(writer) if !writer.is_lost() => writer,
            lost => {
                if lost.is_some() {
                    tracing::warn!(
                        message = "SQL writer session lost; reconnecting.",
                        source = D::KIND
                    );
                }
                self.driver.open_writer().await?
            }
        };
        let (epoch, unlocker) = match &self.session {
            Some(current) => (current.stamp.epoch, current.session.unlocker()),
            None => (self.epoch, None),
        };
        self.pending = Some(tokio::spawn(run(writer, which, rows, epoch, unlocker)));
        previous
    }

    /// Waits for the settlement running in the background; returns its
    /// result, or the earlier one a claim absorbed and did not report.
    pub(super) async fn finish_pending(&mut self) -> Result<()> {
        let result = match self.pending.take() {
            None => Ok(()),
            Some(task) => self.absorb(task).await,
        };
        match self.unreported.take() {
            None => result,
            Some(earlier) => {
                if let Err(error) = result {
                    tracing::warn!(message = "Acknowledgement failed; the rows stay in the source and come back later.", source = D::KIND, %error);
                }
                Err(earlier)
            }
        }
    }

    /// At a claim: absorbs a settlement that has finished, so its locks are
    /// released now rather than at the next acknowledgement; its result is
    /// reported by the next acknowledgement or `flush`.
    pub(super) async fn absorb_finished(&mut self) {
        if !self.pending.as_ref().is_some_and(JoinHandle::is_finished) {
            return;
        }
        let Some(task) = self.pending.take() else {
            return;
        };
        if let Err(error) = self.absorb(task).await {
            match &self.unreported {
                None => self.unreported = Some(error),
                Some(_) => {
                    tracing::warn!(message = "Acknowledgement failed; the rows stay in the source and come back later.", source = D::KIND, %error);
                }
            }
        }
    }

    /// Takes the writer back and releases what the settlement did not.
    async fn absorb(&mut self, task: JoinHandle<Settled<D::Writer>>) -> Result<()> {
        let settled = task.await.map_err(|e| Error::Source {
            kind: D::KIND,
            message: format!("acknowledgement task failed: {e}"),
        })?;
        if settled.writer.is_none() {
            tracing::warn!(
                message = "SQL writer session lost; reconnecting.",
                source = D::KIND
            );
        }
        self.writer = settled.writer;
        self.drop_fenced();
        let current = self.session.as_ref().map(|s| s.stamp.epoch);
        if current != Some(settled.epoch) {
            // The session that held these locks is gone and took them with it;
            // its reopening already settled what this replica still excludes.
            return settled.result.and(settled.unlocked.unwrap_or(Ok(())));
        }
        let unlocked = match settled.unlocked {
            Some(Ok(())) => {
                self.forget(&settled.release);
                Ok(())
            }
            // Kept in the held set: a lock that may still be held is never
            // claimed a second time by its own session.
            Some(Err(error)) => self.checked(Err(error)),
            None => self.unlock(&settled.release).await,
        };
        settled.result.and(unlocked)
    }

    /// `rows` with those of a lost session (an older epoch) locked again on
    /// the current one first; a row another replica holds now is dropped
    /// (never settled through this session without its lock).
    pub(super) async fn relocked(
        &mut self,
        mut rows: Vec<SqlHandle<D::Values>>,
    ) -> Result<Vec<SqlHandle<D::Values>>> {
        let Some(current) = self.session.as_mut() else {
            return Err(self.no_session());
        };
        let epoch = current.stamp.epoch;
        if rows.iter().all(|r| r.stamp.epoch == epoch) {
            return Ok(rows);
        }
        let mut got: HashSet<LockKey> = HashSet::new();
        let mut tried = Vec::new();
        for row in rows.iter().filter(|r| r.stamp.epoch != epoch) {
            // A claim of this session may have locked it already.
            if self.relocked.remove(&row.key) {
                got.insert(row.key);
            } else {
                tried.push(row.key);
            }
        }
        if !tried.is_empty() {
            let result = current.session.relock(&tried).await;
            got.extend(self.checked(result)?);
        }
        let Some(current) = self.session.as_ref() else {
            return Err(self.no_session());
        };
        let stamp = current.stamp.clone();
        let stale = rows.iter().filter(|r| r.stamp.epoch != epoch).count();
        tracing::info!(
            message = "Rows of a lost session locked again before settling.",
            source = D::KIND,
            relocked = got.len(),
            taken_by_others = stale.saturating_sub(got.len())
        );
        let mut taken = Vec::new();
        rows.retain_mut(|r| {
            if r.stamp.epoch == epoch {
                return true;
            }
            if !got.contains(&r.key) {
                taken.push(r.key);
                return false;
            }
            r.stamp = stamp.clone();
            true
        });
        self.forget(&taken);
        Ok(rows)
    }
}
