//! The `kipper-controller` binary refuses bad configuration at start, before touching the
//! cluster, with one line naming the setting and the fix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn controller(env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kipper-controller"))
        .env_remove("KIPPER_CLUSTER_DOMAIN")
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_settings_fail_fast_with_one_line() {
    let (ok, err) = controller(&[]);
    assert!(!ok);
    assert!(err.contains("--cluster-domain"), "{err}");

    let (ok, err) = controller(&[("KIPPER_CLUSTER_DOMAIN", "Not A Domain")]);
    assert!(!ok);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("KIPPER_CLUSTER_DOMAIN") && err.contains("use e.g."),
        "{err}"
    );

    let (ok, err) = controller(&[
        ("KIPPER_CLUSTER_DOMAIN", "a.b"),
        ("KIPPER_PENDING_URL", "keda"),
    ]);
    assert!(!ok);
    assert!(err.contains("KIPPER_PENDING_URL"), "{err}");

    // Valid settings get as far as the cluster, and say what is missing there.
    let (ok, err) = controller(&[
        ("KIPPER_CLUSTER_DOMAIN", "a.b"),
        ("KIPPER_LISTEN", "127.0.0.1:0"),
    ]);
    assert!(!ok);
    assert!(err.to_lowercase().contains("kube"), "{err}");
}
