//! The one error type of the library.

use std::path::PathBuf;

/// Everything that can stop the shim; messages name the setting or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source} (set PORT / KIPPER_ADMIN_PORT to a free port)")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("installing dependencies failed: {0}")]
    Deps(String),
    #[error("worker: {0}")]
    Worker(String),
    #[error("protocol: {0}")]
    Protocol(String),
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
