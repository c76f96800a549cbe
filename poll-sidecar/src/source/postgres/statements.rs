//! The SQL text kipper-poll wraps around the user's query for PostgreSQL
//! (see [`crate::source::sql`] for the claim design), and the statements of
//! the lease table. Lease times are always the server's clock
//! (`clock_timestamp()`, which moves within a statement, unlike `now()`).

use std::time::Duration;

/// Skips a row whose lease is live (its holder may still deliver it): the
/// branch of the claim's CASE before the lock.
fn leased(key: &str) -> String {
    format!(
        "WHEN EXISTS (SELECT 1 FROM kipper_poll_leases kipper_l WHERE kipper_l.lock_key = {key} \
         AND kipper_l.expires_at > clock_timestamp()) THEN false"
    )
}

/// Quotes an identifier: `a"b` -> `"a""b"`.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The advisory-lock key of a row of `kipper_q`: a 64-bit hash of its
/// identity columns (or of the whole row), namespaced by `seed`.
pub fn key_expr(alias: &str, key_columns: &[String], seed: i64) -> String {
    let identity = if key_columns.is_empty() {
        format!("{alias}::text")
    } else {
        let cols: Vec<String> = key_columns
            .iter()
            .map(|c| format!("{alias}.{}", ident(c)))
            .collect();
        format!("ROW({})::text", cols.join(", "))
    };
    format!("hashtextextended({identity}, {seed})")
}

/// Locks (unless already held by us, `$1`, or leased) and returns up to `$2`
/// rows' identity columns and lock keys. The CASE makes PostgreSQL test `$1`
/// and the lease before locking, so a row this session holds is never
/// locked twice and a leased row is never locked.
pub fn claim_keys(query: &str, key_columns: &[String], seed: i64) -> String {
    let key = key_expr("kipper_q", key_columns, seed);
    let cols: Vec<String> = key_columns
        .iter()
        .map(|c| format!("kipper_q.{}", ident(c)))
        .collect();
    format!(
        "SELECT {cols}, {key} AS kipper_key FROM (\n{query}\n) AS kipper_q \
         WHERE CASE WHEN {key} = ANY($1::int8[]) THEN false {leased} ELSE pg_try_advisory_lock({key}) END LIMIT $2",
        cols = cols.join(", "),
        leased = leased(&key),
    )
}

/// The user's query restricted to `rows` identities, read again after the
/// claim: `(cols) IN ((...), ...)` lets the planner use the table's index.
pub fn verify(query: &str, key_columns: &[String], seed: i64, rows: usize) -> String {
    let key = key_expr("kipper_q", key_columns, seed);
    let k = key_columns.len();
    let tuples: Vec<String> = (0..rows)
        .map(|r| {
            let params: Vec<String> = (1..=k).map(|c| format!("${}", r * k + c)).collect();
            format!("({})", params.join(", "))
        })
        .collect();
    let cols: Vec<String> = key_columns
        .iter()
        .map(|c| format!("kipper_q.{}", ident(c)))
        .collect();
    format!(
        "SELECT kipper_q.*, {key} AS kipper_key FROM (\n{query}\n) AS kipper_q WHERE ({cols}) IN ({tuples})",
        cols = cols.join(", "),
        tuples = tuples.join(", ")
    )
}

/// Without a mark-done (every row on every poll): one page of the query
/// (`$2` rows from offset `$3`), locking each row not held (`$1`). Every row
/// of the page is returned, with `kipper_got` saying whether this session
/// took its lock: a page shorter than asked ends the pass, one whose rows
/// other replicas hold does not. The lock stands in the select list,
/// evaluated once per returned row.
pub fn claim_rows(query: &str, seed: i64) -> String {
    let key = key_expr("kipper_p", &[], seed);
    format!(
        "SELECT kipper_p.*, {key} AS kipper_key, \
         CASE WHEN {key} = ANY($1::int8[]) THEN false {leased} ELSE pg_try_advisory_lock({key}) END AS kipper_got \
         FROM (SELECT * FROM (\n{query}\n) AS kipper_q LIMIT $2 OFFSET $3) AS kipper_p",
        leased = leased(&key),
    )
}

/// Releases the locks `$1` and deletes their leases held by `$2`, in one
/// statement (a data-modifying WITH runs even though nothing reads it).
pub const UNLOCK: &str = "WITH kipper_d AS (DELETE FROM kipper_poll_leases \
     WHERE lock_key = ANY($1::int8[]) AND holder = $2) \
     SELECT pg_advisory_unlock(k) FROM unnest($1::int8[]) AS k";

/// The server's clock `ttl` from now.
fn until(ttl: Duration) -> String {
    format!(
        "clock_timestamp() + interval '{} milliseconds'",
        ttl.as_millis()
    )
}

/// Takes leases of the keys `$1` for holder `$2`: a key without a lease, or
/// whose lease expired (or is already `$2`'s), is taken; returns those
/// taken. The keys must be distinct (ON CONFLICT touches a row once).
pub fn lease(ttl: Duration) -> String {
    format!(
        "INSERT INTO kipper_poll_leases AS l (lock_key, holder, expires_at) \
         SELECT k, $2, {until} FROM unnest($1::int8[]) AS k \
         ON CONFLICT (lock_key) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at \
         WHERE l.expires_at <= clock_timestamp() OR l.holder = EXCLUDED.holder \
         RETURNING lock_key",
        until = until(ttl)
    )
}

/// Extends holder `$1`'s leases of the keys `$2`.
pub fn renew(ttl: Duration) -> String {
    format!(
        "UPDATE kipper_poll_leases SET expires_at = {} WHERE holder = $1 AND lock_key = ANY($2::int8[])",
        until(ttl)
    )
}

/// Deletes leases that expired more than [`SWEEP_AFTER`] ago, of any holder.
///
/// [`SWEEP_AFTER`]: crate::source::sql::SWEEP_AFTER
pub fn sweep() -> String {
    format!(
        "DELETE FROM kipper_poll_leases WHERE expires_at < clock_timestamp() - interval '{} seconds'",
        crate::source::sql::SWEEP_AFTER.as_secs()
    )
}

/// Reclaims the space of deleted leases. `SKIP_LOCKED`: another replica's
/// VACUUM of it is enough; `TRUNCATE false`: never takes the lock that would
/// stall the lease statements to give pages back.
pub const VACUUM_LEASES: &str = "VACUUM (SKIP_LOCKED, TRUNCATE false) kipper_poll_leases";

/// Whether this user may VACUUM the lease table: it has the rights of the
/// table's owner or of the database's owner (a superuser has every role's).
pub const MAY_VACUUM_LEASES: &str = "SELECT pg_has_role(c.relowner, 'USAGE') OR pg_has_role(d.datdba, 'USAGE') \
     FROM pg_class c, pg_database d \
     WHERE c.oid = to_regclass('kipper_poll_leases') AND d.datname = current_database()";

/// Whether the lease table exists (on the search path).
pub const LEASES_EXIST: &str = "SELECT to_regclass('kipper_poll_leases') IS NOT NULL";

/// The lease table.
pub const CREATE_LEASES: &str = "CREATE TABLE IF NOT EXISTS kipper_poll_leases \
     (lock_key int8 PRIMARY KEY, holder text NOT NULL, expires_at timestamptz NOT NULL)";

/// The rights on the lease table this user lacks.
pub const LEASE_RIGHTS_MISSING: &str = "SELECT string_agg(p, ', ') FROM \
     unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) AS p \
     WHERE NOT has_table_privilege('kipper_poll_leases', p)";

/// Locks again, on a new session, rows claimed on a lost one; returns those
/// it got (the others are another replica's now).
pub const RELOCK: &str = "SELECT k FROM unnest($1::int8[]) AS k WHERE pg_try_advisory_lock(k)";

/// Milliseconds since the server started.
pub const UPTIME: &str =
    "SELECT (EXTRACT(EPOCH FROM now() - pg_postmaster_start_time()) * 1000)::int8";

/// Counts the pending rows, as KEDA's postgresql scaler does.
pub fn count(query: &str) -> String {
    format!("SELECT count(*) FROM (\n{query}\n) AS kipper_count")
}

/// Just the columns of the query (for checking placeholders at start).
pub fn columns(query: &str) -> String {
    format!("SELECT * FROM (\n{query}\n) AS kipper_q LIMIT 0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_wrap_the_query() {
        let q = "SELECT * FROM orders WHERE status = 'pending'";
        let keys = vec!["id".to_string()];
        let claim = claim_keys(q, &keys, 7);
        assert!(
            claim.contains("pg_try_advisory_lock(hashtextextended(ROW(kipper_q.\"id\")::text, 7))"),
            "{claim}"
        );
        assert!(claim.ends_with("LIMIT $2"));
        assert!(
            claim.contains("THEN false WHEN EXISTS (SELECT 1 FROM kipper_poll_leases"),
            "a leased row is skipped before the lock: {claim}"
        );
        assert!(
            lease(Duration::from_secs(7))
                .contains("clock_timestamp() + interval '7000 milliseconds'")
        );
        let verify = verify(q, &["a".into(), "b\"c".into()], 7, 2);
        assert!(
            verify.ends_with("WHERE (kipper_q.\"a\", kipper_q.\"b\"\"c\") IN (($1, $2), ($3, $4))"),
            "{verify}"
        );
        assert!(claim_rows(q, 1).contains("hashtextextended(kipper_p::text, 1)"));
        // A query ending in a line comment must not swallow the closing parenthesis.
        assert!(columns("SELECT 1 -- pending only").contains("-- pending only\n) AS kipper_q"));
    }
}
