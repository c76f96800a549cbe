//! What the handler receives for a Redis item: the item itself when it is JSON, else
//! `{"data": "<raw item>"}` (upstream-compatible). An item that is not UTF-8 cannot be a JSON
//! string, so it is sent as `{"data": "<base64>", "encoding": "base64"}` rather than altered.

use bytes::Bytes;

/// The POST body for `item`.
pub fn event_body(item: &Bytes) -> Bytes {
    if serde_json::from_slice::<serde::de::IgnoredAny>(item).is_ok() {
        return item.clone();
    }
    let body = match std::str::from_utf8(item) {
        Ok(text) => serde_json::json!({ "data": text }),
        Err(_) => {
            use base64::Engine as _;
            serde_json::json!({
                "data": base64::engine::general_purpose::STANDARD.encode(item),
                "encoding": "base64",
            })
        }
    };
    Bytes::from(body.to_string())
}

/// A stable id for `item` (the same across redeliveries), for the idempotency header: the list
/// name and a 128-bit hash of the bytes. Two equal items in the list share it, as they are
/// indistinguishable to anyone.
pub fn event_id(list: &str, item: &[u8]) -> String {
    use std::hash::{BuildHasher, Hasher};
    // Two fixed-key SipHash rounds give 128 bits without another dependency; this is an id,
    // not a security boundary.
    let hash = |seed: u64| {
        let mut h =
            std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
                .build_hasher();
        h.write_u64(seed);
        h.write(item);
        h.finish()
    };
    format!("redis:{list}:{:016x}{:016x}", hash(1), hash(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_items_are_sent_as_is() {
        for raw in [
            &b"{\"a\":1}"[..],
            b"[1,2]",
            b"42",
            b"\"text\"",
            b" {\"a\": [true, null]} ",
        ] {
            let item = Bytes::copy_from_slice(raw);
            assert_eq!(event_body(&item), item);
        }
    }

    #[test]
    fn other_items_are_wrapped_in_data() {
        let body = event_body(&Bytes::from_static(b"hello \"world\"\n{"));
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc, serde_json::json!({"data": "hello \"world\"\n{"}));
        let body = event_body(&Bytes::from_static(&[0xff, 0xfe, b'a']));
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({"data": "//5h", "encoding": "base64"})
        );
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        assert_eq!(event_id("q", b"a"), event_id("q", b"a"));
        assert_ne!(event_id("q", b"a"), event_id("q", b"b"));
        assert_ne!(event_id("q", b"a"), event_id("r", b"a"));
    }
}
