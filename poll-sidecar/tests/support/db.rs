//! The test databases: PostgreSQL and MariaDB/MySQL behind one small API so
//! every delivery scenario runs against both. Connection URLs come from
//! `KIPPER_TEST_POSTGRES_URL` / `KIPPER_TEST_MYSQL_URL` (defaults: the local
//! services of scripts/services.sh); a database that is not there fails the
//! test with a message saying so.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use mysql_async::prelude::Queryable;
use tokio::sync::Mutex;

/// A connection to one of the two databases, plus the table under test.
pub enum Db {
    Postgres {
        url: String,
        client: tokio_postgres::Client,
    },
    Mysql {
        url: String,
        conn: Mutex<mysql_async::Conn>,
    },
}

impl Db {
    /// Connects to PostgreSQL, or panics saying how to start it.
    pub async fn postgres() -> Self {
        let url = std::env::var("KIPPER_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        Self::postgres_at(url).await
    }

    /// Connects to the PostgreSQL at `url`, or panics.
    pub async fn postgres_at(url: String) -> Self {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| {
                panic!("PostgreSQL is required at {url} (run scripts/services.sh): {e}")
            });
        tokio::spawn(connection);
        Self::Postgres { url, client }
    }

    /// Connects to MariaDB/MySQL, or panics saying how to start it.
    pub async fn mysql() -> Self {
        let url = std::env::var("KIPPER_TEST_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
        Self::mysql_at(url).await
    }

    /// Connects to the MariaDB/MySQL at `url`, or panics.
    pub async fn mysql_at(url: String) -> Self {
        let opts = mysql_async::Opts::from_url(&url).unwrap();
        let conn = mysql_async::Conn::new(opts).await.unwrap_or_else(|e| {
            panic!("MariaDB/MySQL is required at {url} (run scripts/services.sh): {e}")
        });
        Self::Mysql {
            url,
            conn: Mutex::new(conn),
        }
    }

    pub fn trigger(&self) -> &'static str {
        match self {
            Self::Postgres { .. } => "postgres",
            Self::Mysql { .. } => "mysql",
        }
    }

    pub fn url(&self) -> &str {
        match self {
            Self::Postgres { url, .. } | Self::Mysql { url, .. } => url,
        }
    }

    /// Runs statements (separated by `;` at line ends is not supported:
    /// one statement per call).
    pub async fn exec(&self, sql: &str) {
        match self {
            Self::Postgres { client, .. } => {
                client
                    .batch_execute(sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            Self::Mysql { conn, .. } => {
                conn.lock()
                    .await
                    .query_drop(sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        }
    }

    /// Runs one statement; false if the server refused it (e.g. `KILL` of a
    /// connection that ended meanwhile).
    pub async fn try_exec(&self, sql: &str) -> bool {
        match self {
            Self::Postgres { client, .. } => client.batch_execute(sql).await.is_ok(),
            Self::Mysql { conn, .. } => conn.lock().await.query_drop(sql).await.is_ok(),
        }
    }

    /// The single integer a `SELECT COUNT(*) ...` returns.
    pub async fn count(&self, sql: &str) -> i64 {
        match self {
            Self::Postgres { client, .. } => {
                client.query_one(sql, &[]).await.unwrap().get::<_, i64>(0)
            }
            Self::Mysql { conn, .. } => conn
                .lock()
                .await
                .query_first::<i64, _>(sql)
                .await
                .unwrap()
                .unwrap_or(0),
        }
    }

    /// The ids a `SELECT id ...` returns.
    pub async fn ids(&self, sql: &str) -> Vec<i64> {
        match self {
            Self::Postgres { client, .. } => client
                .query(sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect(),
            Self::Mysql { conn, .. } => conn.lock().await.query::<i64, _>(sql).await.unwrap(),
        }
    }

    /// Creates the orders table `t` with `rows` pending rows (ids 1..=rows).
    pub async fn orders(&self, t: &str, rows: usize) {
        let ddl = match self {
            Self::Postgres { .. } => format!(
                "CREATE TABLE {t} (id bigserial PRIMARY KEY, customer text NOT NULL, amount numeric(12,2) NOT NULL, \
                 status text NOT NULL DEFAULT 'pending')"
            ),
            Self::Mysql { .. } => format!(
                "CREATE TABLE {t} (id bigint AUTO_INCREMENT PRIMARY KEY, customer varchar(200) NOT NULL, \
                 amount decimal(12,2) NOT NULL, status varchar(20) NOT NULL DEFAULT 'pending', KEY (status))"
            ),
        };
        self.exec(&ddl).await;
        for chunk in (1..=rows).collect::<Vec<_>>().chunks(1000) {
            let values: Vec<String> = chunk.iter().map(|i| format!("('c{i}', {i}.25)")).collect();
            self.exec(&format!(
                "INSERT INTO {t} (customer, amount) VALUES {}",
                values.join(", ")
            ))
            .await;
        }
    }

    /// Drops table `t`.
    pub async fn drop_table(&self, t: &str) {
        self.exec(&format!("DROP TABLE IF EXISTS {t}")).await;
    }

    /// Rows of `t` with `status`.
    pub async fn with_status(&self, t: &str, status: &str) -> i64 {
        self.count(&format!(
            "SELECT COUNT(*) FROM {t} WHERE status = '{status}'"
        ))
        .await
    }
}

/// Drops the table when the test ends, also when it fails.
pub struct TableGuard {
    pub name: String,
    url: String,
    trigger: &'static str,
}

impl TableGuard {
    pub fn new(db: &Db, name: &str) -> Self {
        Self {
            name: name.to_string(),
            url: db.url().to_string(),
            trigger: db.trigger(),
        }
    }
}

impl Drop for TableGuard {
    fn drop(&mut self) {
        // Drop runs outside the test's runtime: use the command-line clients.
        let sql = format!("DROP TABLE IF EXISTS {}", self.name);
        let _ = match self.trigger {
            "postgres" => std::process::Command::new("psql")
                .arg(&self.url)
                .arg("-qc")
                .arg(&sql)
                .output(),
            _ => {
                let url = url::Url::parse(&self.url).unwrap();
                std::process::Command::new("mariadb")
                    .arg(format!("-u{}", url.username()))
                    .arg(format!("-h{}", url.host_str().unwrap_or("127.0.0.1")))
                    .arg(format!("-P{}", url.port().unwrap_or(3306)))
                    .arg(url.path().trim_start_matches('/'))
                    .arg("-e")
                    .arg(&sql)
                    .output()
            }
        };
    }
}
