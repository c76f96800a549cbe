//! One TLS crypto provider in the whole workspace: a second one (aws-lc-rs, the default of
//! rustls and of the S3 SDK's HTTPS client) would make rustls refuse to pick one by itself,
//! and any library that asks for the process default would panic at its first handshake.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn aws_lc_rs_is_not_in_the_dependency_graph() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--workspace",
            "--locked",
            "--offline",
            "--edges",
            "normal,build,dev",
            "--invert",
            "aws-lc-rs",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("did not match any packages"),
        "aws-lc-rs is in the dependency graph; keep ring the only rustls provider:\n{}{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
}
