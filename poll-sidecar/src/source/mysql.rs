//! The MySQL / MariaDB trigger (being built).

use super::{Claimed, DeadLetter, Source};
use crate::config::SqlConfig;
use crate::{Error, Result};

/// The MySQL / MariaDB source.
#[derive(Debug)]
pub struct MysqlSource {
    _private: (),
}

impl MysqlSource {
    /// Connects to the database.
    pub async fn connect(_config: &SqlConfig) -> Result<Self> {
        Err(Error::Source {
            kind: "mysql",
            message: "not built yet".into(),
        })
    }
}

impl Source for MysqlSource {
    type Handle = ();

    fn kind(&self) -> &'static str {
        "mysql"
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
