//! The one shutdown signal: SIGTERM or SIGINT cancels a token every loop
//! selects on.

use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGTERM or SIGINT.
pub fn on_signal() -> std::io::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!(message = "SIGTERM received."),
            _ = int.recv() => tracing::info!(message = "SIGINT received."),
        }
        cancel.cancel();
    });
    Ok(token)
}
