//! The PostgreSQL lease keeper's session (its own connection), and the lease
//! table the claim session makes sure of when it opens (after the query was
//! checked): created if missing, and usable by this user. A table
//! pre-created by an administrator needs no CREATE right.

use std::sync::Arc;

use tokio::task::JoinHandle;
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
    config: Arc<SqlConfig>,
    /// This user may VACUUM the lease table (else autovacuum alone keeps it small).
    may_vacuum: bool,
    /// The compaction running in the background, if any.
    compacting: Option<JoinHandle<()>>,
}

impl PgKeeper {
    /// Connects and prepares the renewal.
    pub async fn open(config: &SqlConfig, holder: Arc<str>) -> Result<Self> {
        let client = session::connect(config).await?;
        let renew = client.prepare(&statements::renew(config.lease_ttl)).await?;
        let sweep = client.prepare(&statements::sweep()).await?;
        let may_vacuum = client
            .query_opt(statements::MAY_VACUUM_LEASES, &[])
            .await?
            .and_then(|row| row.get::<_, Option<bool>>(0))
            .unwrap_or(false);
        if !may_vacuum {
            tracing::info!(
                message = "The lease table is not this user's to VACUUM (it needs the rights of the table's or the database's owner); autovacuum alone keeps it small.",
                user = %config.connection.user
            );
        }
        Ok(Self {
            client,
            renew,
            sweep,
            holder,
            config: Arc::new(config.clone()),
            may_vacuum,
            compacting: None,
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

    fn compact(&mut self) {
        if !self.may_vacuum
            || self
                .compacting
                .as_ref()
                .is_some_and(|task| !task.is_finished())
        {
            return;
        }
        let config = Arc::clone(&self.config);
        self.compacting = Some(tokio::spawn(async move {
            if let Err(error) = vacuum(&config).await {
                tracing::debug!(message = "Compacting the lease table failed.", %error);
            }
        }));
    }
}

impl Drop for PgKeeper {
    fn drop(&mut self) {
        if let Some(task) = self.compacting.take() {
            task.abort();
        }
    }
}

/// VACUUMs the lease table on a short-lived connection of its own, so a slow
/// one never holds up a renewal. Skipped, without a warning in this log, when
/// another replica's VACUUM of it is running.
async fn vacuum(config: &SqlConfig) -> Result<()> {
    let client = session::connect(config).await?;
    // VACUUM cannot share a query string with another statement.
    client
        .batch_execute("SET client_min_messages = error")
        .await?;
    client.batch_execute(statements::VACUUM_LEASES).await?;
    Ok(())
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
