//! What the claim engine keeps of a claimed row: the [`LockKey`] of its lock,
//! the claim session (*epoch*) it was locked on, and the values its
//! mark-done / mark-failed bind ([`SqlHandle`]).

use tokio_util::sync::CancellationToken;

/// The identity of a row's lock, the same on every replica.
///
/// One representation for both databases: 128 bits. PostgreSQL's advisory
/// key is a 64-bit `hashtextextended` (kept in the low 64 bits); MySQL's
/// `GET_LOCK` name is `kp<seed>:` + the MD5 of the row's identity, and the
/// prefix is the same for every row of a query, so the 128-bit digest alone
/// names the lock. A `Copy` integer keeps the held and in-flight sets free
/// of an allocation per row (a `String` name cost one per set it was in);
/// the MySQL name is spelled out again only when it is sent to the server
/// (unlock, relock), where the driver needs a string parameter anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LockKey(u128);

impl LockKey {
    /// A PostgreSQL advisory-lock key.
    pub fn from_i64(key: i64) -> Self {
        // Sign-preserving through u64 so `as_i64` gives the same key back.
        Self(u128::from(key as u64))
    }

    /// The PostgreSQL advisory-lock key this was made from.
    pub fn as_i64(self) -> i64 {
        // Truncation is the point: the key was made from 64 bits.
        self.0 as u64 as i64
    }

    /// A 128-bit digest written as hex (MySQL's `MD5()`), or `None` when the
    /// text is not one.
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.is_empty() || hex.len() > 32 {
            return None;
        }
        u128::from_str_radix(hex, 16).ok().map(Self)
    }

    /// The key as 32 lowercase hex digits, as MySQL's `MD5()` writes it.
    pub fn hex128(self) -> String {
        format!("{:032x}", self.0)
    }

    /// The key as 16 lowercase hex digits (a PostgreSQL key).
    pub fn hex64(self) -> String {
        format!("{:016x}", self.0 as u64)
    }
}

/// The claim session a row was locked on.
#[derive(Debug, Clone)]
pub struct Stamp {
    /// The session's number among those the source opened; a row of an
    /// older one is locked again before it is settled.
    pub epoch: u64,
    /// Cancelled when that session is gone: no attempt of the row may start
    /// after that.
    pub fence: CancellationToken,
}

/// What a SQL source keeps of a claimed row (the pump's `Handle`).
#[derive(Debug, Clone)]
pub struct SqlHandle<V> {
    /// The lock held for the row.
    pub key: LockKey,
    /// The values of the columns the mark-done / mark-failed bind, in the
    /// driver's own form (PostgreSQL: binary as read; MySQL: `Value`s).
    pub values: V,
    /// The session that locked it.
    pub stamp: Stamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_keys_round_trip() {
        for key in [0, 1, -1, i64::MIN, i64::MAX, 0x7fff_ffff_ffff] {
            assert_eq!(LockKey::from_i64(key).as_i64(), key);
        }
        assert_eq!(LockKey::from_i64(-1).hex64(), "ffffffffffffffff");
        assert_eq!(LockKey::from_i64(255).hex64(), "00000000000000ff");
    }

    #[test]
    fn md5_digests_round_trip() {
        let md5 = "00a1b2c3d4e5f60718293a4b5c6d7e8f";
        assert_eq!(
            LockKey::from_hex(md5).map(LockKey::hex128).as_deref(),
            Some(md5)
        );
        assert_eq!(LockKey::from_hex(""), None);
        assert_eq!(LockKey::from_hex("xyz"), None);
        assert_eq!(LockKey::from_hex(&"f".repeat(33)), None);
    }

    #[test]
    fn keys_of_either_kind_differ_by_value() {
        assert_ne!(LockKey::from_i64(1), LockKey::from_i64(2));
        assert_eq!(LockKey::from_hex("1"), Some(LockKey::from_i64(1)));
    }
}
