//! kipper-controller: parse config, start telemetry, run.
//!
//! Exit codes, the rule of all three binaries: 2 for bad configuration (one
//! line naming the setting and the fix, before anything listens), 1 for a
//! failure at run time.

use std::process::ExitCode;

use kipper_controller::config::ControllerArgs;

#[tokio::main]
async fn main() -> ExitCode {
    kipper_tls::install_crypto_provider();
    let config = match ControllerArgs::parse_one_line()
        .and_then(|args| args.validate().map_err(|e| e.to_string()))
    {
        Ok(config) => config,
        Err(line) => {
            eprintln!("kipper-controller: {line}");
            return ExitCode::from(2);
        }
    };
    kipper_controller::telemetry::init(config.log_format);
    let signal = match kipper_contract::shutdown::signal() {
        Ok(signal) => signal,
        Err(e) => {
            eprintln!("kipper-controller: cannot handle SIGTERM: {e}");
            return ExitCode::FAILURE;
        }
    };
    match kipper_controller::run(config, signal).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line; no backtrace for a failure the user can act on.
            eprintln!("kipper-controller: {e}");
            ExitCode::FAILURE
        }
    }
}
