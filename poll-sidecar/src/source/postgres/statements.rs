//! The SQL text kipper-poll wraps around the user's query for PostgreSQL
//! (see [`crate::source::sql`] for the claim design).

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

/// Locks (unless already held by us, `$1`) and returns up to `$2` rows'
/// identity columns and lock keys. The CASE makes PostgreSQL test `$1`
/// before locking, so a row this session holds is never locked twice.
pub fn claim_keys(query: &str, key_columns: &[String], seed: i64) -> String {
    let key = key_expr("kipper_q", key_columns, seed);
    let cols: Vec<String> = key_columns
        .iter()
        .map(|c| format!("kipper_q.{}", ident(c)))
        .collect();
    format!(
        "SELECT {cols}, {key} AS kipper_key FROM (\n{query}\n) AS kipper_q \
         WHERE CASE WHEN {key} = ANY($1::int8[]) THEN false ELSE pg_try_advisory_lock({key}) END LIMIT $2",
        cols = cols.join(", ")
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
         CASE WHEN {key} = ANY($1::int8[]) THEN false ELSE pg_try_advisory_lock({key}) END AS kipper_got \
         FROM (SELECT * FROM (\n{query}\n) AS kipper_q LIMIT $2 OFFSET $3) AS kipper_p"
    )
}

/// Releases the locks `$1`.
pub const UNLOCK: &str = "SELECT pg_advisory_unlock(k) FROM unnest($1::int8[]) AS k";

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
