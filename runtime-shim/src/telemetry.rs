//! Logging set-up: `tracing` key/value lines on stderr (stdout stays free for
//! the result that batch mode prints), text or JSON.

use std::io::IsTerminal as _;

use kipper_contract::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; `RUST_LOG` overrides the `info` default.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = if format.is_json() {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
