//! kipper-poll: parse the configuration, start logging, run until SIGTERM.

use clap::Parser;

// One thread: a sidecar next to the function should use a fraction of a core,
// and without cross-thread wake-ups per request it does more per cycle
// (bench-poll: less CPU and RSS, more events/s than the multi-thread runtime).
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    kipper_tls::install_crypto_provider();
    let args = kipper_poll::config::Args::parse();
    let config = match args.into_config(&|name: &str| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("kipper-poll: {error}");
            std::process::exit(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if config.log_json {
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let shutdown = kipper_poll::shutdown::on_signal()?;
    if let Err(error) = kipper_poll::run(config, shutdown).await {
        tracing::error!(message = "kipper-poll failed.", %error);
        eprintln!("kipper-poll: {error}");
        std::process::exit(1);
    }
    Ok(())
}
