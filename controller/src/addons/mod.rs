//! Typed objects of the add-ons the controller renders into: KEDA (`keda.sh`), the KEDA HTTP
//! add-on (`http.keda.sh`) and Traefik (`traefik.io`).
//!
//! Written by hand from the CRDs in `../shared/schemas/` in the shape `kopium` generates
//! (`#[derive(CustomResource)]` with the schema disabled, `Option` for every optional field),
//! because building `kopium` takes too long on this machine. They cover the fields the renderer
//! uses, not every field of those CRDs; the tests validate every rendered object against the
//! CRD schemas, so a misspelt or mistyped field fails there.

pub mod http_addon;
pub mod keda;
pub mod traefik;
