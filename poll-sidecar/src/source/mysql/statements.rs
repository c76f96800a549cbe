//! The SQL text kipper-poll wraps around the user's query for MySQL and
//! MariaDB (see [`crate::source::sql`] for the claim design). Locks are
//! `GET_LOCK` names: `kp<seed>:` + MD5 of the row identity (51 characters,
//! under MySQL's limit of 64), also the key of a row's lease in the lease
//! table. Lease times are always the server's clock (`NOW(6)`, in UTC: every
//! session kipper-poll opens sets `time_zone = '+00:00'`).

use std::time::Duration;

/// Skips a row whose lease is live (its holder may still deliver it): side
/// effect free, so it stands in the WHERE beside the `IS_USED_LOCK` filter.
fn not_leased(name: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM kipper_poll_leases kipper_l WHERE kipper_l.lock_key = {name} \
         AND kipper_l.expires_at > NOW(6))"
    )
}

/// Quotes an identifier: ``a`b`` -> ```a``b```.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// The lock name of a row of `alias`, from its identity columns.
pub fn lock_name(alias: &str, columns: &[String], seed: u64) -> String {
    let cols: Vec<String> = columns
        .iter()
        .map(|c| format!("{alias}.{}", ident(c)))
        .collect();
    format!(
        "CONCAT('kp{seed:x}:', MD5(CONCAT_WS(CHAR(31), {})))",
        cols.join(", ")
    )
}

/// Locks and returns up to `?` rows' identity columns, lock names and
/// whether the lock was taken (`kipper_got` = 1). The WHERE only skips rows
/// some session holds (side-effect free, so it may be evaluated any number of
/// times); `GET_LOCK` stands in the select list, which MySQL evaluates once
/// per returned row, so no lock is ever taken for a row we do not see.
pub fn claim_keys(query: &str, keys: &[String], seed: u64) -> String {
    let name = lock_name("kipper_q", keys, seed);
    let cols: Vec<String> = keys
        .iter()
        .map(|c| format!("kipper_q.{}", ident(c)))
        .collect();
    format!(
        "SELECT {cols}, {name} AS kipper_key, GET_LOCK({name}, 0) AS kipper_got FROM (\n{query}\n) AS kipper_q \
         WHERE IS_USED_LOCK({name}) IS NULL AND {leased} LIMIT ?",
        cols = cols.join(", "),
        leased = not_leased(&name),
    )
}

/// The user's query restricted to `rows` identities, read again after the claim.
pub fn verify(query: &str, keys: &[String], seed: u64, rows: usize) -> String {
    let name = lock_name("kipper_q", keys, seed);
    let tuple = format!("({})", vec!["?"; keys.len()].join(", "));
    let cols: Vec<String> = keys
        .iter()
        .map(|c| format!("kipper_q.{}", ident(c)))
        .collect();
    format!(
        "SELECT kipper_q.*, {name} AS kipper_key FROM (\n{query}\n) AS kipper_q WHERE ({cols}) IN ({tuples})",
        cols = cols.join(", "),
        tuples = vec![tuple; rows].join(", ")
    )
}

/// Without a mark-done: one page (`LIMIT ? OFFSET ?`) of the query, locking
/// each row no session holds; `all` are the query's columns, the row's identity.
pub fn claim_rows(query: &str, all: &[String], seed: u64) -> String {
    let name = lock_name("kipper_p", all, seed);
    format!(
        "SELECT kipper_p.*, {name} AS kipper_key, GET_LOCK({name}, 0) AS kipper_got \
         FROM (SELECT * FROM (\n{query}\n) AS kipper_q LIMIT ? OFFSET ?) AS kipper_p WHERE IS_USED_LOCK({name}) IS NULL AND {leased}",
        leased = not_leased(&name),
    )
}

/// Releases `n` locks in one statement.
pub fn unlock(n: usize) -> String {
    format!("SELECT {}", vec!["RELEASE_LOCK(?)"; n].join(", "))
}

/// Tries `n` locks in one statement (one column each, 1 when taken); never
/// padded: a lock taken twice by one session must be released twice.
pub fn relock(n: usize) -> String {
    format!("SELECT {}", vec!["GET_LOCK(?, 0)"; n].join(", "))
}

/// `NOW(6)` plus `ttl`.
fn until(ttl: Duration) -> String {
    format!("NOW(6) + INTERVAL {} MICROSECOND", ttl.as_micros())
}

/// `?` repeated `n` times, comma-separated.
fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// Takes leases of `n` keys (each `(?, ?)`: name, holder): a key without a
/// lease, or whose lease expired (or is already the holder's), is taken.
/// The assignments run left to right: `holder` is decided on the old
/// `expires_at`, then `expires_at` follows the holder it now has.
pub fn lease(n: usize, ttl: Duration) -> String {
    let row = format!("(?, ?, {})", until(ttl));
    format!(
        "INSERT INTO kipper_poll_leases (lock_key, holder, expires_at) VALUES {} \
         ON DUPLICATE KEY UPDATE \
         holder = IF(expires_at <= NOW(6) OR holder = VALUES(holder), VALUES(holder), holder), \
         expires_at = IF(holder = VALUES(holder), VALUES(expires_at), expires_at)",
        vec![row; n].join(", ")
    )
}

/// Which of `n` keys holder `?` has a lease of (after [`lease`]).
pub fn leased(n: usize) -> String {
    format!(
        "SELECT lock_key FROM kipper_poll_leases WHERE holder = ? AND lock_key IN ({})",
        marks(n)
    )
}

/// Extends holder `?`'s leases of `n` keys.
pub fn renew(n: usize, ttl: Duration) -> String {
    format!(
        "UPDATE kipper_poll_leases SET expires_at = {} WHERE holder = ? AND lock_key IN ({})",
        until(ttl),
        marks(n)
    )
}

/// Deletes holder `?`'s leases of `n` keys (before their locks are released).
pub fn end_leases(n: usize) -> String {
    format!(
        "DELETE FROM kipper_poll_leases WHERE holder = ? AND lock_key IN ({})",
        marks(n)
    )
}

/// Deletes leases that expired more than [`SWEEP_AFTER`] ago, of any holder.
///
/// [`SWEEP_AFTER`]: crate::source::sql::SWEEP_AFTER
pub fn sweep() -> String {
    format!(
        "DELETE FROM kipper_poll_leases WHERE expires_at < NOW(6) - INTERVAL {} SECOND",
        crate::source::sql::SWEEP_AFTER.as_secs()
    )
}

/// Whether the lease table exists in the current database.
pub const LEASES_EXIST: &str = "SELECT COUNT(*) FROM information_schema.TABLES \
    WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'kipper_poll_leases'";

/// The lease table. The key is the `GET_LOCK` name. Both texts are binary
/// strings: compared with the name the claim computes (in the connection's
/// character set) a binary column needs no conversion and keeps its index,
/// where a `VARCHAR` in the database's default (e.g. latin1) is an "illegal
/// mix of collations".
pub const CREATE_LEASES: &str = "CREATE TABLE IF NOT EXISTS kipper_poll_leases \
    (lock_key VARBINARY(64) PRIMARY KEY, holder VARBINARY(64) NOT NULL, expires_at DATETIME(6) NOT NULL) ENGINE=InnoDB";

/// Uses every right the sidecar needs on the lease table, changing nothing:
/// the server checks rights before it finds there is nothing to do.
pub const LEASE_RIGHTS: [&str; 2] = [
    "INSERT INTO kipper_poll_leases (lock_key, holder, expires_at) \
     SELECT lock_key, holder, expires_at FROM kipper_poll_leases WHERE 1 = 0 \
     ON DUPLICATE KEY UPDATE holder = VALUES(holder)",
    "DELETE FROM kipper_poll_leases WHERE 1 = 0",
];

/// The server's uptime in seconds.
pub const UPTIME: &str = "SHOW GLOBAL STATUS LIKE 'Uptime'";

/// Counts the pending rows.
pub fn count(query: &str) -> String {
    format!("SELECT COUNT(*) FROM (\n{query}\n) AS kipper_count")
}

/// Just the columns of the query.
pub fn columns(query: &str) -> String {
    format!("SELECT * FROM (\n{query}\n) AS kipper_q LIMIT 0")
}

/// Whether a column is MariaDB's JSON (LONGTEXT with a `json_valid` check)
/// in its table or, as MariaDB names a derived table there, in a table the
/// query names.
pub const JSON_CHECK: &str = "SELECT COUNT(*) FROM information_schema.CHECK_CONSTRAINTS \
    WHERE CONSTRAINT_SCHEMA = ? AND CHECK_CLAUSE = ? AND (TABLE_NAME = ? OR LOCATE(TABLE_NAME, ?) > 0)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_wrap_the_query() {
        let q = "SELECT * FROM orders WHERE status = 'pending'";
        let claim = claim_keys(q, &["id".into()], 255);
        assert!(
            claim.contains("GET_LOCK(CONCAT('kpff:', MD5(CONCAT_WS(CHAR(31), kipper_q.`id`))), 0)"),
            "{claim}"
        );
        assert!(claim.ends_with("LIMIT ?"));
        assert!(
            claim.contains("IS NULL AND NOT EXISTS (SELECT 1 FROM kipper_poll_leases"),
            "a leased row is filtered in the WHERE, never by the select-list lock: {claim}"
        );
        let lease = lease(2, Duration::from_secs(7));
        assert!(lease.contains("VALUES (?, ?, NOW(6) + INTERVAL 7000000 MICROSECOND), (?, ?,"));
        assert!(
            lease.find("holder = IF").unwrap() < lease.find("expires_at = IF").unwrap(),
            "holder is decided on the old expiry"
        );
        assert!(
            verify(q, &["a".into(), "b`".into()], 1, 2)
                .ends_with("(kipper_q.`a`, kipper_q.`b```) IN ((?, ?), (?, ?))")
        );
        assert_eq!(unlock(2), "SELECT RELEASE_LOCK(?), RELEASE_LOCK(?)");
    }
}
