//! `kip`: the Kipper command line (functions, services, volumes, tunnels).

use std::io::{IsTerminal, Read};

use clap::Parser;
use kipper_controller::cli::{Io, Kip, KipCommand};

/// Reads a secret value: a no-echo prompt on a terminal, else all of standard input (one
/// trailing newline dropped).
fn read_secret(key: &str) -> kipper_controller::Result<String> {
    let io_err = |source| kipper_controller::Error::Io {
        context: format!("read the value of {key}"),
        source,
    };
    if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("Value for {key}: ")).map_err(io_err)
    } else {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(io_err)?;
        let trimmed = s.strip_suffix('\n').unwrap_or(&s);
        Ok(trimmed.strip_suffix('\r').unwrap_or(trimmed).to_owned())
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    kipper_tls::install_crypto_provider();
    match start().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn start() -> anyhow::Result<()> {
    let Kip { command } = Kip::parse();
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let mut reader = read_secret;
    let mut io = Io {
        out: &mut out,
        err: &mut err,
        read_secret: &mut reader,
    };
    let args = match command {
        KipCommand::Function(args) => args,
        other => return Ok(kipper_controller::cli::service::run(&other, &mut io).await?),
    };
    if let Some(result) = kipper_controller::cli::run_offline(&args, &mut io) {
        return Ok(result?);
    }
    let client = kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!(
            "no cluster to talk to ({}): set KUBECONFIG, or use --dry-run to render offline",
            kipper_controller::error::describe_kube(&e)
        )
    })?;
    kipper_controller::cli::run(&args, client, &mut io).await?;
    Ok(())
}
