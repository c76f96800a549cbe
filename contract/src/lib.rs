//! What the three Kipper binaries (kipper-poll, kipper-shim, kipper-controller) agree on, in one
//! place so that a change breaks the build instead of a pod.
//!
//! - [`duration`]: the one format of every duration setting (`20s`, `500ms`, `1m30s`).
//! - [`log_format`]: `KIPPER_LOG_FORMAT`, `json` (the default) or `text`.
//! - [`command_line`] (feature `clap`): a bad command line or environment as the one line
//!   every binary prints before it exits with code 2.
//! - [`shutdown`] (feature `signal`): the one shutdown future, SIGTERM or SIGINT.
//!
//! The settings every binary shares have one name and one meaning:
//!
//! | setting | meaning |
//! |---|---|
//! | `KIPPER_SHUTDOWN_GRACE` | how long SIGTERM lets in-flight work finish; a duration, a bare number is seconds |
//! | `KIPPER_LOG_FORMAT` | `json` (default) or `text`, on stderr |
//! | `KIPPER_ADMIN_PORT` | port of `/metrics` and the health endpoints |

#[cfg(feature = "clap")]
pub mod command_line;
pub mod duration;
pub mod log_format;
#[cfg(feature = "signal")]
pub mod shutdown;

pub use duration::{parse_duration, parse_duration_or_seconds};
pub use log_format::LogFormat;
