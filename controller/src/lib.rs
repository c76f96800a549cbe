//! kipper-controller: turns `kipper.run/v1alpha1` `Function` resources into the Kubernetes,
//! KEDA and Traefik objects that run them, and serves the `kip function` CLI.
//!
//! The crate is lean on purpose: it renders and applies; Kubernetes schedules and KEDA scales.
//! - [`crd`]: the `Function` resource (spec, status, defaults, validation).
//! - [`addons`]: typed KEDA, HTTP add-on and Traefik objects, written from `../shared/schemas/`.
//! - [`render`]: the pure renderer, `Function` + service facts -> objects; no cluster needed.
//! - [`controller`]: the reconcile loop (server-side apply, pruning, status, hostname checks).
//! - [`pending`]: counts a bucket's pending changes for KEDA's `metrics-api` trigger (minio).
//! - [`cli`]: the `kip function` commands.

pub mod addons;
pub mod cli;
pub mod config;
pub mod controller;
pub mod crd;
pub mod error;
pub mod facts;
pub mod metrics;
pub mod pending;
pub mod render;
pub mod schedule;
pub mod server;
pub mod telemetry;

pub use error::{Error, Result};
