//! kipper-shim: the in-pod front of a Kipper function's Node or Python handler.
//!
//! The request path mirrors the module tree:
//! [`server`] accepts HTTP from the first milliseconds of the container and
//! holds requests at the [`server::hold`] gate until the [`pool`] of language
//! workers is ready; each request becomes one framed [`protocol`] message to a
//! worker process running the embedded [`bootstrap`] file, which loads the
//! handler exactly as CONTRACT section 1 says. [`deps`] installs the handler's
//! `package.json` / `requirements.txt` first; [`batch`] runs the handler once
//! for cron and test runs.

// Unit tests may unwrap: a panic is the failure report there.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod batch;
pub mod bootstrap;
pub mod config;
pub mod deps;
mod error;
pub mod metrics;
pub mod pool;
pub mod protocol;
pub mod server;
pub mod telemetry;

pub use error::{DepsFailure, Error, ProtocolViolation, Result, WorkerFailure};

use config::{Config, Mode};

/// What the process should exit with.
pub type ExitCode = i32;

/// `KIPPER_MODE=install`: the dependencies, and nothing else.
async fn install_only(config: &Config) -> Result<ExitCode> {
    if config.deps_cache.is_none() {
        tracing::warn!(
            message =
                "KIPPER_MODE=install without KIPPER_DEPS_CACHE: the install is thrown away at exit"
        );
    }
    match deps::install(config).await {
        Ok(installed) => {
            tracing::info!(message = "dependencies ready", ?installed);
            Ok(0)
        }
        Err(error) => {
            tracing::error!(message = "dependency install failed", %error);
            Ok(1)
        }
    }
}

/// Runs the shim until `shutdown` resolves (http mode) or the one invocation
/// ends (batch mode) or the dependencies are installed (install mode); returns the process exit code.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<ExitCode> {
    let cleanup = config.owns_work_dir.then(|| config.work_dir.clone());
    let result = match config.mode {
        Mode::Http => server::serve(config, shutdown).await.map(|()| 0),
        Mode::Batch => batch::run(config).await,
        Mode::Install => install_only(&config).await,
    };
    if let Some(dir) = cleanup {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}
