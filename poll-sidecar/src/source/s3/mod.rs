//! The MinIO / S3 bucket trigger. Placeholder: engineer "events" implements this
//! (issue 3); until then connecting fails with a clear error.

use super::{Claimed, DeadLetter, Source};
use crate::config::S3Config;
use crate::{Error, Result};

/// The MinIO / S3 bucket source.
#[derive(Debug)]
pub struct S3Source {
    _private: (),
}

impl S3Source {
    /// Connects to the source; not implemented yet.
    pub async fn connect(_config: &S3Config) -> Result<Self> {
        Err(Error::Source {
            kind: "s3",
            message: "this trigger is not built yet (issue 3)".into(),
        })
    }
}

impl Source for S3Source {
    type Handle = ();

    fn kind(&self) -> &'static str {
        "s3"
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
