//! Event sources: one module per trigger behind the [`Source`] trait, chosen
//! by the closed [`crate::config::SourceConfig`] enum. Delivery, retries and
//! pacing are written once in [`crate::pump`]; a source only claims,
//! acknowledges, dead-letters and releases.
//!
//! # The interface (what a source implements)
//!
//! - [`Source::claim`]`(max)`: up to `max` events that no other replica holds
//!   now, each a [`Claimed`] with an idempotency id (stable across replicas
//!   and restarts), the JSON body bytes and a source-specific `Handle`. An
//!   empty batch means idle. A claim must never hand out an event this same
//!   source already holds (the pump keeps them in flight).
//! - [`Source::ack`]`(events)`: the events got a 2xx; remove them from the
//!   source (mark-done, LREM, checkpoint), batched, then let go of the hold.
//! - [`Source::dead_letter`]`(events)`: these exhausted their attempts; park
//!   them where they will not be claimed again (mark-failed, a dead list, a
//!   log line) and let go of the hold.
//! - [`Source::release`]`(events)`: shutdown; give them back undelivered so
//!   another replica (or the next start) takes them.
//! - [`Source::flush`]: wait for acknowledgements still running in the
//!   background (a source may return from `ack` before its writes commit;
//!   its next `ack` or `flush` reports their errors). Default: nothing.
//! - [`Source::backlog`]: pending count for the backlog gauge, when cheap.
//! - [`Source::close`]: the pump has stopped (after `flush`); end what the
//!   source keeps up beside its events now rather than when it times out
//!   (Redis leaves the consumer registry, S3 gives the bucket lease up).
//!   Called once, last. Default: nothing.
//! - [`Source::fence`]`(handle)`: a token the source cancels when it loses its
//!   claim on the event (a SQL session ended with its server); the pump then
//!   starts no further attempt of it and hands it back through `release`.
//!   Default: none (the claim cannot be lost while the process lives).
//!
//! Each method gets the whole batch so a source can make one round trip of
//! it. The pump calls them from one task, one at a time (`&mut self`). A
//! failed `ack` is logged by the pump and not retried: the events stay in the
//! source and are redelivered later (at-least-once).
//!
//! The pump is generic over `S: Source` and [`crate::run`] matches the config
//! enum once, so the hot path is statically dispatched, never boxed.

pub mod mysql;
pub mod postgres;
pub mod redis;
pub mod s3;
pub mod sql;

use std::future::Future;

use bytes::Bytes;

use crate::Result;
use crate::delivery::Failure;

/// An event held by this replica until it is acknowledged, dead-lettered or
/// released.
#[derive(Debug, Clone)]
pub struct Claimed<H> {
    /// Idempotency id sent as the `Idempotency-Key` header: the same event
    /// gets the same id on every delivery, from any replica.
    pub id: String,
    /// The JSON body POSTed to the target.
    pub body: Bytes,
    /// What the source needs to acknowledge or release the event.
    pub handle: H,
}

/// An event that exhausted its attempts, with the reason of the last failure.
#[derive(Debug, Clone)]
pub struct DeadLetter<H> {
    /// The event.
    pub event: Claimed<H>,
    /// Attempts made.
    pub attempts: u32,
    /// The last failure; its text (e.g. `HTTP 500`, `timed out after 30s`)
    /// is what a source writes where it parks the event.
    pub error: Failure,
}

/// A source of events; see the module docs for the contract.
pub trait Source: Send + 'static {
    /// Per-event data the source needs back to acknowledge or release.
    type Handle: Send + Sync + 'static;

    /// Short name for logs and metrics, e.g. `postgres`.
    fn kind(&self) -> &'static str;

    /// Claims up to `max` events no other replica holds; empty when idle.
    fn claim(
        &mut self,
        max: usize,
    ) -> impl Future<Output = Result<Vec<Claimed<Self::Handle>>>> + Send;

    /// Removes delivered events from the source and lets go of them.
    fn ack(&mut self, events: &[Claimed<Self::Handle>]) -> impl Future<Output = Result<()>> + Send;

    /// Parks events that exhausted their attempts and lets go of them.
    fn dead_letter(
        &mut self,
        events: &[DeadLetter<Self::Handle>],
    ) -> impl Future<Output = Result<()>> + Send;

    /// Gives held events back undelivered (shutdown).
    fn release(
        &mut self,
        events: &[Claimed<Self::Handle>],
    ) -> impl Future<Output = Result<()>> + Send;

    /// Waits for acknowledgements the source still runs in the background;
    /// the pump calls it before it stops.
    fn flush(&mut self) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// A token cancelled when this replica's claim on the event is lost; no
    /// attempt of the event may start after that.
    fn fence(handle: &Self::Handle) -> Option<&tokio_util::sync::CancellationToken> {
        let _ = handle;
        None
    }

    /// Ends what the source keeps up beside its events (a registration, a
    /// lease) so that another replica takes over at once; the pump calls it
    /// once, after [`Source::flush`], as the last call. A failure is logged:
    /// what the source held comes back when its lease expires.
    fn close(&mut self) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Events waiting in the source, if the source can count them cheaply.
    fn backlog(&mut self) -> impl Future<Output = Result<Option<u64>>> + Send {
        async { Ok(None) }
    }
}
