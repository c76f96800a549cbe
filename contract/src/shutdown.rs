//! The one shutdown idiom of the three binaries (STYLE.md #7): `main` asks for [`signal`]
//! before it starts anything, hands the future to `run`, and every loop selects on it (directly,
//! or through the cancellation token or watch channel `run` makes of it); the drain that follows
//! is capped by `KIPPER_SHUTDOWN_GRACE`.
//!
//! The handlers are installed when [`signal`] is called, not when the future is first polled:
//! a SIGTERM that arrives while a binary is still starting is then a shutdown like any other,
//! not the default action (an abrupt exit), and a handler that cannot be installed is an error
//! at start (exit code 1) instead of a pod that only learns at its SIGKILL that it could not hear
//! SIGTERM.

use std::future::Future;

/// Installs the SIGTERM (the kubelet) and SIGINT (Ctrl-C) handlers and returns a future that
/// resolves on the first of them, logging which. Must be called inside a tokio runtime.
pub fn signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => tracing::info!(message = "SIGTERM received."),
                _ = interrupt.recv() => tracing::info!(message = "SIGINT received."),
            }
        })
    }
    #[cfg(not(unix))]
    {
        // No SIGTERM off Unix (`kip` may run there); Ctrl-C is the signal.
        Ok(async {
            match tokio::signal::ctrl_c().await {
                Ok(()) => tracing::info!(message = "Ctrl-C received."),
                Err(_) => std::future::pending::<()>().await,
            }
        })
    }
}

#[cfg(all(test, unix))]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn sigterm_resolves_the_future_and_does_not_kill_the_process() {
        let stopped = signal().unwrap();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(10), stopped)
            .await
            .expect("the future resolves on SIGTERM");
    }
}
