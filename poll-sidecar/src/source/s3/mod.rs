//! The MinIO / S3 trigger (`KIPPER_TRIGGER=minio`), in two modes.
//! - Poll (default, any S3-compatible server): list the bucket, diff it against the checkpoint,
//!   deliver each created, overwritten or deleted object as an S3 event record, then checkpoint.
//! - Webhook (upstream-compatible): receive MinIO's webhook notifications and deliver their
//!   records, answering MinIO non-2xx when the function did not accept them.

pub mod bucket;
pub mod checkpoint;
pub mod lease;
pub mod record;
