//! `kipper-shim`: parse the configuration, start telemetry, run.
//!
//! Exit codes (the same rule in kipper-poll and kipper-controller): 2 for bad
//! configuration, with exactly one line on stderr naming the setting and the
//! fix, printed before any port is bound; 1 for a failure at run time (a
//! port in use, a batch invocation that failed), logged in the configured
//! format; 0 otherwise.

use std::process::ExitCode;

use kipper_shim::config::Args;

/// Bad configuration: the one line on stderr and exit code 2.
fn refused(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("kipper-shim: {error}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args = match Args::parse_one_line() {
        Ok(args) => args,
        Err(line) => return refused(&line),
    };
    let config = match args.into_config() {
        Ok(config) => config,
        Err(error) => return refused(&error),
    };
    kipper_shim::telemetry::init(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(message = "cannot start the async runtime", %error);
            return ExitCode::FAILURE;
        }
    };
    // The signal handlers are installed on this runtime, before anything is bound.
    let signal = {
        let _entered = runtime.enter();
        kipper_contract::shutdown::signal()
    };
    let signal = match signal {
        Ok(signal) => signal,
        Err(error) => {
            tracing::error!(message = "cannot handle SIGTERM", %error);
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(kipper_shim::run(config, signal)) {
        Ok(code) => code,
        Err(error @ kipper_shim::Error::Config { .. }) => {
            runtime.shutdown_timeout(std::time::Duration::from_millis(100));
            return refused(&error);
        }
        Err(error) => {
            tracing::error!(message = "kipper-shim stopped", %error);
            1
        }
    };
    // Workers and in-flight tasks are done; do not wait for stray blocking tasks.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    std::process::exit(code);
}
