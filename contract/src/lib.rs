//! The contracts between Kipper's binaries, written once.
//!
//! kipper-controller renders pods whose environment kipper-poll and kipper-shim read, and it
//! scales minio functions from a checkpoint object that kipper-poll writes. Each side used to
//! spell these names and formats out for itself, so a rename on one side compiled and broke a
//! running pod. Here each contract has one definition that both sides import, so a rename breaks
//! the build instead:
//!
//! - [`env`]: the variable names the controller's renderer writes and the binaries read, and the
//!   values of `KIPPER_MODE`;
//! - [`binding`]: the service-binding variables (`DB_HOST`, `S3_ENDPOINT`, ...);
//! - [`trigger`]: the trigger names (`KIPPER_TRIGGER`, the CRD's `triggers[].type`, `kip
//!   function create --trigger`, the `kipper.run/trigger` label);
//! - [`checkpoint`]: the S3 checkpoint object: its reserved prefix and key, its JSON layout,
//!   etag unquoting, and both readings of it (kipper-poll's diff, the controller's pending count).
//!
//! Pure data and pure functions only, depending on `serde` alone: no I/O, no S3 client (the one
//! S3 client builder lives in `kipper-tls`, beside the HTTPS client it needs).
//!
//! **Architecture Invariant:** a name or format that one binary writes and another reads is
//! defined here and nowhere else.

pub mod binding;
pub mod checkpoint;
pub mod env;
pub mod trigger;

pub use trigger::{Trigger, UnknownTrigger};
