//! What a MinIO webhook request must carry: the bearer token (compared in constant time) and a
//! body `{"EventName", "Key", "Records": [...]}` whose records are passed on unchanged.

use http::StatusCode;
use kipper_contract::checkpoint::RESERVED_PREFIX;
use serde_json::Value;

/// One record to deliver: its id for the idempotency header and the record itself.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRecord {
    /// Stable id of the change: bucket, key and etag (or sequencer for deletions).
    pub id: String,
    /// The S3 event record, passed on unchanged.
    pub record: Value,
}

/// Why a request was refused before any delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The status answered.
    pub status: StatusCode,
    /// The reason, sent as `{"error": reason}`.
    pub reason: String,
}

fn refuse(status: StatusCode, reason: impl Into<String>) -> Refusal {
    Refusal {
        status,
        reason: reason.into(),
    }
}

/// Check the `Authorization` header against the token, in constant time.
pub fn authorize(header: Option<&[u8]>, token: &str) -> Result<(), Refusal> {
    let Some(value) = header else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "missing Authorization: Bearer <token> (MinIO auth_token)",
        ));
    };
    // MinIO sends "Bearer <token>"; accept the scheme in any case, as RFC 7235 says.
    let presented = match value.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => &value[7..],
        _ => value,
    };
    if constant_time_eq(presented, token.as_bytes()) {
        Ok(())
    } else {
        Err(refuse(StatusCode::FORBIDDEN, "wrong bearer token"))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Lengths leak, contents do not: every byte is compared whatever the first difference.
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The records of a MinIO webhook body `{"EventName", "Key", "Records": [...]}`, skipping
/// Kipper's reserved objects (a poll-mode checkpoint in the same bucket is no event).
pub fn parse(body: &[u8]) -> Result<Vec<WebhookRecord>, Refusal> {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}")))?;
    let records = doc
        .get("Records")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            refuse(
                StatusCode::BAD_REQUEST,
                "not a MinIO event: no \"Records\" array",
            )
        })?;
    let mut out = Vec::with_capacity(records.len());
    for (i, record) in records.iter().enumerate() {
        let object = &record["s3"]["object"];
        let (Some(bucket), Some(key)) = (
            record["s3"]["bucket"]["name"].as_str(),
            object["key"].as_str(),
        ) else {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                format!("Records[{i}] lacks s3.bucket.name or s3.object.key"),
            ));
        };
        // Keys arrive URL-encoded (MinIO uses query escaping: '/' is %2F, ' ' is '+').
        let decoded: String = url::form_urlencoded::parse(format!("k={key}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if decoded.starts_with(RESERVED_PREFIX) {
            continue;
        }
        let version = object["eTag"]
            .as_str()
            .filter(|e| !e.is_empty())
            .or_else(|| object["sequencer"].as_str())
            .unwrap_or_default();
        let event = record["eventName"].as_str().unwrap_or_default();
        out.push(WebhookRecord {
            id: format!("s3:{bucket}/{decoded}@{version}:{event}"),
            record: record.clone(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_are_checked_exactly() {
        assert_eq!(
            authorize(None, "t").unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        assert!(authorize(Some(b"Bearer s3cret"), "s3cret").is_ok());
        assert!(authorize(Some(b"bearer s3cret"), "s3cret").is_ok());
        assert_eq!(
            authorize(Some(b"Bearer s3cret2"), "s3cret")
                .unwrap_err()
                .status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            authorize(Some(b"Bearer "), "s3cret").unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            authorize(Some(b"Basic abc"), "s3cret").unwrap_err().status,
            StatusCode::FORBIDDEN
        );
    }

    fn minio_body(keys: &[&str]) -> Vec<u8> {
        let records: Vec<Value> = keys
            .iter()
            .map(|k| {
                json!({"eventName": "s3:ObjectCreated:Put",
                       "s3": {"bucket": {"name": "b"}, "object": {"key": k, "eTag": "e1", "size": 3}}})
            })
            .collect();
        json!({"EventName": "s3:ObjectCreated:Put", "Key": "b/x", "Records": records})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn parse_takes_records_and_skips_reserved_keys() {
        let records = parse(&minio_body(&[
            "in%2Fa+b.txt",
            ".kipper%2Fcheckpoints%2Ff.json",
        ]))
        .unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].id, "s3:b/in/a b.txt@e1:s3:ObjectCreated:Put");
        assert_eq!(records[0].record["s3"]["object"]["key"], "in%2Fa+b.txt");
    }

    #[test]
    fn parse_refuses_what_is_not_a_minio_event() {
        assert_eq!(parse(b"nope").unwrap_err().status, StatusCode::BAD_REQUEST);
        assert_eq!(
            parse(b"{\"Key\":\"b/k\"}").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        let bad = json!({"Records": [{"s3": {}}]}).to_string();
        assert!(
            parse(bad.as_bytes())
                .unwrap_err()
                .reason
                .contains("Records[0]")
        );
    }

    #[test]
    fn deletions_are_identified_by_their_sequencer() {
        let body = json!({"EventName": "s3:ObjectRemoved:Delete", "Key": "b/gone.txt", "Records": [
            {"eventName": "s3:ObjectRemoved:Delete",
             "s3": {"bucket": {"name": "b"}, "object": {"key": "gone.txt", "sequencer": "17A2B3C4D5E6F708"}}}
        ]});
        let records = parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            records[0].id,
            "s3:b/gone.txt@17A2B3C4D5E6F708:s3:ObjectRemoved:Delete"
        );
    }
}
