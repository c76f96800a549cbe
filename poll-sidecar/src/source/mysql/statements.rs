//! The SQL text kipper-poll wraps around the user's query for MySQL and
//! MariaDB (see [`crate::source::sql`] for the claim design). Locks are
//! `GET_LOCK` names: `kp<seed>:` + MD5 of the row identity (51 characters,
//! under MySQL's limit of 64).

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
         WHERE IS_USED_LOCK({name}) IS NULL LIMIT ?",
        cols = cols.join(", ")
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
         FROM (SELECT * FROM (\n{query}\n) AS kipper_q LIMIT ? OFFSET ?) AS kipper_p WHERE IS_USED_LOCK({name}) IS NULL"
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
            verify(q, &["a".into(), "b`".into()], 1, 2)
                .ends_with("(kipper_q.`a`, kipper_q.`b```) IN ((?, ?), (?, ?))")
        );
        assert_eq!(unlock(2), "SELECT RELEASE_LOCK(?), RELEASE_LOCK(?)");
    }
}
