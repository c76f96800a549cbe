//! kipper-controller: parse config, start telemetry, run.

use std::process::ExitCode;

use clap::Parser;
use kipper_controller::config::ControllerArgs;

async fn start() -> anyhow::Result<()> {
    let config = ControllerArgs::parse().validate()?;
    kipper_controller::telemetry::init(config.log_json);
    kipper_controller::run(config, kipper_controller::shutdown_signal()).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    kipper_tls::install_crypto_provider();
    match start().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line naming the setting and the fix; no backtrace for a user's mistake.
            eprintln!("kipper-controller: {e}");
            ExitCode::FAILURE
        }
    }
}
