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
    /// PostgreSQL answered with an error or the connection failed; the
    /// message is the server's (or the cause's), not tokio-postgres' summary.
    #[error("postgres: {}", postgres_message(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// MySQL/MariaDB answered with an error or the connection failed.
    #[error("mysql: {}", mysql_message(.0))]
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
    /// Whether this is bad configuration (exit code 2) rather than a failure
    /// at run time (exit code 1). A setting that is well-formed but unusable,
    /// such as a query the server refuses, counts as configuration.
    pub fn is_config(&self) -> bool {
        matches!(self, Self::Config { .. })
    }

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

/// The server's message (with its detail and hint) of a PostgreSQL error, else
/// the error and its causes: tokio-postgres alone says only "db error" or
/// "error connecting to server".
pub fn postgres_message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = db.message().to_string();
            if let Some(detail) = db.detail() {
                text.push_str(&format!(" ({detail})"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; hint: {hint}"));
            }
            text
        }
        None => causes(error),
    }
}

/// The server's message of a MySQL error, else the error's innermost cause
/// (mysql_async wraps an I/O error twice, each layer saying "Input/output error").
pub fn mysql_message(error: &mysql_async::Error) -> String {
    match error {
        mysql_async::Error::Server(e) => format!("{} (error {})", e.message, e.code),
        mysql_async::Error::Io(mysql_async::IoError::Io(io)) => io.to_string(),
        other => causes(other),
    }
}

/// `error: cause: cause ...`, each distinct text once.
pub(crate) fn causes(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut next = error.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = cause.source();
    }
    parts.join(": ")
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
