//! What a database gives the claim engine: its SQL, its sessions and its
//! row encoder, behind three small traits, statically dispatched (the engine
//! is generic over them; nothing is boxed per row or per batch).
//!
//! - [`Driver`]: opens the claim session, the writer session and the lease
//!   keeper's session.
//! - [`ClaimSession`]: the session that holds the locks: claim, lease,
//!   re-read, unlock (which also ends this replica's leases), relock, count.
//! - [`WriterSession`]: the session that runs the mark-dones / mark-faileds
//!   of a batch, moved into the background settlement and handed back.
//! - [`KeeperSession`]: renews this replica's leases.
//!
//! The engine ([`super::SqlSource`]) owns everything else: which rows are
//! held and leased, the epochs and fences, the quiet period, when locks are
//! released, when the keeper fences.

use std::collections::HashSet;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::key::{LockKey, SqlHandle, Stamp};
use super::lease::holder_id;
use crate::config::SqlConfig;
use crate::source::Claimed;
use crate::source::sql::{BoundColumns, key_columns};
use crate::{Error, Result};

/// A claimed event of a SQL source with values `V`.
pub type SqlEvent<V> = Claimed<SqlHandle<V>>;

/// The keys leased and the rows read again, of
/// [`ClaimSession::lease_and_reread`].
pub type LeasedRows<V> = (Vec<LockKey>, Vec<SqlEvent<V>>);

/// What every driver opens its sessions with, derived once from the
/// configuration.
#[derive(Debug, Clone)]
pub struct DriverSettings {
    /// The trigger's SQL configuration.
    pub config: SqlConfig,
    /// The identity columns (the mark-done's placeholders).
    pub keys: Vec<String>,
    /// The columns the mark-done and mark-failed bind.
    pub bound: BoundColumns,
    /// This process's lease holder id.
    pub holder: Arc<str>,
}

impl DriverSettings {
    /// The settings of `config`, with a fresh holder id.
    pub fn new(config: &SqlConfig) -> Self {
        Self {
            config: config.clone(),
            keys: key_columns(config.mark_done.as_ref()),
            bound: BoundColumns::new(config.mark_done.as_ref(), config.mark_failed.as_ref()),
            holder: holder_id().into(),
        }
    }
}

/// One database: how to open its sessions. Cloned once, into the keeper.
pub trait Driver: Debug + Clone + Send + Sync + 'static {
    /// Short name for logs and metrics, e.g. `postgres`.
    const KIND: &'static str;
    /// The values a handle keeps for the mark-done / mark-failed.
    type Values: Debug + Clone + Send + Sync + 'static;
    /// The claim session.
    type Session: ClaimSession<Values = Self::Values>;
    /// The writer session.
    type Writer: WriterSession<Values = Self::Values>;
    /// The lease keeper's session.
    type Keeper: KeeperSession;

    /// Opens a claim session with every statement prepared, so a query or
    /// placeholder that does not fit fails here with one line; then makes
    /// sure of the lease table its statements name (created if missing): a
    /// server that refuses to create it, or this user the rights to use it,
    /// is bad configuration, [`Error::is_config`].
    fn open_session(&self) -> impl Future<Output = Result<Opened<Self::Session>>> + Send;

    /// Opens the writer session and prepares the mark-done / mark-failed.
    fn open_writer(&self) -> impl Future<Output = Result<Self::Writer>> + Send;

    /// Opens the lease keeper's session.
    fn open_keeper(&self) -> impl Future<Output = Result<Self::Keeper>> + Send;

    /// Whether `error`, returned by a call on the claim session, means the
    /// session is gone (its locks with it).
    fn breaks_session(error: &Error) -> bool;
}

/// A claim session just opened.
#[derive(Debug)]
pub struct Opened<S> {
    /// The session.
    pub session: S,
    /// Cancelled the moment the session is known to be gone (rule 1 of
    /// [`crate::source::sql`]).
    pub fence: CancellationToken,
    /// How long its server has been up (rule 3).
    pub uptime: Duration,
}

/// Rows a claim locked, before they are read again.
#[derive(Debug)]
pub struct Locked<R> {
    /// The lock of each row this session took, in the order of `rows`.
    pub keys: Vec<LockKey>,
    /// The keys of rows with NULL in an identity column: such a row can be
    /// neither re-read nor marked done. Usually empty (no allocation).
    pub null_identity: Vec<LockKey>,
    /// The driver's rows, for [`ClaimSession::reread`].
    pub rows: R,
}

/// One page of the query without a mark-done.
#[derive(Debug)]
pub struct Page<V> {
    /// Rows the page had, locked or not: fewer than asked ends the pass.
    pub returned: usize,
    /// The rows this session locked.
    pub events: Vec<SqlEvent<V>>,
}

/// The session that holds the row locks.
pub trait ClaimSession: Debug + Send + 'static {
    /// As [`Driver::Values`].
    type Values: Debug + Clone + Send + Sync + 'static;
    /// The rows [`ClaimSession::claim`] returns.
    type Rows: Send + Sync;
    /// What releases locks of this session from another task, if it can be
    /// shared ([`ClaimSession::unlocker`]).
    type Unlocker: Unlock;

    /// Locks up to `limit` rows of the query that no session holds, skipping
    /// the `held` ones, and returns those it locked.
    fn claim(
        &mut self,
        held: &HashSet<LockKey>,
        limit: usize,
    ) -> impl Future<Output = Result<Locked<Self::Rows>>> + Send;

    /// Reads `locked` rows again through the query (a fresh snapshot) and
    /// encodes those that still match, stamped with `stamp`.
    fn reread(
        &mut self,
        locked: &Locked<Self::Rows>,
        stamp: &Stamp,
    ) -> impl Future<Output = Result<Vec<SqlEvent<Self::Values>>>> + Send;

    /// Takes this replica's leases of `keys`, rows this session just locked
    /// (distinct), in one statement: a key whose lease another holder still
    /// has (its session died after taking it) is not taken. Returns the keys
    /// whose lease is now this replica's, committed.
    fn lease(&mut self, keys: &[LockKey]) -> impl Future<Output = Result<Vec<LockKey>>> + Send;

    /// [`ClaimSession::lease`] of `keys` and [`ClaimSession::reread`] of
    /// `locked`; a session that can pipeline two statements overrides it.
    fn lease_and_reread(
        &mut self,
        keys: &[LockKey],
        locked: &Locked<Self::Rows>,
        stamp: &Stamp,
    ) -> impl Future<Output = Result<LeasedRows<Self::Values>>> + Send {
        async move {
            let leased = self.lease(keys).await?;
            let events = self.reread(locked, stamp).await?;
            Ok((leased, events))
        }
    }

    /// Without a mark-done: locks and encodes the rows of one page
    /// (`limit` rows from `offset`) that no session holds, skipping `held`.
    fn claim_page(
        &mut self,
        held: &HashSet<LockKey>,
        limit: usize,
        offset: u64,
        stamp: &Stamp,
    ) -> impl Future<Output = Result<Page<Self::Values>>> + Send;

    /// Releases locks this session holds and deletes this replica's leases
    /// of them.
    fn unlock(&mut self, keys: &[LockKey]) -> impl Future<Output = Result<()>> + Send;

    /// Tries to lock again rows a lost session held; returns those it got
    /// (the others are another replica's now).
    fn relock(&mut self, keys: &[LockKey])
    -> impl Future<Output = Result<HashSet<LockKey>>> + Send;

    /// Rows the query matches now (the backlog gauge).
    fn count(&mut self) -> impl Future<Output = Result<Option<u64>>> + Send;

    /// A handle that releases this session's locks from the background
    /// settlement, right after its COMMIT, while the session claims the next
    /// batch; `None` when the session cannot be shared (the engine then
    /// releases them itself at its next call).
    fn unlocker(&self) -> Option<Self::Unlocker>;

    /// The idempotency id of a row with lock `key`, for log lines.
    fn event_id(key: LockKey) -> String;
}

/// Releases locks of a claim session from another task.
pub trait Unlock: Send + 'static {
    /// Releases `keys` and deletes this replica's leases of them.
    fn unlock(&self, keys: &[LockKey]) -> impl Future<Output = Result<()>> + Send;
}

/// For a session that cannot be shared: there is never a value.
impl Unlock for std::convert::Infallible {
    async fn unlock(&self, _: &[LockKey]) -> Result<()> {
        match *self {}
    }
}

/// Which statement a batch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// `KIPPER_MARK_DONE`, after a 2xx.
    Done,
    /// `KIPPER_MARK_FAILED`, after the last attempt failed.
    Failed,
}

impl Which {
    /// The setting of the statement, for log lines.
    pub fn setting(self) -> &'static str {
        match self {
            Self::Done => "KIPPER_MARK_DONE",
            Self::Failed => "KIPPER_MARK_FAILED",
        }
    }
}

/// How a batch of mark-dones / mark-faileds ended.
#[derive(Debug)]
pub struct Written<W> {
    /// The writer back, or `None` when its connection broke.
    pub writer: Option<W>,
    /// Rows whose statement failed on its own: they stay locked (parked)
    /// until the sidecar exits, so they do not come back on every poll.
    pub parked: Vec<LockKey>,
    /// A failure of the whole batch (nothing was written).
    pub result: Result<()>,
}

/// The session that runs the mark-dones / mark-faileds, in the background
/// while the claim session claims the next batch.
pub trait WriterSession: Debug + Sized + Send + 'static {
    /// As [`Driver::Values`].
    type Values: Debug + Clone + Send + Sync + 'static;

    /// Runs `which` for every row in one transaction; a row whose statement
    /// fails alone is parked rather than sinking the batch.
    fn run(
        self,
        which: Which,
        rows: &[SqlHandle<Self::Values>],
    ) -> impl Future<Output = Written<Self>> + Send;

    /// Whether the session is known to be gone (then it is opened again
    /// before the next batch).
    fn is_lost(&self) -> bool;
}

/// The lease keeper's session: its own connection, so renewals go on while
/// the claim session is busy or gone.
pub trait KeeperSession: Debug + Send + 'static {
    /// Extends this replica's leases of `keys` to the lease TTL from now (the
    /// server's clock); keys whose lease is not this replica's are untouched.
    fn renew(&mut self, keys: &[LockKey]) -> impl Future<Output = Result<()>> + Send;

    /// Deletes leases of any holder that expired more than [`SWEEP_AFTER`]
    /// ago (a replica that died holding them); returns how many. An expired
    /// lease already lets every replica in, so deleting it changes nothing
    /// but the table's size.
    ///
    /// [`SWEEP_AFTER`]: crate::source::sql::SWEEP_AFTER
    fn sweep(&mut self) -> impl Future<Output = Result<u64>> + Send;

    /// Starts reclaiming the space of deleted leases in the background, unless
    /// the last compaction still runs: it must never delay a renewal. Only
    /// PostgreSQL needs it (a VACUUM; InnoDB purges deleted rows by itself).
    fn compact(&mut self);
}
