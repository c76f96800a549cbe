//! kipper-poll: parse the configuration, start logging, run until SIGTERM.
//!
//! Exit codes (the same rule in kipper-shim and kipper-controller): 2 for bad
//! configuration, with exactly one line on stderr naming the setting and the
//! fix, printed before anything listens; 1 for a failure at run time (a
//! source that cannot be reached, a lost listener), logged as one line in
//! the configured log format; 0 after a clean shutdown.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

/// Bad configuration: the one line on stderr and exit code 2.
fn refused(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("kipper-poll: {error}");
    ExitCode::from(2)
}

// One thread: a sidecar next to the function should use a fraction of a core,
// and without cross-thread wake-ups per request it does more per cycle
// (bench-poll: less CPU and RSS, more events/s than the multi-thread runtime).
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    kipper_tls::install_crypto_provider();
    let args = match kipper_poll::config::Args::parse_one_line() {
        Ok(args) => args,
        Err(line) => return refused(&line),
    };
    let config = match args.into_config(&|name: &str| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(error) => return refused(&error),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr, as kipper-shim's and kipper-controller's do; colour
    // codes only on a terminal, never into a file or a pipe.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if config.log_format.is_json() {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
    let signal = match kipper_contract::shutdown::signal() {
        Ok(signal) => signal,
        Err(error) => {
            tracing::error!(message = "Cannot handle SIGTERM.", %error);
            return ExitCode::FAILURE;
        }
    };
    // Every loop of the sidecar selects on one token (tasks hold clones of it);
    // the signal cancels it.
    let shutdown = CancellationToken::new();
    let cancel = shutdown.clone();
    tokio::spawn(async move {
        signal.await;
        cancel.cancel();
    });
    match kipper_poll::run(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.is_config() => refused(&error),
        Err(error) => {
            tracing::error!(message = "kipper-poll stopped.", %error);
            ExitCode::FAILURE
        }
    }
}
