//! The one error type of the library. Messages name the setting or input at
//! fault and, where one exists, the fix.

/// Everything that can go wrong in kipper-poll.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is missing or invalid; the message names it and the fix.
    #[error("{setting}: {message}")]
    Config {
        /// The environment variable (and flag) at fault, e.g. `KIPPER_QUERY`.
        setting: &'static str,
        /// What is wrong and how to fix it, on one line.
        message: String,
    },
    /// PostgreSQL answered with an error or the connection failed.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// MySQL/MariaDB answered with an error or the connection failed.
    #[error("mysql: {0}")]
    Mysql(#[from] mysql_async::Error),
    /// A source other than the SQL ones failed (Redis, S3); `kind` names it.
    #[error("{kind}: {message}")]
    Source {
        /// The source, e.g. `redis`.
        kind: &'static str,
        /// What failed.
        message: String,
    },
    /// The source returned data kipper-poll cannot turn into an event.
    #[error("row {column:?}: {message}")]
    Row {
        /// The column whose value could not be encoded.
        column: String,
        /// Why.
        message: String,
    },
    /// Binding a listener or another local I/O failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, e.g. `binding the admin port 0.0.0.0:9091`.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl Error {
    /// A configuration error for `setting`.
    pub fn config(setting: &'static str, message: impl Into<String>) -> Self {
        Self::Config {
            setting,
            message: message.into(),
        }
    }

    /// A local I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
