//! kipper-controller's start through the real binary: bad configuration is
//! exit code 2 and exactly one line on stderr, the rule of all three binaries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn refused(env: &[(&str, &str)], line: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_kipper-controller"))
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr, format!("{line}\n"), "exactly one line on stderr");
}

#[test]
fn a_missing_cluster_domain_is_one_line_and_exit_code_2() {
    refused(
        &[],
        "kipper-controller: KIPPER_CLUSTER_DOMAIN (--cluster-domain) is required: the public domain of function URLs, e.g. KIPPER_CLUSTER_DOMAIN=46-225-91-12.kipper.run",
    );
}

#[test]
fn a_bad_cluster_domain_is_one_line_and_exit_code_2() {
    refused(
        &[("KIPPER_CLUSTER_DOMAIN", "Not A Domain")],
        "kipper-controller: --cluster-domain / KIPPER_CLUSTER_DOMAIN \"Not A Domain\" is not a DNS name: use e.g. 46-225-91-12.kipper.run",
    );
}
