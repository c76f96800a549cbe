//! Release builds of the binaries a benchmark runs, once per run.
//!
//! `--workspace` (with `--bin`, so only the named binaries are built) resolves dependency
//! features as `cargo run -p kipper-bench` did, which depends on every member: the
//! dependencies and libraries the bench was just built with are reused, and only the
//! binaries' `main.rs` are compiled and linked. `-p <crate>` alone selects fewer features of
//! shared dependencies (serde, tracing, tokio-util, ...) and rebuilt them, minutes per run.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::Context;

/// Builds `names` in release mode (one cargo call) and returns their paths, in order.
pub fn release_binaries(names: &[&str]) -> anyhow::Result<Vec<PathBuf>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut args = vec!["build", "--release", "--workspace", "--message-format=json"];
    for name in names {
        args.extend(["--bin", name]);
    }
    eprintln!("bench: cargo {} (reuses the bench's build)", args.join(" "));
    let out = Command::new(cargo)
        .args(&args)
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build")?;
    anyhow::ensure!(out.status.success(), "cargo {} failed", args.join(" "));
    let executables: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|m| m["executable"].as_str().map(PathBuf::from))
        .collect();
    names
        .iter()
        .map(|name| {
            executables
                .iter()
                .find(|p| p.file_name().is_some_and(|n| n == *name))
                .cloned()
                .with_context(|| format!("cargo did not report the {name} executable"))
        })
        .collect()
}
