//! The PostgreSQL trigger (being built).

use super::{Claimed, DeadLetter, Source};
use crate::config::SqlConfig;
use crate::{Error, Result};

/// The PostgreSQL source.
#[derive(Debug)]
pub struct PostgresSource {
    _private: (),
}

impl PostgresSource {
    /// Connects to the database.
    pub async fn connect(_config: &SqlConfig) -> Result<Self> {
        Err(Error::Source {
            kind: "postgres",
            message: "not built yet".into(),
        })
    }
}

impl Source for PostgresSource {
    type Handle = ();

    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn claim(&mut self, _max: usize) -> Result<Vec<Claimed<()>>> {
        Ok(Vec::new())
    }

    async fn ack(&mut self, _events: &[Claimed<()>]) -> Result<()> {
        Ok(())
    }

    async fn dead_letter(&mut self, _events: &[DeadLetter<()>]) -> Result<()> {
        Ok(())
    }

    async fn release(&mut self, _events: &[Claimed<()>]) -> Result<()> {
        Ok(())
    }
}
