//! The Redis list trigger. Placeholder: engineer "events" implements this
//! (issue 3); until then connecting fails with a clear error.

use super::{Claimed, DeadLetter, Source};
use crate::config::RedisConfig;
use crate::{Error, Result};

/// The Redis list source.
#[derive(Debug)]
pub struct RedisSource {
    _private: (),
}

impl RedisSource {
    /// Connects to the source; not implemented yet.
    pub async fn connect(_config: &RedisConfig) -> Result<Self> {
        Err(Error::Source {
            kind: "redis",
            message: "this trigger is not built yet (issue 3)".into(),
        })
    }
}

impl Source for RedisSource {
    type Handle = ();

    fn kind(&self) -> &'static str {
        "redis"
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
