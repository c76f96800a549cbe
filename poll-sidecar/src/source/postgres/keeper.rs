//! The PostgreSQL lease keeper's session (its own connection), and the lease
//! table the claim session makes sure of when it opens (after the query was
//! checked): created if missing, and usable by this user. A table
//! pre-created by an administrator needs no CREATE right.

use std::sync::Arc;

use tokio_postgres::{Client, Statement};

use super::session::{self, db_message};
use super::statements;
use crate::Result;
use crate::config::SqlConfig;
use crate::source::sql::claim::{KeeperSession, LockKey};
use crate::source::sql::{lease_rights_missing, lease_table_refused};

/// The keeper's session and its renewal statement.
#[derive(Debug)]
pub struct PgKeeper {
    client: Client,
    renew: Statement,
    sweep: Statement,
    holder: Arc<str>,
}

impl PgKeeper {
    /// Connects and prepares the renewal.
    pub async fn open(config: &SqlConfig, holder: Arc<str>) -> Result<Self> {
        let client = session::connect(config).await?;
        let renew = client.prepare(&statements::renew(config.lease_ttl)).await?;
        let sweep = client.prepare(&statements::sweep()).await?;
        Ok(Self {
            client,
            renew,
            sweep,
            holder,
        })
    }
}

impl KeeperSession for PgKeeper {
    async fn renew(&mut self, keys: &[LockKey]) -> Result<()> {
        let keys: Vec<i64> = keys.iter().map(|k| k.as_i64()).collect();
        self.client
            .execute(&self.renew, &[&&*self.holder, &keys])
            .await?;
        Ok(())
    }

    async fn sweep(&mut self) -> Result<u64> {
        Ok(self.client.execute(&self.sweep, &[]).await?)
    }
}

async fn exists(client: &Client) -> Result<bool> {
    Ok(client
        .query_one(statements::LEASES_EXIST, &[])
        .await?
        .try_get(0)?)
}

/// Creates the lease table unless it exists, then checks this user's rights
/// on it: a refusal is bad configuration, with the fix.
pub async fn lease_table(client: &Client, config: &SqlConfig) -> Result<()> {
    let user = &config.connection.user;
    if !exists(client).await?
        && let Err(error) = client.batch_execute(statements::CREATE_LEASES).await
    {
        // Another replica may have created it meanwhile.
        if error.as_db_error().is_none() {
            return Err(error.into());
        }
        if !exists(client).await? {
            return Err(lease_table_refused(
                user,
                &db_message(&error),
                "its schema",
                statements::CREATE_LEASES,
            ));
        }
    }
    let missing: Option<String> = client
        .query_one(statements::LEASE_RIGHTS_MISSING, &[])
        .await?
        .try_get(0)?;
    match missing {
        None => Ok(()),
        Some(missing) => Err(lease_rights_missing(user, &format!("it lacks {missing}"))),
    }
}
