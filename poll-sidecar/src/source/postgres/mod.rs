//! The PostgreSQL trigger (tokio-postgres): the claim engine
//! ([`crate::source::sql::claim`]) over session-level advisory locks
//! (`pg_try_advisory_lock` on `hashtextextended` of the row's identity). The
//! design and its reasons are in [`crate::source::sql`] and ARCHITECTURE.md;
//! this module keeps only what is PostgreSQL's:
//!
//! - `statements`: the SQL wrapped around the user's query;
//! - `session`: opening a session, with a fence cancelled when its
//!   connection task ends, the server's uptime, the query's columns;
//! - `claimer`: the claim session (claim, lease, re-read, unlock, relock,
//!   count), shared with the background settlement so a batch's locks are
//!   released right after its COMMIT;
//! - `keeper`: the lease keeper's session, which creates the lease table;
//! - `writer`: the writer session, the mark-dones of a batch pipelined in
//!   one transaction;
//! - `json`: rows to JSON, straight from the binary wire format.

mod claimer;
mod json;
mod keeper;
mod session;
mod statements;
mod writer;

use bytes::Bytes;

pub use json::{Raw, write_value};

use super::sql::claim::{Driver, DriverSettings, Opened, SqlHandle, SqlSource};
use super::sql::fnv64;
use crate::config::SqlConfig;
use crate::{Error, Result};
use claimer::Claimer;
use keeper::PgKeeper;
use writer::Writer;

/// The PostgreSQL source: the claim engine over [`PostgresDriver`].
pub type PostgresSource = SqlSource<PostgresDriver>;

/// What a PostgreSQL handle keeps for the mark-done / mark-failed: each bound
/// column's value in the binary format it was read in.
pub type PgValues = Box<[Option<Bytes>]>;

/// A claimed PostgreSQL row.
pub type PgHandle = SqlHandle<PgValues>;

/// PostgreSQL's side of the claim engine: the settings its sessions are
/// opened with.
#[derive(Debug, Clone)]
pub struct PostgresDriver {
    settings: DriverSettings,
    /// Namespaces this query's advisory locks (63 bits: `hashtextextended`
    /// takes a bigint seed).
    seed: i64,
}

impl PostgresSource {
    /// Connects both sessions and prepares every statement, so a query or
    /// placeholder that does not fit fails here, at start, with one line.
    pub async fn connect(config: &SqlConfig) -> Result<Self> {
        let driver = PostgresDriver {
            seed: i64::from_ne_bytes(fnv64(&config.query).to_ne_bytes()) & 0x7fff_ffff_ffff,
            settings: DriverSettings::new(config),
        };
        SqlSource::start(driver, config).await
    }
}

impl Driver for PostgresDriver {
    const KIND: &'static str = "postgres";
    type Values = PgValues;
    type Session = Claimer;
    type Writer = Writer;
    type Keeper = PgKeeper;

    async fn open_session(&self) -> Result<Opened<Claimer>> {
        Claimer::open(&self.settings, self.seed).await
    }

    async fn open_writer(&self) -> Result<Writer> {
        Writer::open(&self.settings.config, self.settings.bound.clone()).await
    }

    async fn open_keeper(&self) -> Result<PgKeeper> {
        PgKeeper::open(&self.settings.config, self.settings.holder.clone()).await
    }

    fn breaks_session(error: &Error) -> bool {
        // The connection task also cancels the fence when it ends.
        matches!(error, Error::Postgres(e) if e.is_closed())
    }
}
