//! The one error type of the library.

use std::path::PathBuf;

/// Everything that can stop the shim; messages name the setting or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is invalid; the message names it and the fix (exit code 2).
    #[error("{0}")]
    Config(String),
    /// A port could not be bound.
    #[error("cannot listen on {addr}: {source} (set PORT / KIPPER_ADMIN_PORT to a free port)")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A file or directory operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// `npm install` / `pip install` failed.
    #[error("installing dependencies failed: {0}")]
    Deps(String),
    /// A worker could not be started or used.
    #[error("worker: {0}")]
    Worker(String),
    /// A worker sent a malformed frame.
    #[error("protocol: {0}")]
    Protocol(String),
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
