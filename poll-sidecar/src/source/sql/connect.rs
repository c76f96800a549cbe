//! What a failed connection to PostgreSQL or MySQL tells the user: the
//! server's own message (or the network's), where kipper-poll tried to go,
//! and which setting to check. Never the password.
//!
//! The drivers alone say `error connecting to server` for a refused port and
//! an unknown host alike, `db error` for a wrong password, and
//! `Input/output error: Input/output error: Connection refused` on MySQL.

use crate::config::SqlConnection;
use crate::error::{causes, mysql_message, postgres_message};
use crate::{Error, Result};

/// How long a connection attempt may take before it counts as unreachable.
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A connection attempt that got no answer within [`TIMEOUT`].
pub fn timed_out(kind: &'static str, c: &SqlConnection) -> Error {
    describe(
        kind,
        c,
        Fault::Unreachable,
        &format!("no answer within {} s", TIMEOUT.as_secs()),
    )
}

/// What was wrong, as far as the answer tells, so the hint can name the setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Nothing answered: host, port, or the server is down.
    Unreachable,
    /// The server refused the login.
    Login,
    /// The server has no such database.
    Database,
    /// Anything else the server said.
    Other,
}

fn hint(fault: Fault) -> &'static str {
    match fault {
        Fault::Unreachable => {
            "check the host and port in KIPPER_SOURCE_URL (or the binding's HOST and PORT) and that the server is running"
        }
        Fault::Login => {
            "check the user and password in KIPPER_SOURCE_URL (or the binding's USERNAME and PASSWORD)"
        }
        Fault::Database => {
            "check the database name, the path of KIPPER_SOURCE_URL (or the binding's NAME), and that it was created"
        }
        Fault::Other => "check the host, port, user, password and database in KIPPER_SOURCE_URL",
    }
}

fn describe(kind: &'static str, c: &SqlConnection, fault: Fault, said: &str) -> Error {
    Error::Source {
        kind,
        message: format!(
            "cannot connect to {}:{} as user {:?}, database {:?}: {said}; {}",
            c.host,
            c.port,
            c.user,
            c.database,
            hint(fault)
        ),
    }
}

/// A failed PostgreSQL connection, explained.
pub fn postgres(c: &SqlConnection, error: &tokio_postgres::Error) -> Error {
    let fault = match error.as_db_error().map(|db| db.code().code()) {
        // invalid_authorization_specification, invalid_password
        Some("28000" | "28P01") => Fault::Login,
        // invalid_catalog_name
        Some("3D000") => Fault::Database,
        Some(_) => Fault::Other,
        None => Fault::Unreachable,
    };
    // "error connecting to server" says nothing the first words do not; its cause does.
    let said = match (error.as_db_error(), std::error::Error::source(error)) {
        (None, Some(cause)) => causes(cause),
        _ => postgres_message(error),
    };
    describe("postgres", c, fault, &said)
}

/// A failed MySQL / MariaDB connection, explained.
pub fn mysql(c: &SqlConnection, error: &mysql_async::Error) -> Error {
    let fault = match error {
        // ER_ACCESS_DENIED_ERROR, ER_DBACCESS_DENIED_ERROR
        mysql_async::Error::Server(e) if matches!(e.code, 1044 | 1045) => Fault::Login,
        // ER_BAD_DB_ERROR
        mysql_async::Error::Server(e) if e.code == 1049 => Fault::Database,
        mysql_async::Error::Server(_) => Fault::Other,
        _ => Fault::Unreachable,
    };
    describe("mysql", c, fault, &mysql_message(error))
}

/// Refuses a TLS requirement in the URL's parameters (not supported yet)
/// rather than connecting in plain text: part of validating the
/// configuration, before anything connects.
pub fn refuse_tls(c: &SqlConnection, postgres: bool) -> Result<()> {
    for (key, value) in &c.params {
        let refused = if postgres {
            key == "sslmode" && matches!(value.as_str(), "require" | "verify-ca" | "verify-full")
        } else {
            matches!(key.as_str(), "ssl-mode" | "sslmode" | "ssl_mode")
                && !value.eq_ignore_ascii_case("disabled")
                && !value.eq_ignore_ascii_case("preferred")
                || key == "require_ssl" && value == "true"
        };
        if refused {
            let fix = if postgres {
                "sslmode=disable (or prefer)"
            } else {
                "ssl-mode=DISABLED"
            };
            return Err(Error::config(
                "KIPPER_SOURCE_URL",
                format!("{key}={value}: TLS to the database is not supported yet; use {fix}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn conn(params: &[(&str, &str)]) -> SqlConnection {
        SqlConnection {
            host: "db".into(),
            port: 5432,
            user: "app".into(),
            password: Secret::new("s3cret"),
            database: "shop".into(),
            params: params
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        }
    }

    #[test]
    fn tls_requirements_are_refused_with_the_fix() {
        let error = refuse_tls(&conn(&[("sslmode", "require")]), true).unwrap_err();
        assert_eq!(
            error.to_string(),
            "KIPPER_SOURCE_URL: sslmode=require: TLS to the database is not supported yet; use sslmode=disable (or prefer)"
        );
        assert!(refuse_tls(&conn(&[("sslmode", "disable")]), true).is_ok());
        assert!(refuse_tls(&conn(&[("ssl-mode", "REQUIRED")]), false).is_err());
        assert!(refuse_tls(&conn(&[("ssl-mode", "DISABLED")]), false).is_ok());
    }
}
