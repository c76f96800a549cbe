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
//! And what the three binaries agree on about their own settings:
//!
//! - [`duration`]: the one format of every duration setting (`20s`, `500ms`, `1m30s`).
//! - [`log_format`]: `KIPPER_LOG_FORMAT`, `json` (the default) or `text`.
//! - [`command_line`] (feature `clap`): a bad command line or environment as the one line
//!   every binary prints before it exits with code 2.
//! - [`shutdown`] (feature `signal`): the one shutdown future, SIGTERM or SIGINT.
//!
//! | setting | meaning |
//! |---|---|
//! | `KIPPER_SHUTDOWN_GRACE` | how long SIGTERM lets in-flight work finish; a duration, a bare number is seconds |
//! | `KIPPER_LOG_FORMAT` | `json` (default) or `text`, on stderr |
//! | `KIPPER_ADMIN_PORT` | port of `/metrics` and the health endpoints |
//!
//! Pure data and pure functions by default, depending on `serde` alone: no I/O, no S3 client
//! (the one S3 client builder lives in `kipper-tls`, beside the HTTPS client it needs).
//!
//! **Architecture Invariant:** a name or format that one binary writes and another reads is
//! defined here and nowhere else.

pub mod binding;
pub mod checkpoint;
#[cfg(feature = "clap")]
pub mod command_line;
pub mod duration;
pub mod env;
pub mod log_format;
#[cfg(feature = "signal")]
pub mod shutdown;
pub mod trigger;

pub use duration::{parse_duration, parse_duration_or_seconds};
pub use log_format::LogFormat;
pub use trigger::{Trigger, UnknownTrigger};
