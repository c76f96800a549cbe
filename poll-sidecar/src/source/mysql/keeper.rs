//! The MySQL / MariaDB lease keeper's session (its own connection), and the
//! lease table the claim session makes sure of when it opens (after the
//! query was checked): created if missing, and usable by this user. A table
//! pre-created by an administrator needs no CREATE right.

use std::collections::HashMap;
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Statement, Value};

use super::claimer::padded_names;
use super::session::{self, cached, server_message};
use super::statements;
use crate::Result;
use crate::config::SqlConfig;
use crate::source::sql::claim::{KeeperSession, LockKey};
use crate::source::sql::{lease_rights_missing, lease_table_refused};

/// Keys renewed per statement.
const RENEW_CHUNK: usize = 256;

/// The keeper's connection and its renewal statements (by padded size).
#[derive(Debug)]
pub struct MyKeeper {
    conn: Conn,
    renew: HashMap<usize, Statement>,
    config: SqlConfig,
    seed: u64,
    holder: Arc<str>,
}

impl MyKeeper {
    /// Connects.
    pub async fn open(config: &SqlConfig, seed: u64, holder: Arc<str>) -> Result<Self> {
        let mut conn = session::connect(config).await?;
        session::lease_isolation(&mut conn).await?;
        Ok(Self {
            conn,
            renew: HashMap::new(),
            config: config.clone(),
            seed,
            holder,
        })
    }
}

impl KeeperSession for MyKeeper {
    async fn renew(&mut self, keys: &[LockKey]) -> Result<()> {
        let holder = Value::from(&*self.holder);
        let ttl = self.config.lease_ttl;
        for chunk in keys.chunks(RENEW_CHUNK) {
            let padded = chunk.len().next_power_of_two();
            let renew = cached(&mut self.conn, &mut self.renew, padded, |n| {
                statements::renew(n, ttl)
            })
            .await?;
            let params = padded_names(self.seed, chunk, padded, std::slice::from_ref(&holder));
            self.conn.exec_drop(&renew, params).await?;
        }
        Ok(())
    }

    async fn sweep(&mut self) -> Result<u64> {
        self.conn.query_drop(statements::sweep()).await?;
        Ok(self.conn.affected_rows())
    }

    /// InnoDB's purge reclaims deleted leases by itself.
    fn compact(&mut self) {}
}

/// Creates the lease table unless it exists, then checks this user's rights
/// on it: a refusal is bad configuration, with the fix.
pub async fn lease_table(conn: &mut Conn, config: &SqlConfig) -> Result<()> {
    let user = &config.connection.user;
    let exists = async |conn: &mut Conn| -> Result<bool> {
        let n: Option<u64> = conn.query_first(statements::LEASES_EXIST).await?;
        Ok(n.unwrap_or(0) > 0)
    };
    if !exists(conn).await?
        && let Err(error) = conn.query_drop(statements::CREATE_LEASES).await
    {
        if !matches!(error, mysql_async::Error::Server(_)) {
            return Err(error.into());
        }
        // Another replica may have created it meanwhile.
        if !exists(conn).await? {
            return Err(lease_table_refused(
                user,
                &server_message(&error),
                "the database",
                statements::CREATE_LEASES,
            ));
        }
    }
    for probe in statements::LEASE_RIGHTS {
        match conn.query_drop(probe).await {
            Ok(()) => {}
            Err(mysql_async::Error::Server(error)) => {
                return Err(lease_rights_missing(user, &error.message));
            }
            Err(other) => return Err(other.into()),
        }
    }
    Ok(())
}
