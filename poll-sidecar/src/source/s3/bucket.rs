//! The S3 calls of the trigger on the watched bucket: list its state, read and conditionally
//! write Kipper's reserved objects (checkpoint, lease). Any S3-compatible server, path-style.

use std::collections::BTreeMap;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use kipper_contract::checkpoint::{ObjectState, RESERVED_PREFIX, unquote_etag};

use crate::config::S3Connection;
use crate::{Error, Result};

/// What a conditional write found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Written; the new etag.
    Ok(String),
    /// The object changed since it was read (or exists when it should not): someone else wrote.
    Conflict,
}

/// The watched bucket.
#[derive(Clone, Debug)]
pub struct Bucket {
    client: Client,
    name: String,
}

fn s3_error<E, R>(op: &'static str, err: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let message = match err.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("error"),
            service.message().unwrap_or("no message")
        ),
        None => aws_smithy_error_text(&err),
    };
    Error::Source {
        kind: "s3",
        message: format!("{op}: {message}"),
    }
}

fn aws_smithy_error_text<E: std::error::Error + 'static, R: std::fmt::Debug>(
    err: &SdkError<E, R>,
) -> String {
    // The top-level Display is just "dispatch failure"; the cause says what failed.
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn status_of<E, R>(err: &SdkError<E, R>) -> Option<u16>
where
    R: HttpStatus,
{
    err.raw_response().map(HttpStatus::status_code)
}

/// The HTTP status of a raw S3 response.
trait HttpStatus {
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

impl Bucket {
    /// A client for `bucket` on `conn`. Opens no connection yet.
    pub fn new(conn: &S3Connection, bucket: &str) -> Self {
        Self {
            client: kipper_tls::s3_client(
                &conn.endpoint,
                &conn.access_key,
                conn.secret_key.expose(),
                "kipper-poll",
            ),
            name: bucket.to_owned(),
        }
    }

    /// The bucket name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The underlying client (tests and benchmarks seed buckets with it).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Fails with the server's reason when the bucket cannot be listed with these keys.
    pub async fn check(&self, prefix: &str) -> Result<()> {
        self.client
            .list_objects_v2()
            .bucket(&self.name)
            .prefix(prefix)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| s3_error("ListObjectsV2", e))?;
        Ok(())
    }

    /// Every object under `prefix`, except Kipper's reserved ones: key -> state.
    pub async fn list(&self, prefix: &str) -> Result<BTreeMap<String, ObjectState>> {
        let mut objects = BTreeMap::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.name)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| s3_error("ListObjectsV2", e))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                if key.starts_with(RESERVED_PREFIX) {
                    continue;
                }
                let state = ObjectState {
                    etag: unquote_etag(object.e_tag().unwrap_or_default()).to_owned(),
                    size: object.size().unwrap_or_default(),
                    last_modified: object
                        .last_modified()
                        .and_then(|t| t.fmt(aws_sdk_s3::primitives::DateTimeFormat::DateTime).ok())
                        .unwrap_or_default(),
                };
                objects.insert(key.to_owned(), state);
            }
        }
        Ok(objects)
    }

    /// Read `key`: its bytes and etag, or `None` when it does not exist.
    pub async fn read(&self, key: &str) -> Result<Option<(Bytes, String)>> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.name)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None);
            }
            Err(err) if status_of(&err) == Some(404) => return Ok(None),
            Err(err) => return Err(s3_error("GetObject", err)),
        };
        let etag = unquote_etag(out.e_tag().unwrap_or_default()).to_owned();
        let body = out.body.collect().await.map_err(|e| Error::Source {
            kind: "s3",
            message: format!("GetObject: reading the body of {key}: {e}"),
        })?;
        Ok(Some((body.into_bytes(), etag)))
    }

    /// Write `key` only if it still has `expected` etag (`None`: only if it does not exist), so
    /// that two writers never silently overwrite each other.
    pub async fn write_if(
        &self,
        key: &str,
        body: Bytes,
        expected: Option<&str>,
    ) -> Result<Written> {
        let mut put = self
            .client
            .put_object()
            .bucket(&self.name)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body));
        put = match expected {
            Some(etag) => put.if_match(format!("\"{etag}\"")),
            None => put.if_none_match("*"),
        };
        match put.send().await {
            Ok(out) => Ok(Written::Ok(
                unquote_etag(out.e_tag().unwrap_or_default()).to_owned(),
            )),
            Err(err) if matches!(status_of(&err), Some(412 | 409)) => Ok(Written::Conflict),
            Err(err) => Err(s3_error("PutObject", err)),
        }
    }
}
