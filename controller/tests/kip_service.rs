//! `kip service`, `kip volume`, `kip tunnel` offline, through the binary: `--dry-run` of every
//! type (schema-valid), and bad input that gets one line and opens no connection. The cluster
//! commands are in `kip_service_api.rs` (in-process) and `kip_service_bin.rs` (the binary).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fixtures;

use std::process::{Command, Output};

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

fn kip(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kip"))
        .args(args)
        // Offline means offline: no kubeconfig to find.
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KIP_PROJECT")
        .env_remove("KIP_ENVIRONMENT")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn dry_run_renders_every_type_offline_and_valid() {
    let dir = tempfile::tempdir().unwrap();
    let mut all = String::new();
    for (kind, name, storage) in [
        ("postgres", "mydb", "5Gi"),
        ("mysql", "shopdb", "5Gi"),
        ("mongodb", "docs", "5Gi"),
        ("redis", "cache", "1Gi"),
        ("rabbitmq", "queue", "1Gi"),
        ("opensearch", "search", "5Gi"),
        ("minio", "storage", "10Gi"),
    ] {
        let out = kip(&[
            "service",
            "add",
            kind,
            "--name",
            name,
            "--project",
            "yourr-name",
            "--environment",
            "test",
            "--dry-run",
            "-o",
            "yaml",
        ]);
        assert!(out.status.success(), "{kind}: {}", text(&out.stderr));
        let yaml = text(&out.stdout);
        let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&yaml)
            .map(|d| Value::deserialize(d).unwrap())
            .collect();
        let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        let want: &[&str] = if kind == "mysql" {
            &["Secret", "ConfigMap", "Service", "StatefulSet"]
        } else {
            &["Secret", "Service", "StatefulSet"]
        };
        assert_eq!(kinds, want, "{kind}");
        assert_eq!(docs[0]["metadata"]["name"], format!("{name}-credentials"));
        assert_eq!(docs[0]["metadata"]["namespace"], "yourr-name-test");
        let set = docs.last().unwrap();
        assert_eq!(
            set["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
            storage
        );
        // The generated password is in the Secret (the output is meant to be applied), and
        // stderr says so without printing it.
        let pw = base64::engine::general_purpose::STANDARD
            .decode(docs[0]["data"]["password"].as_str().unwrap())
            .unwrap();
        assert_eq!(pw.len(), 32);
        assert!(!text(&out.stderr).contains(&text(&pw)));
        all.push_str(&yaml);
    }
    let file = dir.path().join("all.yaml");
    std::fs::write(&file, all).unwrap();
    fixtures::kubernetes_validate(&file);
}

#[test]
fn dry_run_takes_size_resources_and_json() {
    let out = kip(&[
        "service",
        "add",
        "postgres",
        "--name",
        "db",
        "--storage",
        "2Gi",
        "--cpu-limit",
        "2",
        "--memory-request",
        "512Mi",
        "--storage-class",
        "local-path",
        "--dry-run",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let docs: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let set = &docs[2];
    let claim = &set["spec"]["volumeClaimTemplates"][0]["spec"];
    assert_eq!(claim["resources"]["requests"]["storage"], "2Gi");
    assert_eq!(claim["storageClassName"], "local-path");
    let r = &set["spec"]["template"]["spec"]["containers"][0]["resources"];
    assert_eq!(r["limits"]["cpu"], "2");
    assert_eq!(r["requests"]["memory"], "512Mi");
    assert_eq!(set["metadata"]["namespace"], "default");
}

#[test]
fn volume_dry_run_is_the_pvc_functions_mount() {
    let out = kip(&[
        "volume",
        "create",
        "cache",
        "--size",
        "3Gi",
        "--dry-run",
        "--project",
        "shop",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pvc: Value = serde_yaml::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(pvc["kind"], "PersistentVolumeClaim");
    assert_eq!(pvc["metadata"]["name"], "shared-cache");
    assert_eq!(pvc["metadata"]["namespace"], "shop");
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "3Gi");
    assert_eq!(pvc["spec"]["accessModes"][0], "ReadWriteOnce");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pvc.yaml");
    std::fs::write(&file, &out.stdout).unwrap();
    fixtures::kubernetes_validate(&file);
}

#[test]
fn bad_input_gets_one_clear_line_and_no_connection() {
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["service", "add", "cassandra", "--name", "x"],
            "error: unknown service type \"cassandra\": use one of postgres, mysql, mongodb, redis, rabbitmq, opensearch, minio",
        ),
        (
            vec![
                "service",
                "add",
                "redis",
                "--name",
                "cache",
                "--storage",
                "1GB",
            ],
            "error: --storage \"1GB\" is not a storage size",
        ),
        (
            vec![
                "service",
                "add",
                "redis",
                "--name",
                "cache",
                "--storage",
                "0Gi",
            ],
            "error: --storage \"0Gi\" is not a storage size",
        ),
        (
            vec!["service", "add", "postgres", "--name", "My_DB"],
            "error: service name \"My_DB\" is not a DNS label",
        ),
        (
            vec![
                "service",
                "add",
                "postgres",
                "--name",
                "db",
                "--cpu-limit",
                "lots",
            ],
            "error: --cpu-limit \"lots\" is not a CPU quantity",
        ),
        (
            vec!["service", "delete", "mydb"],
            "error: refusing to delete service mydb: this destroys its volume and all its data; rerun with --delete-data to confirm",
        ),
        (
            vec!["service", "info", "db.x"],
            "error: service name \"db.x\" is not a DNS label",
        ),
        (
            vec!["service", "bind", "db", "api", "--prefix", "lower_"],
            "error: --prefix \"lower_\" is not valid",
        ),
        (
            vec!["service", "copy-data", "db", "--from-environment", "test"],
            "error: copy-data needs the environment to copy into",
        ),
        (
            vec!["volume", "create", "cache", "--size", "big"],
            "error: --size \"big\" is not a storage size",
        ),
        (
            vec!["volume", "delete", "Cache"],
            "error: volume name \"Cache\" is not a DNS label",
        ),
        (
            vec!["tunnel", "My.db"],
            "error: service name \"My.db\" is not a DNS label",
        ),
    ];
    for (args, want) in cases {
        let out = kip(&args);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with(want), "{args:?}: {err}");
        // Rejected before any connection: the missing kubeconfig is never mentioned.
        assert!(!err.contains("cannot reach the cluster"), "{args:?}: {err}");
    }
    // Valid input without a cluster says so, in one line.
    let out = kip(&["service", "list"]);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot reach the cluster"), "{err}");
}

#[test]
fn help_lists_the_new_commands() {
    let out = kip(&["--help"]);
    let help = text(&out.stdout);
    for c in ["function", "service", "volume", "tunnel"] {
        assert!(help.contains(c), "{help}");
    }
    let out = kip(&["service", "--help"]);
    let help = text(&out.stdout);
    for c in [
        "add",
        "list",
        "info",
        "delete",
        "bind",
        "unbind",
        "copy-data",
    ] {
        assert!(help.contains(c), "{help}");
    }
}
