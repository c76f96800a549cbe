//! The PostgreSQL and MySQL workloads: a fresh `orders` table of N pending
//! rows, the seed's query and a per-row mark-done
//! (`UPDATE ... SET status = 'done' WHERE id = {{id}}`). The source ceiling
//! runs kipper-poll's own source (same claim, re-read and mark-done SQL)
//! without HTTP.

use anyhow::Context as _;
use clap::Parser as _;
use kipper_poll::config::{Args, SourceConfig};
use kipper_poll::source::mysql::MysqlSource;
use kipper_poll::source::postgres::PostgresSource;
use mysql_async::prelude::Queryable;

use super::{Workload, ceiling};

/// Rows inserted per statement while seeding.
const SEED_CHUNK: u64 = 5_000;

/// Which database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
}

/// A SQL source: the database URL and the table of the current run.
#[derive(Debug)]
pub struct SqlWorkload {
    dialect: Dialect,
    url: String,
    table: String,
    batch_size: usize,
}

impl SqlWorkload {
    /// A workload on the database at `url`.
    pub fn new(dialect: Dialect, url: String, batch_size: usize) -> Self {
        Self {
            dialect,
            url,
            table: String::new(),
            batch_size,
        }
    }

    async fn exec(&self, sql: &str) -> anyhow::Result<()> {
        match self.dialect {
            Dialect::Postgres => {
                let (client, connection) =
                    tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
                        .await
                        .with_context(|| format!("PostgreSQL at {}", self.url))?;
                tokio::spawn(connection);
                client
                    .batch_execute(sql)
                    .await
                    .with_context(|| sql.chars().take(120).collect::<String>())?;
            }
            Dialect::Mysql => {
                let mut conn = mysql_async::Conn::new(mysql_async::Opts::from_url(&self.url)?)
                    .await
                    .with_context(|| format!("MySQL at {}", self.url))?;
                conn.query_drop(sql)
                    .await
                    .with_context(|| sql.chars().take(120).collect::<String>())?;
                conn.disconnect().await?;
            }
        }
        Ok(())
    }

    fn query(&self) -> String {
        format!("SELECT * FROM {} WHERE status = 'pending'", self.table)
    }

    fn mark_done(&self) -> String {
        format!(
            "UPDATE {} SET status = 'done' WHERE id = {{{{id}}}}",
            self.table
        )
    }
}

impl Workload for SqlWorkload {
    fn name(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => "postgres",
            Dialect::Mysql => "mysql",
        }
    }

    fn describe(&self) -> String {
        format!(
            "fresh table orders(id, customer, amount numeric(12,2), status, created_at) with an index on status; \
             query `SELECT * FROM orders WHERE status = 'pending'`; mark-done `UPDATE orders SET status = 'done' \
             WHERE id = {{{{id}}}}`; kipper-poll batch {}",
            self.batch_size
        )
    }

    async fn seed(&mut self, rows: u64) -> anyhow::Result<()> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .subsec_nanos();
        self.table = format!("bench_orders_{}_{nanos:x}", std::process::id());
        let t = &self.table;
        let ddl = match self.dialect {
            Dialect::Postgres => format!(
                "CREATE TABLE {t} (id bigserial PRIMARY KEY, customer text NOT NULL, amount numeric(12,2) NOT NULL, \
                 status text NOT NULL DEFAULT 'pending', created_at timestamptz NOT NULL DEFAULT now()); \
                 CREATE INDEX ON {t} (status)"
            ),
            Dialect::Mysql => format!(
                "CREATE TABLE {t} (id bigint AUTO_INCREMENT PRIMARY KEY, customer varchar(100) NOT NULL, \
                 amount decimal(12,2) NOT NULL, status varchar(20) NOT NULL DEFAULT 'pending', \
                 created_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), KEY (status))"
            ),
        };
        self.exec(&ddl).await?;
        let mut start = 1;
        while start <= rows {
            let end = (start + SEED_CHUNK - 1).min(rows);
            let values: Vec<String> = (start..=end)
                .map(|i| format!("('c{i}', {}.{:02})", i % 10_000, i % 100))
                .collect();
            self.exec(&format!(
                "INSERT INTO {t} (customer, amount) VALUES {}",
                values.join(",")
            ))
            .await?;
            start = end + 1;
        }
        let analyze = match self.dialect {
            Dialect::Postgres => format!("ANALYZE {t}"),
            Dialect::Mysql => format!("ANALYZE TABLE {t}"),
        };
        self.exec(&analyze).await
    }

    fn env(&self, target_url: &str) -> Vec<(String, String)> {
        vec![
            ("KIPPER_TRIGGER".into(), self.name().into()),
            ("KIPPER_SOURCE_URL".into(), self.url.clone()),
            ("KIPPER_TARGET_URL".into(), target_url.into()),
            ("KIPPER_QUERY".into(), self.query()),
            ("KIPPER_MARK_DONE".into(), self.mark_done()),
            ("KIPPER_POLL_INTERVAL".into(), "1s".into()),
            ("KIPPER_BATCH_SIZE".into(), self.batch_size.to_string()),
        ]
    }

    async fn remaining(&mut self) -> anyhow::Result<u64> {
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE status = 'pending'",
            self.table
        );
        match self.dialect {
            Dialect::Postgres => {
                let (client, connection) =
                    tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                let n: i64 = client.query_one(&sql, &[]).await?.get(0);
                Ok(u64::try_from(n)?)
            }
            Dialect::Mysql => {
                let mut conn =
                    mysql_async::Conn::new(mysql_async::Opts::from_url(&self.url)?).await?;
                let n: Option<u64> = conn.query_first(&sql).await?;
                conn.disconnect().await?;
                Ok(n.unwrap_or(0))
            }
        }
    }

    async fn source_ceiling(&mut self, rows: u64) -> anyhow::Result<f64> {
        // The sidecar's own configuration path, so the SQL is the same.
        let mut argv = vec!["kipper-poll".to_string()];
        for (k, v) in self.env("http://127.0.0.1:1/event") {
            argv.push(format!(
                "--{}={v}",
                k.trim_start_matches("KIPPER_")
                    .to_ascii_lowercase()
                    .replace('_', "-")
            ));
        }
        let config = Args::try_parse_from(argv)?.into_config(&|_| None)?;
        match config.source {
            SourceConfig::Postgres(sql) => {
                let mut source = PostgresSource::connect(&sql).await?;
                ceiling::measure(&mut source, self.batch_size, rows, "rows").await
            }
            SourceConfig::Mysql(sql) => {
                let mut source = MysqlSource::connect(&sql).await?;
                ceiling::measure(&mut source, self.batch_size, rows, "rows").await
            }
            _ => anyhow::bail!("not a SQL source"),
        }
    }

    async fn cleanup(&mut self) {
        if !self.table.is_empty() {
            let _ = self
                .exec(&format!("DROP TABLE IF EXISTS {}", self.table))
                .await;
        }
    }
}
