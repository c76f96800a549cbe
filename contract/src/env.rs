//! Environment variable names that kipper-controller's renderer writes into a pod and that
//! kipper-poll or kipper-shim read (CONTRACT sections 1, 2 and 4). Both sides use these
//! constants (clap's `env = kipper_contract::env::TRIGGER` takes a const), so renaming one
//! changes the writer and the reader together.
//!
//! Only the names that cross between binaries are here. A setting that only a user writes
//! (say `KIPPER_HOLD_MAX`) is one binary's own interface and stays in that binary's config.

/// Listen port of the function (kipper-shim).
pub const PORT: &str = "PORT";

/// `http`, `batch` or `install` (kipper-shim); values in [`mode`].
pub const MODE: &str = "KIPPER_MODE";

/// The trigger name (both binaries); values are [`crate::Trigger`] names.
pub const TRIGGER: &str = "KIPPER_TRIGGER";

/// `node` or `python` (kipper-shim).
pub const RUNTIME: &str = "KIPPER_RUNTIME";

/// Mounted cache of installed dependencies (kipper-shim).
pub const DEPS_CACHE: &str = "KIPPER_DEPS_CACHE";

/// Where kipper-poll POSTs events: the shim's `/event`.
pub const TARGET_URL: &str = "KIPPER_TARGET_URL";

/// kipper-poll's readiness URL of the target, probed before claiming.
pub const TARGET_READY_URL: &str = "KIPPER_TARGET_READY_URL";

/// The function's name (kipper-poll): names its checkpoint and lease objects and its logs.
pub const FUNCTION_NAME: &str = "KIPPER_FUNCTION_NAME";

/// SQL triggers: the polling query (kipper-poll).
pub const QUERY: &str = "KIPPER_QUERY";

/// SQL triggers: the statement run after a 2xx (kipper-poll).
pub const MARK_DONE: &str = "KIPPER_MARK_DONE";

/// Redis trigger: the list used as a queue (kipper-poll).
pub const REDIS_LIST: &str = "KIPPER_REDIS_LIST";

/// MinIO trigger: the watched bucket (kipper-poll).
pub const MINIO_BUCKET: &str = "KIPPER_MINIO_BUCKET";

/// The values of [`MODE`]. Usable as `match` patterns.
pub mod mode {
    /// Serve HTTP (the default).
    pub const HTTP: &str = "http";
    /// Invoke the handler once, print the result and exit (CronJob, test-run Job).
    pub const BATCH: &str = "batch";
    /// Install the dependencies into the cache and exit (the pod's init step).
    pub const INSTALL: &str = "install";
}
