//! `kipper-shim`: parse the configuration, start telemetry, run.

use clap::Parser;
use kipper_shim::config::Args;

fn main() -> anyhow::Result<()> {
    let config = Args::parse().into_config()?;
    kipper_shim::telemetry::init(config.json_logs);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let code = runtime.block_on(kipper_shim::run(config, kipper_shim::shutdown::signal()))?;
    // Workers and in-flight tasks are done; do not wait for stray blocking tasks.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    std::process::exit(code);
}
