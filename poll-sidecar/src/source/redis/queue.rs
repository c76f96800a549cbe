//! The reliable queue on a Redis list: claim a batch into a processing list owned by this
//! consumer, acknowledge with pipelined `LREM`s, dead-letter or release what was not delivered,
//! and return what dead consumers held.
//!
//! Keys, for the list `L` and this consumer's id `C`:
//! - `L` the list producers `RPUSH` to (upstream-compatible; we take from its head);
//! - `L:processing:C` the items `C` holds: claimed, not yet acknowledged;
//! - `L:consumer:C` `C`'s heartbeat, expiring after the lease unless renewed;
//! - `L:consumers` the set of consumer ids, so that orphans can be found;
//! - the dead-letter list (default `L:dead`) of JSON envelopes (see [`DeadLetter`]).
//!
//! Architecture Invariant: an item leaves the processing list only after a 2xx (ack), into the
//! dead-letter list after the last attempt, or back into the list; each move is one atomic
//! command or script, so a crash between any two steps loses nothing.

use std::time::Duration;

use bytes::Bytes;
use redis::aio::ConnectionManager;
use redis::{Script, Value};

use super::scripts;

/// Result of a Redis operation of the queue.
pub type QueueResult<T> = Result<T, redis::RedisError>;

/// Names of the keys of one consumer on one list.
#[derive(Debug, Clone)]
pub struct QueueKeys {
    /// The list producers push to.
    pub list: String,
    /// Where items that failed every attempt go.
    pub dead: String,
    /// This consumer's processing list.
    pub processing: String,
    /// This consumer's heartbeat key.
    pub heartbeat: String,
    /// The registry set of consumers of `list`.
    pub consumers: String,
    /// This consumer's id.
    pub consumer: String,
}

impl QueueKeys {
    /// Keys for `consumer` on `list`; `dead` defaults to `<list>:dead`.
    pub fn new(list: &str, dead: Option<&str>, consumer: &str) -> Self {
        Self {
            list: list.to_owned(),
            dead: dead.map_or_else(|| format!("{list}:dead"), str::to_owned),
            processing: format!("{list}:processing:{consumer}"),
            heartbeat: format!("{list}:consumer:{consumer}"),
            consumers: format!("{list}:consumers"),
            consumer: consumer.to_owned(),
        }
    }
}

/// One item that failed every attempt, as recorded in the dead-letter list.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The item exactly as it was in the list.
    pub item: Bytes,
    /// The last error (status and reason, or the transport error).
    pub error: String,
    /// How many delivery attempts were made.
    pub attempts: u32,
}

impl DeadLetter {
    /// The JSON envelope pushed to the dead-letter list. `item` holds the item as a string so a
    /// person can read it and `LPUSH` it back; an item that is not UTF-8 is kept exactly, as
    /// base64 in `itemBase64`.
    pub fn envelope(&self, list: &str, consumer: &str) -> String {
        let mut doc = serde_json::json!({
            "list": list,
            "error": self.error,
            "attempts": self.attempts,
            "consumer": consumer,
            "deadAt": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        });
        match std::str::from_utf8(&self.item) {
            Ok(text) => doc["item"] = serde_json::Value::from(text),
            Err(_) => {
                use base64::Engine as _;
                doc["itemBase64"] = base64::engine::general_purpose::STANDARD
                    .encode(&self.item)
                    .into();
            }
        }
        doc.to_string()
    }
}

/// The reliable queue of one consumer. Cheap to clone: the connection is multiplexed.
#[derive(Clone)]
pub struct RedisQueue {
    con: ConnectionManager,
    keys: QueueKeys,
    lease: Duration,
    scripts: std::sync::Arc<Scripts>,
}

struct Scripts {
    claim: Script,
    dead_letter: Script,
    release: Script,
    recover: Script,
    backlog: Script,
}

impl RedisQueue {
    /// A queue over `con` for `keys`; a consumer whose heartbeat is older than `lease` is dead.
    pub fn new(con: ConnectionManager, keys: QueueKeys, lease: Duration) -> Self {
        let scripts = std::sync::Arc::new(Scripts {
            claim: scripts::claim(),
            dead_letter: scripts::dead_letter(),
            release: scripts::release(),
            recover: scripts::recover(),
            backlog: scripts::backlog(),
        });
        Self {
            con,
            keys,
            lease,
            scripts,
        }
    }

    /// The key names this queue uses.
    pub fn keys(&self) -> &QueueKeys {
        &self.keys
    }

    fn lease_ms(&self) -> u64 {
        u64::try_from(self.lease.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Atomically move up to `max` items from the head of the list to this consumer's
    /// processing list, renewing the heartbeat. Empty when the list is empty.
    pub async fn claim(&self, max: usize) -> QueueResult<Vec<Bytes>> {
        let mut con = self.con.clone();
        let value: Value = self
            .scripts
            .claim
            .key(&self.keys.list)
            .key(&self.keys.processing)
            .key(&self.keys.heartbeat)
            .key(&self.keys.consumers)
            .arg(max.max(1))
            .arg(&self.keys.consumer)
            .arg(self.lease_ms())
            .invoke_async(&mut con)
            .await?;
        Ok(into_items(value))
    }

    /// Acknowledge delivered items: one pipelined `LREM` each, one round trip for the batch.
    pub async fn ack(&self, items: &[Bytes]) -> QueueResult<()> {
        if items.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for item in items {
            pipe.cmd("LREM")
                .arg(&self.keys.processing)
                .arg(1)
                .arg(item.as_ref())
                .ignore();
        }
        let mut con = self.con.clone();
        pipe.query_async::<()>(&mut con).await
    }

    /// Move items that failed every attempt to the dead-letter list, pipelined. Returns how many
    /// were still held (an item whose lease was lost is delivered by whoever took it back).
    pub async fn dead_letter(&self, letters: &[DeadLetter]) -> QueueResult<usize> {
        if letters.is_empty() {
            return Ok(0);
        }
        let mut con = self.con.clone();
        let mut moved = 0;
        // Scripts are invoked one by one (EVALSHA, loading on first use): dead letters are rare.
        for letter in letters {
            let envelope = letter.envelope(&self.keys.list, &self.keys.consumer);
            let n: i64 = self
                .scripts
                .dead_letter
                .key(&self.keys.processing)
                .key(&self.keys.dead)
                .arg(letter.item.as_ref())
                .arg(envelope)
                .invoke_async(&mut con)
                .await?;
            moved += usize::from(n == 1);
        }
        Ok(moved)
    }

    /// Give claimed but undelivered items back to the head of the list.
    pub async fn release(&self, items: &[Bytes]) -> QueueResult<()> {
        let mut con = self.con.clone();
        // Reverse, so that LPUSH one by one leaves them at the head in their original order.
        for item in items.iter().rev() {
            let _: i64 = self
                .scripts
                .release
                .key(&self.keys.processing)
                .key(&self.keys.list)
                .arg(item.as_ref())
                .invoke_async(&mut con)
                .await?;
        }
        Ok(())
    }

    /// Renew this consumer's heartbeat and registration. Returns false when the heartbeat had
    /// expired (the process stalled longer than the lease: what it held may have been taken
    /// back, and may be delivered twice).
    pub async fn heartbeat(&self) -> QueueResult<bool> {
        let mut con = self.con.clone();
        let (old, _): (Option<String>, i64) = redis::pipe()
            .cmd("SET")
            .arg(&self.keys.heartbeat)
            .arg("1")
            .arg("PX")
            .arg(self.lease_ms())
            .arg("GET")
            .cmd("SADD")
            .arg(&self.keys.consumers)
            .arg(&self.keys.consumer)
            .query_async(&mut con)
            .await?;
        Ok(old.is_some())
    }

    /// Return the items of consumers whose heartbeat expired to the list. Returns how many.
    pub async fn recover_orphans(&self) -> QueueResult<u64> {
        self.recover("").await
    }

    /// Return everything this consumer still holds to the list and unregister it (shutdown).
    pub async fn leave(&self) -> QueueResult<u64> {
        self.recover(&self.keys.consumer).await
    }

    async fn recover(&self, consumer: &str) -> QueueResult<u64> {
        let mut con = self.con.clone();
        self.scripts
            .recover
            .key(&self.keys.consumers)
            .key(&self.keys.list)
            .arg(&self.keys.list)
            .arg(consumer)
            .invoke_async(&mut con)
            .await
    }

    /// Items in this consumer's processing list.
    pub async fn held_in_redis(&self) -> QueueResult<u64> {
        let mut con = self.con.clone();
        redis::cmd("LLEN")
            .arg(&self.keys.processing)
            .query_async(&mut con)
            .await
    }

    /// Items in the list plus items held by any consumer: what is left to deliver.
    pub async fn backlog(&self) -> QueueResult<u64> {
        let mut con = self.con.clone();
        self.scripts
            .backlog
            .key(&self.keys.list)
            .key(&self.keys.consumers)
            .arg(&self.keys.list)
            .invoke_async(&mut con)
            .await
    }
}

/// The claimed items of a script reply, which is an array of bulk strings (or nil when empty).
fn into_items(value: Value) -> Vec<Bytes> {
    match value {
        Value::Array(values) => values
            .into_iter()
            .filter_map(|v| match v {
                Value::BulkString(b) => Some(Bytes::from(b)),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_default_dead_letter_list() {
        let keys = QueueKeys::new("orders", None, "pod-1");
        assert_eq!(keys.dead, "orders:dead");
        assert_eq!(keys.processing, "orders:processing:pod-1");
        assert_eq!(keys.heartbeat, "orders:consumer:pod-1");
        assert_eq!(keys.consumers, "orders:consumers");
        assert_eq!(QueueKeys::new("orders", Some("failed"), "c").dead, "failed");
    }

    #[test]
    fn envelope_keeps_text_and_binary_items_exactly() {
        let text = DeadLetter {
            item: Bytes::from_static(b"{\"id\":1}"),
            error: "500".into(),
            attempts: 3,
        };
        let doc: serde_json::Value = serde_json::from_str(&text.envelope("q", "c")).unwrap();
        assert_eq!(doc["item"], "{\"id\":1}");
        assert_eq!(doc["attempts"], 3);
        assert_eq!(doc["error"], "500");
        let binary = DeadLetter {
            item: Bytes::from_static(&[0xff, 0x00]),
            error: "e".into(),
            attempts: 1,
        };
        let doc: serde_json::Value = serde_json::from_str(&binary.envelope("q", "c")).unwrap();
        assert_eq!(doc["itemBase64"], "/wA=");
        assert!(doc.get("item").is_none());
    }
}
