//! The checked-in manifests: `deploy/crd.yaml` is what `crdgen` prints now, it is a valid
//! CustomResourceDefinition, and `deploy/controller.yaml` passes kubernetes-validate --strict.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fixtures;

use std::path::Path;

#[test]
fn checked_in_crd_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/crd.yaml");
    let checked_in = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        checked_in,
        kipper_controller::crd::crd_yaml().unwrap(),
        "deploy/crd.yaml is stale: cargo run -p kipper-controller --bin crdgen > controller/deploy/crd.yaml"
    );
}

#[test]
fn manifests_are_valid_kubernetes_objects() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    fixtures::kubernetes_validate(&dir.join("crd.yaml"));
    fixtures::kubernetes_validate(&dir.join("controller.yaml"));
}
