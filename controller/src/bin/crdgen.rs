//! Prints the `Function` CustomResourceDefinition as YAML; `deploy/crd.yaml` is its output:
//! `cargo run -p kipper-controller --bin crdgen > controller/deploy/crd.yaml`.

fn main() -> anyhow::Result<()> {
    print!("{}", kipper_controller::crd::crd_yaml()?);
    Ok(())
}
