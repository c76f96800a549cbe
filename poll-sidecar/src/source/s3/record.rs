//! The S3 event record a change is delivered as: the shape MinIO and S3 notifications use, so a
//! handler written for MinIO's webhook gets the same fields from poll mode. Like MinIO and S3,
//! `s3.object.key` is URL-encoded (`a b.txt` -> `a+b.txt`).

use kipper_contract::checkpoint::{Change, ChangeKind};
use serde_json::{Value, json};

/// `eventName` of a created or overwritten object (S3 has no separate "overwritten" event).
pub const OBJECT_CREATED: &str = "s3:ObjectCreated:Put";
/// `eventName` of a deleted object.
pub const OBJECT_REMOVED: &str = "s3:ObjectRemoved:Delete";

/// The event record of `change` in `bucket`, detected at `now` (RFC 3339).
pub fn event_record(bucket: &str, change: &Change, now: &chrono::DateTime<chrono::Utc>) -> Value {
    let key = url::form_urlencoded::byte_serialize(change.key.as_bytes()).collect::<String>();
    // MinIO's sequencer is the event time in nanoseconds, in hex: it orders events of one key.
    let sequencer = format!("{:016X}", now.timestamp_nanos_opt().unwrap_or_default());
    let (name, time, object) = match &change.kind {
        ChangeKind::Put(state) => (
            OBJECT_CREATED,
            state.last_modified.clone(),
            json!({
                "key": key,
                "size": state.size,
                "eTag": state.etag,
                "sequencer": sequencer,
            }),
        ),
        ChangeKind::Delete => (
            OBJECT_REMOVED,
            now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            json!({ "key": key, "sequencer": sequencer }),
        ),
    };
    json!({
        "eventVersion": "2.0",
        "eventSource": "minio:s3",
        "awsRegion": "",
        "eventTime": time,
        "eventName": name,
        "userIdentity": { "principalId": "kipper-poll" },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "kipper-poll",
            "bucket": {
                "name": bucket,
                "ownerIdentity": { "principalId": "" },
                "arn": format!("arn:aws:s3:::{bucket}"),
            },
            "object": object,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kipper_contract::checkpoint::ObjectState;

    #[test]
    fn put_and_delete_records_have_the_notification_shape() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-24T06:00:00Z")
            .unwrap()
            .to_utc();
        let state = ObjectState {
            etag: "abc".into(),
            size: 5,
            last_modified: "2026-11-24T05:59:59Z".into(),
        };
        let put = Change {
            key: "in/a b.txt".into(),
            kind: ChangeKind::Put(state),
        };
        let rec = event_record("bkt", &put, &now);
        assert_eq!(rec["eventName"], OBJECT_CREATED);
        assert_eq!(rec["eventTime"], "2026-11-24T05:59:59Z");
        assert_eq!(rec["s3"]["bucket"]["name"], "bkt");
        assert_eq!(rec["s3"]["object"]["key"], "in%2Fa+b.txt");
        assert_eq!(rec["s3"]["object"]["size"], 5);
        assert_eq!(rec["s3"]["object"]["eTag"], "abc");
        assert_eq!(
            rec["s3"]["object"]["sequencer"].as_str().map(str::len),
            Some(16)
        );
        let del = Change {
            key: "k".into(),
            kind: ChangeKind::Delete,
        };
        let rec = event_record("bkt", &del, &now);
        assert_eq!(rec["eventName"], OBJECT_REMOVED);
        assert_eq!(rec["eventTime"], "2026-11-24T06:00:00.000Z");
        assert!(rec["s3"]["object"].get("size").is_none());
    }
}
