//! Where the source lives and how to log in: from `KIPPER_SOURCE_URL`, from a
//! service binding's variables (`DB_HOST`, `REDIS_PASSWORD`, `S3_ENDPOINT`,
//! ... with a configurable prefix), or both, the binding filling in what the
//! URL leaves out. That lets a password come from a Secret-backed binding
//! variable while the URL in the plain env carries none.

use kipper_contract::binding::{
    ACCESS_KEY, ENDPOINT, HOST, NAME, PASSWORD, PORT, SECRET_KEY, USER, USERNAME,
};
use url::Url;

use super::Secret;
use crate::{Error, Result};

/// Reads one environment variable; injected so tests need no process env.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A PostgreSQL or MySQL server and login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlConnection {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Login name.
    pub user: String,
    /// Password (empty for none).
    pub password: Secret,
    /// Database name.
    pub database: String,
    /// Query parameters of the URL, e.g. `sslmode=disable`.
    pub params: Vec<(String, String)>,
}

/// A Redis server and login (`redis://` or `rediss://`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConnection {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// ACL user name, if any.
    pub username: Option<String>,
    /// Password (AUTH), if any.
    pub password: Option<Secret>,
    /// The database number (`redis://host/2`).
    pub db: i64,
    /// `rediss://`: TLS.
    pub tls: bool,
}

/// An S3-compatible endpoint (MinIO, SeaweedFS, AWS) and its keys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct S3Connection {
    /// `http://host:port`, without credentials.
    pub endpoint: String,
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: Secret,
}

const URL: &str = "KIPPER_SOURCE_URL";

fn parse_url(text: &str, schemes: &[&str]) -> Result<Url> {
    let url = Url::parse(text).map_err(|e| {
        Error::config(
            URL,
            format!(
                "not a URL ({e}); write e.g. {}://user:password@host:port/db",
                schemes[0]
            ),
        )
    })?;
    if !schemes.contains(&url.scheme()) {
        return Err(Error::config(
            URL,
            format!(
                "scheme {:?} does not fit this trigger; use {}://...",
                url.scheme(),
                schemes.join("://, ")
            ),
        ));
    }
    Ok(url)
}

fn decoded(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn binding(env: Env, prefix: &str, key: &str) -> Option<String> {
    env(&kipper_contract::binding::var(prefix, key)).filter(|v| !v.is_empty())
}

fn port(env: Env, prefix: &str, default: u16) -> Result<u16> {
    match binding(env, prefix, PORT) {
        None => Ok(default),
        Some(p) => p.parse().map_err(|_| {
            // The setting name is dynamic (prefix); name the usual one and say which.
            Error::config(
                "KIPPER_BINDING_PREFIX",
                format!("{prefix}PORT={p:?} is not a port number (1-65535)"),
            )
        }),
    }
}

/// The SQL server from the URL and/or `<prefix>HOST PORT USERNAME|USER PASSWORD NAME`.
pub fn sql(
    env: Env,
    url: Option<&str>,
    prefix: &str,
    schemes: &[&str],
    default_port: u16,
) -> Result<SqlConnection> {
    let from_url = url.map(|u| parse_url(u, schemes)).transpose()?;
    let host = from_url
        .as_ref()
        .and_then(|u| u.host_str().map(str::to_string))
        .or_else(|| binding(env, prefix, HOST))
        .ok_or_else(|| {
            Error::config(
                URL,
                format!(
                    "no database given; set KIPPER_SOURCE_URL or bind a service ({prefix}HOST ...)"
                ),
            )
        })?;
    let port = match from_url.as_ref().and_then(Url::port) {
        Some(p) => p,
        None => port(env, prefix, default_port)?,
    };
    let user = from_url
        .as_ref()
        .map(|u| decoded(u.username()))
        .filter(|u| !u.is_empty())
        .or_else(|| binding(env, prefix, USERNAME))
        .or_else(|| binding(env, prefix, USER))
        .unwrap_or_else(|| {
            if schemes[0] == "mysql" {
                "root".into()
            } else {
                "postgres".into()
            }
        });
    let password = from_url
        .as_ref()
        .and_then(|u| u.password().map(decoded))
        .or_else(|| binding(env, prefix, PASSWORD))
        .unwrap_or_default();
    let database = from_url
        .as_ref()
        .map(|u| decoded(u.path().trim_start_matches('/')))
        .filter(|d| !d.is_empty())
        .or_else(|| binding(env, prefix, NAME))
        .unwrap_or_else(|| user.clone());
    let params = from_url
        .as_ref()
        .map(|u| {
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    Ok(SqlConnection {
        host,
        port,
        user,
        password: Secret::new(password),
        database,
        params,
    })
}

/// The Redis server from the URL and/or `<prefix>HOST PORT PASSWORD`.
pub fn redis(env: Env, url: Option<&str>, prefix: &str) -> Result<RedisConnection> {
    let from_url = url
        .map(|u| parse_url(u, &["redis", "rediss"]))
        .transpose()?;
    let host = from_url
        .as_ref()
        .and_then(|u| u.host_str().map(str::to_string))
        .or_else(|| binding(env, prefix, HOST))
        .ok_or_else(|| {
            Error::config(
                URL,
                format!("no Redis given; set KIPPER_SOURCE_URL or bind one ({prefix}HOST ...)"),
            )
        })?;
    let port = match from_url.as_ref().and_then(Url::port) {
        Some(p) => p,
        None => port(env, prefix, 6379)?,
    };
    let username = from_url
        .as_ref()
        .map(|u| decoded(u.username()))
        .filter(|u| !u.is_empty());
    let password = from_url
        .as_ref()
        .and_then(|u| u.password().map(decoded))
        .or_else(|| binding(env, prefix, PASSWORD))
        .map(Secret::new);
    let db = match from_url
        .as_ref()
        .map(|u| u.path().trim_matches('/').to_string())
        .filter(|p| !p.is_empty())
    {
        None => 0,
        Some(p) => p
            .parse()
            .map_err(|_| Error::config(URL, format!("Redis database {p:?} is not a number")))?,
    };
    let tls = from_url.as_ref().is_some_and(|u| u.scheme() == "rediss");
    Ok(RedisConnection {
        host,
        port,
        username,
        password,
        db,
        tls,
    })
}

/// The S3 endpoint from the URL (`http://accesskey:secretkey@host:port`) and/or
/// `<prefix>ENDPOINT` or `<prefix>HOST`+`PORT`, `ACCESS_KEY|USERNAME`, `SECRET_KEY|PASSWORD`.
pub fn s3(env: Env, url: Option<&str>, prefix: &str) -> Result<S3Connection> {
    let from_url = url.map(|u| parse_url(u, &["http", "https"])).transpose()?;
    let endpoint = match &from_url {
        Some(u) => {
            let host = u
                .host_str()
                .ok_or_else(|| Error::config(URL, "the S3 URL has no host"))?;
            match u.port() {
                Some(p) => format!("{}://{host}:{p}", u.scheme()),
                None => format!("{}://{host}", u.scheme()),
            }
        }
        None => match binding(env, prefix, ENDPOINT) {
            Some(e) if e.contains("://") => e,
            Some(e) => format!("http://{e}"),
            None => {
                let host = binding(env, prefix, HOST).ok_or_else(|| {
                    Error::config(URL, format!("no S3 endpoint; set KIPPER_SOURCE_URL or {prefix}ENDPOINT / {prefix}HOST"))
                })?;
                format!("http://{host}:{}", port(env, prefix, 9000)?)
            }
        },
    };
    let access_key = from_url
        .as_ref()
        .map(|u| decoded(u.username()))
        .filter(|u| !u.is_empty())
        .or_else(|| binding(env, prefix, ACCESS_KEY))
        .or_else(|| binding(env, prefix, USERNAME))
        .unwrap_or_default();
    let secret_key = from_url
        .as_ref()
        .and_then(|u| u.password().map(decoded))
        .or_else(|| binding(env, prefix, SECRET_KEY))
        .or_else(|| binding(env, prefix, PASSWORD))
        .unwrap_or_default();
    Ok(S3Connection {
        endpoint,
        access_key,
        secret_key: Secret::new(secret_key),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn sql_from_url() {
        let e = env(&[]);
        let c = sql(
            &e,
            Some("postgres://app:p%40ss@db:6432/orders?sslmode=disable"),
            "DB_",
            &["postgres", "postgresql"],
            5432,
        )
        .unwrap();
        assert_eq!(
            (
                c.host.as_str(),
                c.port,
                c.user.as_str(),
                c.database.as_str()
            ),
            ("db", 6432, "app", "orders")
        );
        assert_eq!(c.password.expose(), "p@ss");
        assert_eq!(c.params, vec![("sslmode".into(), "disable".into())]);
    }

    #[test]
    fn sql_from_binding_with_user_alias_and_prefix() {
        let e = env(&[
            ("EV_HOST", "h"),
            ("EV_PORT", "3307"),
            ("EV_USER", "u"),
            ("EV_PASSWORD", "pw"),
            ("EV_NAME", "d"),
        ]);
        let c = sql(&e, None, "EV_", &["mysql"], 3306).unwrap();
        assert_eq!(
            (
                c.host.as_str(),
                c.port,
                c.user.as_str(),
                c.database.as_str()
            ),
            ("h", 3307, "u", "d")
        );
        assert_eq!(c.password.expose(), "pw");
    }

    #[test]
    fn binding_password_fills_a_url_without_one() {
        let e = env(&[("DB_PASSWORD", "from-secret")]);
        let c = sql(&e, Some("postgres://app@db/x"), "DB_", &["postgres"], 5432).unwrap();
        assert_eq!(c.password.expose(), "from-secret");
        assert_eq!(c.port, 5432);
    }

    #[test]
    fn wrong_scheme_and_missing_source_name_the_setting() {
        let e = env(&[]);
        let err = sql(
            &e,
            Some("mysql://h/db"),
            "DB_",
            &["postgres", "postgresql"],
            5432,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("KIPPER_SOURCE_URL: scheme \"mysql\""),
            "{err}"
        );
        let err = sql(&e, None, "DB_", &["postgres"], 5432).unwrap_err();
        assert!(err.to_string().contains("DB_HOST"), "{err}");
    }

    #[test]
    fn redis_url_and_binding() {
        let e = env(&[("REDIS_HOST", "r"), ("REDIS_PASSWORD", "pw")]);
        let c = redis(&e, None, "REDIS_").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.db, c.tls),
            ("r", 6379, 0, false)
        );
        assert_eq!(c.password.unwrap().expose(), "pw");
        let c = redis(&e, Some("rediss://:secret@cache:6380/2"), "REDIS_").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.db, c.tls),
            ("cache", 6380, 2, true)
        );
        assert_eq!(c.password.unwrap().expose(), "secret");
    }

    #[test]
    fn s3_url_and_binding() {
        let e = env(&[]);
        let c = s3(&e, Some("http://ak:sk@minio:9000"), "S3_").unwrap();
        assert_eq!(
            (
                c.endpoint.as_str(),
                c.access_key.as_str(),
                c.secret_key.expose()
            ),
            ("http://minio:9000", "ak", "sk")
        );
        let e = env(&[
            ("S3_HOST", "m"),
            ("S3_PORT", "8333"),
            ("S3_USERNAME", "u"),
            ("S3_PASSWORD", "p"),
        ]);
        let c = s3(&e, None, "S3_").unwrap();
        assert_eq!(
            (
                c.endpoint.as_str(),
                c.access_key.as_str(),
                c.secret_key.expose()
            ),
            ("http://m:8333", "u", "p")
        );
        let e = env(&[
            ("S3_ENDPOINT", "https://s3.example"),
            ("S3_ACCESS_KEY", "a"),
            ("S3_SECRET_KEY", "s"),
        ]);
        assert_eq!(s3(&e, None, "S3_").unwrap().endpoint, "https://s3.example");
    }
}
