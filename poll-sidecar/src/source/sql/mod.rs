//! What the PostgreSQL and MySQL sources share: the claim engine
//! ([`claim`]: the algorithm below, written once over a small driver per
//! database), the mark-done statement templates ([`template`]), the identity
//! of a row, the connection-failure messages ([`connect`]) and the JSON
//! writing of the row encoders ([`json`]).
//!
//! # Claiming rows of an arbitrary SELECT
//!
//! A row is identified by the values of the columns the mark-done statement
//! names (`{{id}}` -> column `id`); without a mark-done, by the whole row.
//! A replica claims a row by taking a session-level advisory lock on a hash
//! of that identity (PostgreSQL `pg_try_advisory_lock`, MySQL `GET_LOCK`),
//! evaluated inside the polling query itself so one round trip claims a
//! batch and rows locked by others are skipped. The lock lives as long as
//! the session: a sidecar that dies (SIGKILL, lost connection) loses its
//! session and the server frees its locks at once (its rows come back when
//! their leases expire, see "Leases"); an idle sidecar holds no lock and no
//! transaction.
//!
//! The claim's snapshot can predate a mark-done another replica committed
//! just before releasing its lock, so after locking, the claimed rows are
//! read again through the user's query restricted to their identity (a
//! fresh statement, a fresh snapshot): a row that no longer matches is
//! unlocked and not delivered. A row with NULL in an identity column can be
//! neither re-read nor marked done: it stays locked (parked) until the
//! sidecar exits, so it does not fill every claim.
//!
//! After a 2xx, mark-dones of a batch run in one transaction on a second
//! (writer) session, in the background while the claim session claims the
//! next batch; the locks are released only after its COMMIT (PostgreSQL:
//! by the settlement itself, its claim session being shareable; MySQL: at
//! the engine's next call). A lock leaves the replica's held set only once
//! it is released, so a session never locks its own row twice.
//!
//! # Across a restart of the database
//!
//! Session locks die with the server's sessions, while this replica's HTTP
//! requests for those rows are still in flight and cannot be recalled. Four
//! rules keep another replica from delivering such a row at the same time:
//!
//! 1. **Fence.** Every claim session has a fence token, cancelled the moment
//!    the session is known to be gone (PostgreSQL: its connection task ends;
//!    MySQL: a watcher connection pings every [`WATCH_EVERY`]; either: a
//!    call on it fails in a way [`claim::Driver::breaks_session`] knows, or
//!    the lease keeper could not renew in time).
//!    From then on no attempt of a row claimed on that
//!    session starts ([`crate::source::Source::fence`]); the one in flight
//!    ends within `KIPPER_DELIVERY_TIMEOUT`.
//! 2. **No acknowledgement through a new session without re-claiming.** A row
//!    of a lost session (an older *epoch*) that was delivered is locked again
//!    on the current session (`pg_try_advisory_lock` / `GET_LOCK(.., 0)`)
//!    before its mark-done; if another replica holds it, this replica lets it
//!    go (it comes back once more: at-least-once). Such rows stay in this
//!    replica's exclusion set until settled, so it never claims them again
//!    while its own request may still run.
//! 3. **Quiet after a server start.** A claim session claims nothing until its
//!    server has been up for the delivery timeout plus [`RESTART_MARGIN`]
//!    (`pg_postmaster_start_time()`, MySQL's `Uptime`). Every session of a
//!    restarted server is new, including those of replicas started meanwhile,
//!    so by the time any replica claims, every request of the old sessions has
//!    ended (rule 1), provided the holder noticed the loss within the margin.
//! 4. **Leases** (below): rows stay this replica's while it may deliver them,
//!    whatever happens to the session holding their locks.
//!
//! The rules are applied once, by [`claim::SqlSource`]; a driver only
//! reports its session's fence and its server's uptime, and brings the SQL.
//!
//! # Leases
//!
//! Rules 1-3 leave a gap: a single session ended by a server that keeps
//! running (`pg_terminate_backend`, `KILL`, a proxy that drops it) frees its
//! locks at once, while the holder's request runs on. So every row handed out
//! also has a lease: a row of [`LEASE_TABLE`] (the lock key, a holder id per
//! process, an expiry by the server's clock) in the same database, a logged
//! table, so it also survives a restart and a failover to a standby that
//! replicated it.
//!
//! - The table is created at start if it does not exist (checked first, so a
//!   user without CREATE works once an administrator created it); a refusal
//!   is bad configuration.
//! - A claim skips rows with a live lease (PostgreSQL: in the CASE before the
//!   lock; MySQL: in the WHERE, beside the `IS_USED_LOCK` filter), then takes
//!   the leases of the rows it locked in one statement, an upsert that takes
//!   a lease only if it expired: a row whose lease another holder still has
//!   (its session died after taking it, possibly while this claim ran: the
//!   filter reads the claim's snapshot, the upsert the latest rows) is
//!   unlocked and not handed out. Only rows whose lease is committed reach
//!   the pump; a lease statement that fails lets its rows go.
//! - Every unlock also deletes this holder's leases of those rows. Rows whose
//!   lock died with a lost session keep their leases, renewed while the pump
//!   still has them, then expiring.
//! - A keeper task per source, on its own connection, renews every
//!   [`RENEW_EVERY`] the leases of the rows this replica holds; after two
//!   periods without a renewal (from when the last good one was sent) it
//!   cancels the claim session's fence (rule 1). With the TTL of
//!   [`lease_ttl`], every attempt that started before the fence ends before
//!   its lease can expire. Once a minute (and at start) it also deletes
//!   leases of any holder that expired more than [`SWEEP_AFTER`] ago: what a
//!   replica that died holding them left behind. Every [`COMPACT_EVERY_TICKS`]
//!   periods it asks the database to reclaim the space of deleted leases
//!   ([`claim::KeeperSession::compact`]): every claimed row inserts and
//!   deletes one, and on PostgreSQL the dead rows and index entries slow every
//!   lease statement until a VACUUM (measured: +60% on the lease statements
//!   after 400k claims), which autovacuum may not run for a minute.
//!
//! The locks stay: they are the fast exclusion among live sessions and what
//! the claim statement takes in one round trip; the lease outlives them.

pub mod claim;
pub mod connect;
pub mod json;
pub mod template;

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

/// Added to the delivery timeout for the quiet period after a server start
/// (rule 3 above): the time a replica may take to notice it lost its session.
pub const RESTART_MARGIN: Duration = Duration::from_secs(2);

/// How often MySQL's watcher connection pings the server (rule 1 above).
pub const WATCH_EVERY: Duration = Duration::from_millis(500);

/// How often the lease keeper renews this replica's leases (see "Leases").
pub const RENEW_EVERY: Duration = Duration::from_secs(1);

/// How long after its expiry the keeper deletes a lease (of any holder). An
/// expired lease already lets every replica in; the slack only spares a
/// delete of a lease its holder is about to take again.
pub const SWEEP_AFTER: Duration = Duration::from_secs(60);

/// How many renewal periods apart the keeper sweeps expired leases.
pub const SWEEP_EVERY_TICKS: u32 = 60;

/// How many renewal periods apart the keeper compacts the lease table.
pub const COMPACT_EVERY_TICKS: u32 = 2;

/// The table of claim leases kipper-poll keeps in the user's database.
pub const LEASE_TABLE: &str = "kipper_poll_leases";

/// Bad configuration: the lease table cannot be created (`reason`, the
/// server's words); the fix names where CREATE is needed (`place`) and the DDL.
pub fn lease_table_refused(user: &str, reason: &str, place: &str, ddl: &str) -> crate::Error {
    crate::Error::config(
        "KIPPER_SOURCE_URL",
        format!(
            "cannot create the lease table {LEASE_TABLE}: {reason}; grant user {user:?} CREATE on {place}, \
             or have an administrator create the table (README.md, \"The lease table\"): {ddl}; {}",
            lease_grant(user)
        ),
    )
}

/// Bad configuration: the lease table exists but this user cannot use it
/// (`problem`: the missing rights, or the server's words).
pub fn lease_rights_missing(user: &str, problem: &str) -> crate::Error {
    crate::Error::config(
        "KIPPER_SOURCE_URL",
        format!(
            "user {user:?} cannot use the lease table {LEASE_TABLE}: {problem}; {}",
            lease_grant(user)
        ),
    )
}

fn lease_grant(user: &str) -> String {
    format!("GRANT SELECT, INSERT, UPDATE, DELETE ON {LEASE_TABLE} TO {user}")
}

/// How long a lease lasts from its last renewal: the delivery timeout (the
/// longest attempt), plus [`RESTART_MARGIN`], plus three renewal periods. The
/// keeper fences its claim session once no renewal succeeded for two periods,
/// so every attempt that started before the fence ends (within the delivery
/// timeout) at least a margin and a period before its lease can expire.
pub fn lease_ttl(delivery_timeout: Duration) -> Duration {
    delivery_timeout + RESTART_MARGIN + 3 * RENEW_EVERY
}

/// When a claim session may start claiming: once its server has been up for
/// the quiet period (rule 3 of the module docs).
#[derive(Debug)]
pub struct ClaimFrom {
    at: Instant,
    logged: bool,
}

impl ClaimFrom {
    /// For a server up for `uptime`, with the quiet period `quiet`.
    pub fn new(uptime: Duration, quiet: Duration) -> Self {
        Self {
            at: Instant::now() + quiet.saturating_sub(uptime),
            logged: false,
        }
    }

    /// Whether claiming may start now; logs once while it may not.
    pub fn ready(&mut self, kind: &'static str) -> bool {
        let now = Instant::now();
        if now >= self.at {
            return true;
        }
        if !self.logged {
            self.logged = true;
            tracing::info!(
                message = "The database server started recently; claiming waits until requests of its previous sessions have ended.",
                source = kind,
                wait = ?self.at.duration_since(now),
            );
        }
        false
    }
}

/// 64-bit FNV-1a: a hash that is the same in every build and replica (the
/// standard library's hasher does not promise that), used to namespace the
/// advisory locks of one query.
pub fn fnv64(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The columns that identify a row: the distinct placeholders of the
/// mark-done, or none (the whole row) without one.
pub fn key_columns(mark_done: Option<&template::Template>) -> Vec<String> {
    let mut seen = HashSet::new();
    mark_done
        .map(|t| {
            t.params
                .iter()
                .filter(|p| seen.insert(p.as_str()))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// The columns whose values the acknowledgement statements need, in a fixed
/// order, and for each statement the index into it of each parameter.
#[derive(Debug, Clone, Default)]
pub struct BoundColumns {
    /// Distinct column names kept per claimed row.
    pub names: Vec<String>,
    /// Per parameter of the mark-done, the index into `names`.
    pub mark_done: Vec<usize>,
    /// Per parameter of the mark-failed, the index into `names`.
    pub mark_failed: Vec<usize>,
}

impl BoundColumns {
    /// The columns both statements need.
    pub fn new(
        mark_done: Option<&template::Template>,
        mark_failed: Option<&template::Template>,
    ) -> Self {
        let mut names: Vec<String> = Vec::new();
        let mut index = |column: &String| match names.iter().position(|n| n == column) {
            Some(i) => i,
            None => {
                names.push(column.clone());
                names.len() - 1
            }
        };
        let mark_done = mark_done
            .map(|t| t.params.iter().map(&mut index).collect())
            .unwrap_or_default();
        let mark_failed = mark_failed
            .map(|t| t.params.iter().map(&mut index).collect())
            .unwrap_or_default();
        Self {
            names,
            mark_done,
            mark_failed,
        }
    }

    /// Where each bound column is among the query's columns, by `find`
    /// (column name, setting to name when it is missing): a column of the
    /// identity `keys` is the mark-done's, any other the mark-failed's.
    pub fn positions(
        &self,
        keys: &[String],
        mut find: impl FnMut(&str, &'static str) -> crate::Result<usize>,
    ) -> crate::Result<Vec<usize>> {
        self.names
            .iter()
            .map(|name| {
                let setting = if keys.contains(name) {
                    "KIPPER_MARK_DONE"
                } else {
                    "KIPPER_MARK_FAILED"
                };
                find(name, setting)
            })
            .collect()
    }
}

/// The warning printed at start when there is no mark-done.
pub const NO_MARK_DONE: &str = "No KIPPER_MARK_DONE: every matching row is delivered again on every poll; \
set KIPPER_MARK_DONE (e.g. UPDATE orders SET status = 'done' WHERE id = {{id}}) to deliver each row once.";

/// The warning printed at start when there is no mark-failed.
pub const NO_MARK_FAILED: &str = "No KIPPER_MARK_FAILED: a dead-lettered row stays locked by this sidecar until it \
exits, then is tried again; set KIPPER_MARK_FAILED to park such rows for good.";

#[cfg(test)]
mod tests {
    use super::template::{Dialect, Template};
    use super::*;

    #[test]
    fn a_lease_outlives_every_attempt_started_before_its_keeper_lapsed() {
        let timeout = Duration::from_secs(2);
        assert_eq!(lease_ttl(timeout), Duration::from_secs(7));
        // The last good renewal was sent at 0; the keeper fences at the latest
        // at 2 periods; an attempt started just before ends a timeout later.
        let last_attempt_ends = 2 * RENEW_EVERY + timeout;
        assert!(lease_ttl(timeout) >= last_attempt_ends + RESTART_MARGIN);
        assert_eq!(
            lease_ttl(Duration::from_secs(30)),
            Duration::from_secs(35),
            "the TTL grows with the delivery timeout"
        );
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv64(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv64("a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn bound_columns_are_shared_between_statements() {
        let done = Template::parse(
            "UPDATE t SET s = 1 WHERE a = {{a}} AND b = {{b}}",
            Dialect::Mysql,
        )
        .unwrap();
        let failed = Template::parse(
            "UPDATE t SET s = 2, note = {{c}} WHERE a = {{a}}",
            Dialect::Mysql,
        )
        .unwrap();
        let bound = BoundColumns::new(Some(&done), Some(&failed));
        assert_eq!(bound.names, vec!["a", "b", "c"]);
        assert_eq!(
            (bound.mark_done.as_slice(), bound.mark_failed.as_slice()),
            (&[0, 1][..], &[2, 0][..])
        );
        assert_eq!(key_columns(Some(&done)), vec!["a", "b"]);
        let columns = ["c", "b", "a"];
        let at = bound.positions(&key_columns(Some(&done)), |name, setting| {
            columns
                .iter()
                .position(|c| *c == name)
                .ok_or_else(|| crate::Error::config(setting, name))
        });
        assert_eq!(at.unwrap(), [2, 1, 0]);
        let missing = bound.positions(&key_columns(Some(&done)), |name, setting| {
            if name == "c" {
                Err(crate::Error::config(setting, name))
            } else {
                Ok(0)
            }
        });
        assert_eq!(
            missing.unwrap_err().to_string(),
            "KIPPER_MARK_FAILED: c",
            "a column only the mark-failed binds is its setting's fault"
        );
        assert!(key_columns(None).is_empty());
    }
}
