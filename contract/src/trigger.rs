//! Trigger names: the values of `KIPPER_TRIGGER`, of a Function's `triggers[].type`, of
//! `kip function create --trigger` and of the `kipper.run/trigger` label. Each of those lists is
//! a subset of [`Trigger`] and converts to it with an exhaustive `match`, so a trigger added or
//! renamed on one side fails to compile on the others.

use std::fmt;
use std::str::FromStr;

/// Every trigger name any binary knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// Requests via the KEDA HTTP add-on.
    Http,
    /// A CronJob run (`KIPPER_MODE=batch`).
    Cron,
    /// A test run Job (`kip function test`); never a Function's trigger type.
    Test,
    /// A PostgreSQL query, served by kipper-poll.
    Postgres,
    /// A MySQL / MariaDB query, served by kipper-poll.
    Mysql,
    /// A Redis list, served by kipper-poll.
    Redis,
    /// S3 bucket changes, served by kipper-poll.
    Minio,
    /// In the upstream schema; no binary serves it (the controller reports it).
    Rabbitmq,
}

impl Trigger {
    /// Every trigger, in the order error messages list them.
    pub const ALL: [Trigger; 8] = [
        Trigger::Http,
        Trigger::Cron,
        Trigger::Test,
        Trigger::Postgres,
        Trigger::Mysql,
        Trigger::Redis,
        Trigger::Minio,
        Trigger::Rabbitmq,
    ];

    /// The lowercase name, as written in every list.
    pub const fn as_str(self) -> &'static str {
        match self {
            Trigger::Http => "http",
            Trigger::Cron => "cron",
            Trigger::Test => "test",
            Trigger::Postgres => "postgres",
            Trigger::Mysql => "mysql",
            Trigger::Redis => "redis",
            Trigger::Minio => "minio",
            Trigger::Rabbitmq => "rabbitmq",
        }
    }

    /// Triggers whose events kipper-poll claims and delivers.
    pub const fn is_event(self) -> bool {
        matches!(
            self,
            Trigger::Postgres | Trigger::Mysql | Trigger::Redis | Trigger::Minio
        )
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a [`Trigger`]; the crate's one error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownTrigger(pub String);

impl fmt::Display for UnknownTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown trigger {:?}; use one of ", self.0)?;
        for (i, trigger) in Trigger::ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(trigger.as_str())?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownTrigger {}

impl FromStr for Trigger {
    type Err = UnknownTrigger;

    /// Exactly the names of [`Trigger::as_str`]; aliases are the reader's business.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Trigger::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownTrigger(s.to_owned()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_its_trigger() {
        for trigger in Trigger::ALL {
            assert_eq!(trigger.as_str().parse::<Trigger>(), Ok(trigger));
            assert_eq!(trigger.to_string(), trigger.as_str());
        }
    }

    #[test]
    fn names_are_exact_and_the_error_lists_them() {
        assert!("Postgres".parse::<Trigger>().is_err());
        assert!("postgresql".parse::<Trigger>().is_err());
        let err = "kafka".parse::<Trigger>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown trigger \"kafka\"; use one of http, cron, test, postgres, mysql, redis, minio, rabbitmq"
        );
    }

    #[test]
    fn the_event_triggers_are_the_four_sources_of_kipper_poll() {
        let event: Vec<&str> = Trigger::ALL
            .into_iter()
            .filter(|t| t.is_event())
            .map(Trigger::as_str)
            .collect();
        assert_eq!(event, ["postgres", "mysql", "redis", "minio"]);
    }
}
