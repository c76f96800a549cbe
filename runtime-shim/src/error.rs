//! The one error type of the library, and the typed kinds its variants carry
//! (what a worker, the worker protocol or the dependency install did wrong),
//! so callers branch on kinds and the text is rendered in one place.

use std::fmt;
use std::path::PathBuf;
use std::process::ExitStatus;

/// Everything that can stop the shim; messages name the setting or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is invalid (exit code 2).
    #[error("{message}")]
    Config {
        /// The environment variable at fault, e.g. `KIPPER_RUNTIME`.
        setting: &'static str,
        /// The one line printed: the setting's value, what is wrong and the fix.
        message: String,
    },
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
    Deps(DepsFailure),
    /// A worker could not be started or used.
    #[error("worker: {0}")]
    Worker(WorkerFailure),
    /// A worker sent a malformed frame.
    #[error("protocol: {0}")]
    Protocol(ProtocolViolation),
}

impl Error {
    /// A configuration error for `setting`; `message` names its value and the fix.
    pub fn config(setting: &'static str, message: impl Into<String>) -> Self {
        Self::Config {
            setting,
            message: message.into(),
        }
    }
}

/// Why the handler's dependencies could not be installed.
#[derive(Debug)]
pub enum DepsFailure {
    /// `package.json` beside the handler is not valid JSON.
    Manifest(serde_json::Error),
    /// The rewritten `package.json` could not be written out.
    Rewrite(serde_json::Error),
    /// The installer could not be started.
    Launch {
        /// The program run (`npm`, `python3`).
        program: String,
        /// Why it could not be run.
        source: std::io::Error,
    },
    /// The installer ran and failed.
    Exited {
        /// What ran, e.g. `npm install`.
        installer: &'static str,
        /// How it exited.
        status: ExitStatus,
        /// The last lines of its stderr, joined with ` | `.
        stderr_tail: String,
    },
}

impl fmt::Display for DepsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Manifest(e) => {
                write!(f, "package.json beside the handler is not valid JSON: {e}")
            }
            Self::Rewrite(e) => e.fmt(f),
            Self::Launch { program, source } => write!(
                f,
                "cannot run {program} ({source}); install it or set KIPPER_NPM_BIN / KIPPER_PYTHON_BIN"
            ),
            Self::Exited {
                installer,
                status,
                stderr_tail,
            } => write!(f, "{installer} exited with {status}: {stderr_tail}"),
        }
    }
}

/// Why no worker could be started (other than the handler failing to load).
#[derive(Debug)]
pub enum WorkerFailure {
    /// The handler file does not exist.
    HandlerMissing {
        /// The absolute path looked for.
        path: PathBuf,
    },
    /// The worker's connection on its socket could not be accepted.
    Accept(std::io::Error),
}

impl fmt::Display for WorkerFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HandlerMissing { path } => write!(
                f,
                "handler file {} does not exist (set KIPPER_FUNCTION_PATH or pass the file)",
                path.display()
            ),
            Self::Accept(e) => write!(f, "accepting the worker connection: {e}"),
        }
    }
}

/// How a worker broke the frame protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolViolation {
    /// A frame length outside the allowed range.
    FrameLength(usize),
    /// A frame too short for its fixed fields; names the frame kind.
    Short(&'static str),
    /// A RESULT frame whose header block runs past its end.
    HeadersOverrun,
    /// A frame kind the shim does not know.
    UnknownKind(u8),
    /// A RESULT frame before the worker said READY.
    ResultBeforeReady,
}

impl fmt::Display for ProtocolViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FrameLength(len) => write!(f, "frame length {len} out of range"),
            Self::Short(kind) => write!(f, "short {kind} frame"),
            Self::HeadersOverrun => f.write_str("RESULT headers overrun the frame"),
            Self::UnknownKind(kind) => write!(f, "unknown frame kind {kind}"),
            Self::ResultBeforeReady => f.write_str("RESULT before READY"),
        }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_render_the_lines_of_before() {
        let cases = [
            (
                Error::Protocol(ProtocolViolation::FrameLength(3)),
                "protocol: frame length 3 out of range",
            ),
            (
                Error::Protocol(ProtocolViolation::Short("RESULT")),
                "protocol: short RESULT frame",
            ),
            (
                Error::Protocol(ProtocolViolation::HeadersOverrun),
                "protocol: RESULT headers overrun the frame",
            ),
            (
                Error::Protocol(ProtocolViolation::UnknownKind(42)),
                "protocol: unknown frame kind 42",
            ),
            (
                Error::Protocol(ProtocolViolation::ResultBeforeReady),
                "protocol: RESULT before READY",
            ),
            (
                Error::Worker(WorkerFailure::HandlerMissing {
                    path: PathBuf::from("/app/function/index.js"),
                }),
                "worker: handler file /app/function/index.js does not exist (set KIPPER_FUNCTION_PATH or pass the file)",
            ),
            (
                Error::config("KIPPER_MODE", "KIPPER_MODE=x is not supported"),
                "KIPPER_MODE=x is not supported",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
        let launch = Error::Deps(DepsFailure::Launch {
            program: "npm".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
        assert!(
            launch
                .to_string()
                .starts_with("installing dependencies failed: cannot run npm ("),
            "{launch}"
        );
    }
}
