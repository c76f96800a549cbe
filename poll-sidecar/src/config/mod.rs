//! Configuration: every upstream `KIPPER_*` variable (CONTRACT section 2)
//! unchanged, each also a flag, plus the delivery settings upstream lacked.
//! [`Args`] is what the user wrote; [`Args::into_config`] validates it into a
//! typed [`Config`] before any connection is opened, failing with one line
//! that names the setting and the fix.
//!
//! Numbers and durations are typed fields parsed by clap (durations with the
//! one parser of all three binaries, [`kipper_contract::duration`]); what
//! clap cannot check (a range, a zero wait, a setting that another one
//! requires) is checked here. The module is a folder only because the
//! connection parsing is long; the settings themselves all stand in [`Args`].

mod connection;
mod secret;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

use clap::Parser;
use kipper_contract::{LogFormat, parse_duration, parse_duration_or_seconds};
use kipper_contract::{Trigger, binding, env};

pub use connection::{Env, RedisConnection, S3Connection, SqlConnection};
pub use secret::Secret;

use crate::source::sql::template::{Dialect, Template};
use crate::{Error, Result};

/// Command line and environment of kipper-poll.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "kipper-poll",
    version,
    about = "Claims events from a data source and POSTs them to a function, at-least-once."
)]
pub struct Args {
    /// Event source: postgres, mysql, redis or minio.
    #[arg(long, env = env::TRIGGER)]
    pub trigger: Option<String>,
    /// Where events are POSTed.
    #[arg(
        long,
        env = env::TARGET_URL,
        default_value = "http://localhost:8080/event"
    )]
    pub target_url: String,
    /// Source URL, e.g. postgres://u:p@h:5432/db; binding variables fill in what it lacks.
    #[arg(long, env = "KIPPER_SOURCE_URL", hide_env_values = true)]
    pub source_url: Option<String>,
    /// Prefix of the service-binding variables (default DB_, REDIS_ or S3_ by trigger).
    #[arg(long, env = "KIPPER_BINDING_PREFIX")]
    pub binding_prefix: Option<String>,
    /// SQL triggers: the polling SELECT.
    #[arg(long, env = env::QUERY)]
    pub query: Option<String>,
    /// SQL triggers: statement run after a 2xx, with {{column}} placeholders.
    #[arg(long, env = env::MARK_DONE)]
    pub mark_done: Option<String>,
    /// SQL triggers: statement run when a row is dead-lettered, with {{column}} placeholders.
    #[arg(long, env = "KIPPER_MARK_FAILED")]
    pub mark_failed: Option<String>,
    /// Redis trigger: the list used as a queue.
    #[arg(long, env = env::REDIS_LIST)]
    pub redis_list: Option<String>,
    /// MinIO trigger: the bucket to watch.
    #[arg(long, env = env::MINIO_BUCKET)]
    pub minio_bucket: Option<String>,
    /// MinIO trigger: port of the webhook receiver.
    #[arg(long, env = "KIPPER_MINIO_WEBHOOK_PORT", default_value_t = 9090)]
    pub minio_webhook_port: u16,
    /// Redis trigger: where items that failed every attempt go (default `<list>:dead`).
    #[arg(long, env = "KIPPER_REDIS_DEAD_LIST")]
    pub redis_dead_list: Option<String>,
    /// Redis trigger: how long after its last heartbeat a consumer's items go back to the list.
    #[arg(long, env = "KIPPER_REDIS_LEASE", default_value = "15s", value_parser = parse_duration)]
    pub redis_lease: Duration,
    /// Redis trigger: this consumer's id (default: HOSTNAME plus a random suffix).
    #[arg(long, env = "KIPPER_REDIS_CONSUMER")]
    pub redis_consumer: Option<String>,
    /// MinIO trigger: `poll` (list the bucket; any S3 server) or `webhook` (MinIO notifications).
    #[arg(long, env = "KIPPER_MINIO_MODE", default_value = "poll")]
    pub minio_mode: String,
    /// MinIO trigger, poll mode: watch only the objects under this prefix.
    #[arg(long, env = "KIPPER_MINIO_PREFIX", default_value = "")]
    pub minio_prefix: String,
    /// MinIO trigger, poll mode: without a checkpoint, deliver the existing objects (`all`) or
    /// only later changes (`now`).
    #[arg(long, env = "KIPPER_MINIO_START", default_value = "all")]
    pub minio_start: String,
    /// MinIO trigger, poll mode: lease of the one replica that polls (Go duration).
    #[arg(long, env = "KIPPER_MINIO_LEASE", default_value = "15s", value_parser = parse_duration)]
    pub minio_lease: Duration,
    /// MinIO trigger, webhook mode: the bearer token MinIO sends (its `auth_token`); required.
    #[arg(long, env = "KIPPER_MINIO_WEBHOOK_TOKEN", hide_env_values = true)]
    pub minio_webhook_token: Option<String>,
    /// MinIO trigger, webhook mode: largest accepted request body, in bytes.
    #[arg(long, env = "KIPPER_MINIO_WEBHOOK_MAX_BODY", default_value_t = 1 << 20)]
    pub minio_webhook_max_body: usize,
    /// MinIO trigger, webhook mode: how long one MinIO request waits for the function's verdict.
    #[arg(long, env = "KIPPER_MINIO_WEBHOOK_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub minio_webhook_timeout: Duration,
    /// Wait when the source is idle or failing (Go duration).
    #[arg(long, env = "KIPPER_POLL_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// Name of the function, for checkpoints and logs.
    #[arg(long, env = env::FUNCTION_NAME, default_value = "default")]
    pub function_name: String,
    /// Deliveries in flight at once.
    #[arg(long, env = "KIPPER_CONCURRENCY", default_value_t = 64)]
    pub concurrency: usize,
    /// Events claimed per round trip to the source.
    #[arg(long, env = "KIPPER_BATCH_SIZE", default_value_t = 500)]
    pub batch_size: usize,
    /// Timeout of one delivery attempt (Go duration).
    #[arg(long, env = "KIPPER_DELIVERY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub delivery_timeout: Duration,
    /// Attempts before an event is dead-lettered.
    #[arg(long, env = "KIPPER_MAX_ATTEMPTS", default_value_t = 5)]
    pub max_attempts: u32,
    /// First retry wait; doubles per attempt, with jitter (Go duration).
    #[arg(long, env = "KIPPER_BACKOFF_INITIAL", default_value = "500ms", value_parser = parse_duration)]
    pub backoff_initial: Duration,
    /// Longest retry wait (Go duration).
    #[arg(long, env = "KIPPER_BACKOFF_MAX", default_value = "30s", value_parser = parse_duration)]
    pub backoff_max: Duration,
    /// Optional readiness URL of the target probed before claiming (default: a TCP connect).
    #[arg(long, env = env::TARGET_READY_URL)]
    pub target_ready_url: Option<String>,
    /// Port of /metrics, /healthz and /readyz; 0 disables it.
    #[arg(long, env = "KIPPER_ADMIN_PORT", default_value_t = 9091)]
    pub admin_port: u16,
    /// How long SIGTERM waits for in-flight deliveries (a duration; a bare number is seconds).
    #[arg(long, env = "KIPPER_SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration_or_seconds)]
    pub shutdown_grace: Duration,
    /// Log format on stderr: json or text.
    #[arg(long, env = "KIPPER_LOG_FORMAT", default_value_t)]
    pub log_format: LogFormat,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `KIPPER_FUNCTION_NAME`: names checkpoints and logs.
    pub function_name: String,
    /// The trigger and its source.
    pub source: SourceConfig,
    /// How events are delivered.
    pub delivery: DeliveryConfig,
    /// How the claim loop paces itself.
    pub pump: PumpConfig,
    /// Admin listener; `None` when disabled.
    pub admin: Option<SocketAddr>,
    /// `KIPPER_LOG_FORMAT`: JSON lines (default) or human-readable text.
    pub log_format: LogFormat,
}

/// The trigger and everything its source needs: the closed set of sources.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    /// `KIPPER_TRIGGER=postgres`.
    Postgres(SqlConfig),
    /// `KIPPER_TRIGGER=mysql` (MySQL or MariaDB).
    Mysql(SqlConfig),
    /// `KIPPER_TRIGGER=redis`.
    Redis(RedisConfig),
    /// `KIPPER_TRIGGER=minio` (any S3-compatible server).
    S3(S3Config),
}

/// A SQL trigger.
#[derive(Debug, Clone)]
pub struct SqlConfig {
    /// Server and login.
    pub connection: SqlConnection,
    /// `KIPPER_QUERY`, without a trailing `;`.
    pub query: String,
    /// `KIPPER_MARK_DONE`, parsed.
    pub mark_done: Option<Template>,
    /// `KIPPER_MARK_FAILED`, parsed.
    pub mark_failed: Option<Template>,
    /// How long after the database server started no row is claimed: the
    /// delivery timeout plus a margin, so that deliveries of rows whose
    /// locks died with the previous server have ended (see
    /// [`crate::source::sql`], "Across a restart of the database").
    pub restart_quiet: Duration,
    /// How long a claim lease lasts from its last renewal (see
    /// [`crate::source::sql::lease_ttl`]).
    pub lease_ttl: Duration,
}

/// The Redis trigger.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Server and login.
    pub connection: RedisConnection,
    /// `KIPPER_REDIS_LIST`.
    pub list: String,
    /// The dead-letter list; `None`: `<list>:dead`.
    pub dead_list: Option<String>,
    /// How long a consumer's items stay its own after its last heartbeat.
    pub lease: Duration,
    /// This consumer's id; `None`: generated.
    pub consumer: Option<String>,
}

/// The MinIO / S3 trigger.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// Endpoint and keys.
    pub connection: S3Connection,
    /// `KIPPER_MINIO_BUCKET`.
    pub bucket: String,
    /// `KIPPER_MINIO_WEBHOOK_PORT`.
    pub webhook_port: u16,
    /// Names the checkpoint and lease objects: the function name.
    pub consumer: String,
    /// Poll the bucket, or receive MinIO's webhook (`KIPPER_MINIO_MODE`).
    pub mode: S3Mode,
}

/// How the MinIO / S3 trigger learns of changes.
#[derive(Debug, Clone)]
pub enum S3Mode {
    /// List the bucket and diff it against the checkpoint.
    Poll {
        /// Only keys under this prefix.
        prefix: String,
        /// Without a checkpoint, treat the current objects as delivered.
        start_now: bool,
        /// Lease of the one replica that polls.
        lease: Duration,
    },
    /// Receive MinIO's webhook notifications on `webhook_port`.
    Webhook {
        /// The bearer token MinIO sends.
        token: Secret,
        /// Largest accepted body, in bytes.
        max_body: usize,
        /// How long a request waits for the function's verdict.
        timeout: Duration,
    },
}

/// How events are delivered to the target.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// `KIPPER_TARGET_URL`.
    pub target: http::Uri,
    /// `KIPPER_TARGET_READY_URL`: probed before claiming when set.
    pub ready_url: Option<http::Uri>,
    /// `KIPPER_CONCURRENCY`: deliveries in flight.
    pub concurrency: usize,
    /// `KIPPER_DELIVERY_TIMEOUT`: per attempt.
    pub timeout: Duration,
    /// `KIPPER_MAX_ATTEMPTS`: then the event is dead-lettered.
    pub max_attempts: u32,
    /// `KIPPER_BACKOFF_INITIAL`: the first retry wait.
    pub backoff_initial: Duration,
    /// `KIPPER_BACKOFF_MAX`: the longest retry wait.
    pub backoff_max: Duration,
}

/// How the claim loop paces itself.
#[derive(Debug, Clone)]
pub struct PumpConfig {
    /// `KIPPER_BATCH_SIZE`: events per claim and per acknowledgement.
    pub batch_size: usize,
    /// `KIPPER_POLL_INTERVAL`: the wait after a claim found nothing or failed.
    pub poll_interval: Duration,
    /// `KIPPER_SHUTDOWN_GRACE`: how long SIGTERM lets deliveries finish.
    pub shutdown_grace: Duration,
}

/// Refuses a zero duration: the setting is a wait or a lease that must pass.
fn positive(setting: &'static str, value: Duration, example: &str) -> Result<Duration> {
    if value.is_zero() {
        return Err(Error::config(
            setting,
            format!("must be more than 0, e.g. {example}"),
        ));
    }
    Ok(value)
}

/// Refuses a number outside `range`, naming the setting and the range.
fn within<T: PartialOrd + std::fmt::Display>(
    setting: &'static str,
    value: T,
    range: RangeInclusive<T>,
) -> Result<T> {
    if range.contains(&value) {
        return Ok(value);
    }
    Err(Error::config(
        setting,
        format!(
            "{value} is out of range; use a whole number from {} to {}",
            range.start(),
            range.end()
        ),
    ))
}

fn required(setting: &'static str, value: Option<String>, example: &str) -> Result<String> {
    value.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
        Error::config(
            setting,
            format!("required for this trigger; set e.g. {setting}={example}"),
        )
    })
}

fn uri(setting: &'static str, text: &str) -> Result<http::Uri> {
    let uri: http::Uri = text
        .parse()
        .map_err(|e| Error::config(setting, format!("{text:?} is not a URL ({e})")))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(Error::config(
            setting,
            format!(
                "{text:?} must be an http:// URL with a host, e.g. http://localhost:8080/event"
            ),
        ));
    }
    Ok(uri)
}

impl Args {
    /// Parses the command line and environment. `--help` and `--version`
    /// print and exit 0; anything malformed (an unknown flag, a number or
    /// duration that does not parse) comes back as one line naming the
    /// variable, for the caller to print and exit with code 2 as for any bad
    /// setting.
    pub fn parse_one_line() -> std::result::Result<Self, String> {
        kipper_contract::command_line::parse_or_one_line()
    }

    /// Validates the arguments, reading binding variables through `vars`.
    pub fn into_config(self, vars: Env) -> Result<Config> {
        let url = self.source_url.as_deref().filter(|u| !u.is_empty());
        let prefix = |default: &str| {
            self.binding_prefix
                .clone()
                .unwrap_or_else(|| default.to_string())
        };
        let unknown = |name: &str| {
            Error::config(
                env::TRIGGER,
                format!("unknown trigger {name:?}; use postgres, mysql, redis or minio"),
            )
        };
        let trigger = match self.trigger.as_deref().unwrap_or_default() {
            "" => {
                return Err(Error::config(
                    env::TRIGGER,
                    "required; set it to postgres, mysql, redis or minio",
                ));
            }
            // Aliases kipper-poll has always accepted; the controller renders the plain names.
            "postgresql" => Trigger::Postgres,
            "mariadb" => Trigger::Mysql,
            "s3" => Trigger::Minio,
            name => name.parse().map_err(|_| unknown(name))?,
        };
        let mut source = match trigger {
            Trigger::Postgres => SourceConfig::Postgres(self.sql(
                connection::sql(
                    vars,
                    url,
                    &prefix(binding::DB_PREFIX),
                    &["postgres", "postgresql"],
                    5432,
                )?,
                Dialect::Postgres,
            )?),
            Trigger::Mysql => SourceConfig::Mysql(self.sql(
                connection::sql(
                    vars,
                    url,
                    &prefix(binding::DB_PREFIX),
                    &["mysql", "mariadb"],
                    3306,
                )?,
                Dialect::Mysql,
            )?),
            Trigger::Redis => SourceConfig::Redis(RedisConfig {
                connection: connection::redis(vars, url, &prefix(binding::REDIS_PREFIX))?,
                list: required(env::REDIS_LIST, self.redis_list.clone(), "jobs")?,
                dead_list: self
                    .redis_dead_list
                    .clone()
                    .filter(|d| !d.trim().is_empty()),
                lease: positive("KIPPER_REDIS_LEASE", self.redis_lease, "15s")?,
                consumer: self.redis_consumer.clone().filter(|c| !c.trim().is_empty()),
            }),
            Trigger::Minio => SourceConfig::S3(S3Config {
                connection: match (
                    connection::s3(vars, url, &prefix(binding::S3_PREFIX)),
                    self.minio_mode.as_str(),
                ) {
                    (Ok(connection), _) => connection,
                    // Webhook mode never calls S3: MinIO calls us. No endpoint needed.
                    (Err(_), "webhook") => S3Connection::default(),
                    (Err(error), _) => return Err(error),
                },
                bucket: required(env::MINIO_BUCKET, self.minio_bucket.clone(), "uploads")?,
                webhook_port: within(
                    "KIPPER_MINIO_WEBHOOK_PORT",
                    self.minio_webhook_port,
                    1..=u16::MAX,
                )?,
                consumer: self.function_name.clone(),
                mode: self.s3_mode()?,
            }),
            // Not served by kipper-poll. Listed, not `_`, so a new trigger is a decision here.
            Trigger::Http | Trigger::Cron | Trigger::Test | Trigger::Rabbitmq => {
                return Err(unknown(trigger.as_str()));
            }
        };
        let delivery = DeliveryConfig {
            target: uri(env::TARGET_URL, &self.target_url)?,
            ready_url: self
                .target_ready_url
                .as_deref()
                .map(|u| uri(env::TARGET_READY_URL, u))
                .transpose()?,
            concurrency: within("KIPPER_CONCURRENCY", self.concurrency, 1..=10_000)?,
            timeout: positive("KIPPER_DELIVERY_TIMEOUT", self.delivery_timeout, "30s")?,
            max_attempts: within("KIPPER_MAX_ATTEMPTS", self.max_attempts, 1..=1_000)?,
            backoff_initial: self.backoff_initial,
            backoff_max: self.backoff_max,
        };
        if let SourceConfig::Postgres(sql) | SourceConfig::Mysql(sql) = &mut source {
            sql.restart_quiet = delivery.timeout + crate::source::sql::RESTART_MARGIN;
            sql.lease_ttl = crate::source::sql::lease_ttl(delivery.timeout);
        }
        let pump = PumpConfig {
            batch_size: within("KIPPER_BATCH_SIZE", self.batch_size, 1..=5_000)?,
            // Zero would poll an idle source in a tight loop.
            poll_interval: positive("KIPPER_POLL_INTERVAL", self.poll_interval, "5s")?,
            shutdown_grace: self.shutdown_grace,
        };
        let admin = (self.admin_port != 0)
            .then(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), self.admin_port));
        Ok(Config {
            function_name: self.function_name,
            source,
            delivery,
            pump,
            admin,
            log_format: self.log_format,
        })
    }

    fn s3_mode(&self) -> Result<S3Mode> {
        match self.minio_mode.as_str() {
            "poll" => Ok(S3Mode::Poll {
                prefix: self.minio_prefix.clone(),
                start_now: match self.minio_start.as_str() {
                    "all" => false,
                    "now" => true,
                    other => {
                        return Err(Error::config("KIPPER_MINIO_START", format!("{other:?} is not all or now")));
                    }
                },
                lease: positive("KIPPER_MINIO_LEASE", self.minio_lease, "15s")?,
            }),
            "webhook" => Ok(S3Mode::Webhook {
                token: self.minio_webhook_token.clone().filter(|t| !t.trim().is_empty()).map(Secret::new).ok_or_else(|| {
                    Error::config(
                        "KIPPER_MINIO_WEBHOOK_TOKEN",
                        "required in webhook mode; set it to the auth_token of MinIO's webhook target (from a Secret)",
                    )
                })?,
                max_body: within("KIPPER_MINIO_WEBHOOK_MAX_BODY", self.minio_webhook_max_body, 1024..=64 << 20)?,
                timeout: positive("KIPPER_MINIO_WEBHOOK_TIMEOUT", self.minio_webhook_timeout, "30s")?,
            }),
            other => Err(Error::config("KIPPER_MINIO_MODE", format!("{other:?} is not poll or webhook"))),
        }
    }

    fn sql(&self, connection: SqlConnection, dialect: Dialect) -> Result<SqlConfig> {
        crate::source::sql::connect::refuse_tls(&connection, dialect == Dialect::Postgres)?;
        let query = required(
            env::QUERY,
            self.query.clone(),
            "\"SELECT * FROM orders WHERE status = 'pending'\"",
        )?;
        let query = query.trim().trim_end_matches(';').trim().to_string();
        let head = query
            .trim_start_matches(['(', ' ', '\n'])
            .to_ascii_lowercase();
        if !(head.starts_with("select") || head.starts_with("with")) {
            return Err(Error::config(
                env::QUERY,
                "must be a SELECT (it is wrapped as a subquery)",
            ));
        }
        let template = |setting: &'static str, text: &Option<String>| {
            text.as_deref()
                .filter(|t| !t.trim().is_empty())
                .map(|t| Template::parse(t, dialect).map_err(|e| Error::config(setting, e)))
                .transpose()
        };
        Ok(SqlConfig {
            connection,
            query,
            mark_done: template(env::MARK_DONE, &self.mark_done)?,
            mark_failed: template("KIPPER_MARK_FAILED", &self.mark_failed)?,
            restart_quiet: Duration::ZERO,
            lease_ttl: Duration::ZERO,
        })
    }
}

#[cfg(test)]
mod tests;
