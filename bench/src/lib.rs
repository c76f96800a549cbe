//! The benchmark harness of the hot paths. Each benchmark starts the real
//! binaries against real services, measures, and prints a [`report::Table`]
//! with the figures and, measured in the same run, the ceilings and
//! baselines they are compared with, and the tools a user would pick instead
//! (`peers`). Benchmarks report; they assert nothing.

pub mod build;
pub mod controller;
pub mod peers;
pub mod poll;
pub mod report;
pub mod shim;
