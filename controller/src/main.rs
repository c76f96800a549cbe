//! kipper-controller: parse config, start telemetry, run.

use clap::Parser;
use kipper_controller::config::ControllerArgs;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = ControllerArgs::parse().validate()?;
    kipper_controller::telemetry::init(config.log_json);
    kipper_controller::run(config, kipper_controller::shutdown_signal()).await?;
    Ok(())
}
