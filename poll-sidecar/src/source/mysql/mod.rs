//! The MySQL / MariaDB trigger (mysql_async): the claim engine
//! ([`crate::source::sql::claim`]) over `GET_LOCK` session locks. The design
//! is in [`crate::source::sql`]; this module keeps only what is MySQL's:
//!
//! - `statements`: the SQL wrapped around the user's query, with the lock
//!   taken in the select list behind an `IS_USED_LOCK(..) IS NULL` filter;
//! - `session`: opening the claim connection, with a watcher connection
//!   that pings every [`crate::source::sql::WATCH_EVERY`] and cancels the
//!   session's fence when the server is gone (mysql_async notices a closed
//!   connection only when it is used);
//! - `claimer`: claim, lease, re-read, unlock, relock and count on it;
//! - `keeper`: the lease keeper's connection, which creates the lease table;
//! - `writer`: the mark-dones of a batch in one transaction (one bulk
//!   execution on MariaDB);
//! - `json`: rows to JSON.

mod claimer;
mod json;
mod keeper;
mod session;
mod statements;
mod writer;

use mysql_async::Value;

use super::sql::claim::{Driver, DriverSettings, Opened, SqlHandle, SqlSource};
use super::sql::fnv64;
use crate::config::SqlConfig;
use crate::{Error, Result};
use keeper::MyKeeper;
use session::Session;
use writer::Writer;

/// The MySQL / MariaDB source: the claim engine over [`MysqlDriver`].
pub type MysqlSource = SqlSource<MysqlDriver>;

/// What a MySQL handle keeps for the mark-done / mark-failed: each bound
/// column's value as read.
pub type MyValues = Box<[Value]>;

/// A claimed MySQL row.
pub type MyHandle = SqlHandle<MyValues>;

/// MySQL's side of the claim engine: the settings its sessions are opened
/// with.
#[derive(Debug, Clone)]
pub struct MysqlDriver {
    settings: DriverSettings,
    /// Namespaces this query's lock names.
    seed: u64,
}

impl MysqlSource {
    /// Connects and prepares every statement, so a query or placeholder that
    /// does not fit fails here, at start, with one line.
    pub async fn connect(config: &SqlConfig) -> Result<Self> {
        let driver = MysqlDriver {
            seed: fnv64(&config.query),
            settings: DriverSettings::new(config),
        };
        SqlSource::start(driver, config).await
    }
}

impl Driver for MysqlDriver {
    const KIND: &'static str = "mysql";
    type Values = MyValues;
    type Session = Session;
    type Writer = Writer;
    type Keeper = MyKeeper;

    async fn open_session(&self) -> Result<Opened<Session>> {
        Session::open(&self.settings, self.seed).await
    }

    async fn open_writer(&self) -> Result<Writer> {
        Writer::open(&self.settings.config, self.settings.bound.clone()).await
    }

    async fn open_keeper(&self) -> Result<MyKeeper> {
        MyKeeper::open(
            &self.settings.config,
            self.seed,
            self.settings.holder.clone(),
        )
        .await
    }

    fn breaks_session(error: &Error) -> bool {
        // A server error leaves the connection usable; anything else (I/O,
        // a dropped connection, a protocol error) may not have.
        matches!(error, Error::Mysql(e) if !matches!(e, mysql_async::Error::Server(_)))
    }
}
