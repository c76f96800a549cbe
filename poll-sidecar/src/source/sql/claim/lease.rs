//! Durable claim leases: what keeps a row this replica is delivering away
//! from other replicas after the session holding its lock is gone (design:
//! [`crate::source::sql`], "Leases").
//!
//! The engine takes a lease per claimed row (one statement per batch) and
//! records the row's key in the [`LeaseBook`] it shares with the *keeper*,
//! a background task with its own connection ([`KeeperSession`]) that
//! renews every [`RENEW_EVERY`] the leases of the keys in the book. The book
//! also holds the fence of the current claim session: a keeper that has not
//! renewed for [`LAPSE`] cancels it, so no attempt of its rows starts after
//! the leases stopped being renewed ([`lapsed`]).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::driver::{Driver, KeeperSession};
use super::key::LockKey;
use crate::source::sql::{COMPACT_EVERY_TICKS, RENEW_EVERY, SWEEP_EVERY_TICKS};

/// How long the keeper may go without a successful renewal before it fences
/// the current claim session.
pub const LAPSE: Duration = Duration::from_secs(2);

/// A random id of this process among lease holders (16 hex digits): a
/// restarted sidecar never mistakes the leases of its previous life for its
/// own.
pub fn holder_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Whether the keeper has gone too long without renewing: measured from the
/// later of when its last good renewal was *sent* (every lease it covered
/// was extended no earlier) and when the current claim session began (its
/// leases were all taken after that).
pub fn lapsed(now: Instant, last_good: Instant, session_began: Instant) -> bool {
    until_lapse(now, last_good, session_began).is_zero()
}

/// How long until the keeper lapses (zero: it has).
fn until_lapse(now: Instant, last_good: Instant, session_began: Instant) -> Duration {
    LAPSE.saturating_sub(now.saturating_duration_since(last_good.max(session_began)))
}

/// What the engine shares with the keeper.
#[derive(Debug)]
struct Book {
    /// Keys whose leases are this replica's to renew.
    keys: HashSet<LockKey>,
    /// The current claim session's fence, cancelled on a lapse.
    fence: Option<CancellationToken>,
    /// When the current claim session began.
    began: Instant,
}

/// The leased keys and the current fence, shared by the engine and the
/// keeper; the engine locks it once per claim or settlement, never per row.
#[derive(Debug, Clone)]
pub struct LeaseBook(Arc<Mutex<Book>>);

impl Default for LeaseBook {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Book {
            keys: HashSet::new(),
            fence: None,
            began: Instant::now(),
        })))
    }
}

impl LeaseBook {
    fn lock(&self) -> MutexGuard<'_, Book> {
        // Nothing panics while holding it; a poisoned book is still consistent.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new claim session began with `fence`.
    pub fn began(&self, fence: CancellationToken) {
        let mut book = self.lock();
        book.fence = Some(fence);
        book.began = Instant::now();
    }

    /// Leases taken: renew them from now on.
    pub fn add(&self, keys: impl IntoIterator<Item = LockKey>) {
        self.lock().keys.extend(keys);
    }

    /// Rows given up (unlocked, settled, released, dropped): stop renewing.
    pub fn remove<'a>(&self, keys: impl IntoIterator<Item = &'a LockKey>) {
        let mut book = self.lock();
        for key in keys {
            book.keys.remove(key);
        }
    }

    /// Keeps only the keys `keep` says are still held.
    pub fn retain(&self, keep: impl Fn(&LockKey) -> bool) {
        self.lock().keys.retain(keep);
    }

    /// The keys to renew now.
    fn snapshot(&self) -> Vec<LockKey> {
        self.lock().keys.iter().copied().collect()
    }

    /// Whether `key` is leased (tests).
    #[cfg(test)]
    pub fn contains(&self, key: &LockKey) -> bool {
        self.lock().keys.contains(key)
    }

    /// How long a renewal may take so that the lapse check after it is on
    /// time: until the lapse of a live fence, at most a period.
    fn renewal_bound(&self, now: Instant, last_good: Instant) -> Duration {
        let book = self.lock();
        match &book.fence {
            Some(fence) if !fence.is_cancelled() => {
                until_lapse(now, last_good, book.began).min(RENEW_EVERY)
            }
            _ => RENEW_EVERY,
        }
    }

    /// Fences the current claim session if the keeper lapsed; true if it did.
    fn fence_if_lapsed(&self, now: Instant, last_good: Instant) -> bool {
        let mut book = self.lock();
        if !lapsed(now, last_good, book.began) {
            return false;
        }
        match book.fence.take() {
            // A session already known to be lost was fenced by its loss.
            Some(fence) if !fence.is_cancelled() => {
                fence.cancel();
                true
            }
            _ => false,
        }
    }
}

/// Deletes leases that expired long ago (of replicas that died holding them).
/// Bounded by a renewal period, so it never delays a renewal much; a failure
/// only leaves the table as it was.
async fn sweep<K: KeeperSession>(keeper: &mut K, kind: &'static str) {
    match tokio::time::timeout(RENEW_EVERY, keeper.sweep()).await {
        Ok(Ok(0)) | Err(_) => {}
        Ok(Ok(swept)) => {
            tracing::info!(
                message = "Expired claim leases deleted.",
                source = kind,
                swept
            );
        }
        Ok(Err(error)) => {
            tracing::debug!(message = "Deleting expired claim leases failed.", source = kind, %error);
        }
    }
}

/// The keeper task: renews the leases in `book` every [`RENEW_EVERY`] on a
/// connection of its own (opened again at the next tick when it fails) and
/// fences the claim session after a [`LAPSE`]. Runs until `stop`.
pub async fn keep<D: Driver>(
    driver: D,
    mut session: Option<D::Keeper>,
    book: LeaseBook,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(RENEW_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_good = Instant::now();
    let mut failing = false;
    let mut ticks: u32 = 0;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if ticks.is_multiple_of(SWEEP_EVERY_TICKS)
            && let Some(keeper) = session.as_mut()
        {
            sweep(keeper, D::KIND).await;
        }
        if ticks.is_multiple_of(COMPACT_EVERY_TICKS)
            && let Some(keeper) = session.as_mut()
        {
            keeper.compact();
        }
        ticks = ticks.wrapping_add(1);
        let sent = Instant::now();
        let keys = book.snapshot();
        let bound = book.renewal_bound(sent, last_good);
        let renewed = if keys.is_empty() {
            // Nothing to protect: leases taken later are fresher than now.
            Ok(())
        } else {
            // Bounded, so a hung connection cannot delay the lapse check
            // (a lapse due now fails it at once: the check below fences).
            let attempt = async {
                let keeper = match session.as_mut() {
                    Some(keeper) => keeper,
                    None => session.insert(driver.open_keeper().await?),
                };
                keeper.renew(&keys).await
            };
            match tokio::time::timeout(bound, attempt).await {
                Ok(result) => result,
                Err(_) => Err(crate::Error::Source {
                    kind: D::KIND,
                    message: format!("no answer within {bound:?}"),
                }),
            }
        };
        match renewed {
            Ok(()) => {
                last_good = sent;
                if std::mem::take(&mut failing) {
                    tracing::info!(message = "Claim leases renewed again.", source = D::KIND);
                }
            }
            Err(error) => {
                session = None;
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(message = "Renewing claim leases failed; reconnecting.", source = D::KIND, %error);
                }
            }
        }
        if book.fence_if_lapsed(Instant::now(), last_good) {
            tracing::warn!(
                message = "Claim leases not renewed in time; the claim session's rows get no further attempt.",
                source = D::KIND,
                lapse = ?LAPSE,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_keeper_lapses_two_periods_after_its_last_good_renewal_was_sent() {
        let sent = Instant::now();
        tokio::time::advance(Duration::from_millis(300)).await;
        let began = sent - Duration::from_secs(10);
        tokio::time::advance(LAPSE - Duration::from_millis(301)).await;
        assert!(!lapsed(Instant::now(), sent, began));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(lapsed(Instant::now(), sent, began), "2 s after it was sent");
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_claim_session_gets_a_full_lapse_of_its_own() {
        let last_good = Instant::now();
        tokio::time::advance(Duration::from_secs(60)).await;
        let began = Instant::now();
        let book = LeaseBook::default();
        let fence = CancellationToken::new();
        book.began(fence.clone());
        tokio::time::advance(LAPSE - Duration::from_millis(1)).await;
        assert!(!book.fence_if_lapsed(Instant::now(), last_good));
        assert!(!lapsed(Instant::now(), last_good, began));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(book.fence_if_lapsed(Instant::now(), last_good));
        assert!(fence.is_cancelled());
        assert!(
            !book.fence_if_lapsed(Instant::now(), last_good),
            "a fence is cancelled once"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_may_not_outlast_the_lapse_it_would_miss() {
        let book = LeaseBook::default();
        let last_good = Instant::now();
        assert_eq!(book.renewal_bound(Instant::now(), last_good), RENEW_EVERY);
        book.began(CancellationToken::new());
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(
            book.renewal_bound(Instant::now(), last_good),
            Duration::from_millis(500),
            "the session began at the last good renewal: 0.5 s left"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            book.renewal_bound(Instant::now(), last_good),
            Duration::ZERO
        );
        assert!(book.fence_if_lapsed(Instant::now(), last_good));
        assert_eq!(
            book.renewal_bound(Instant::now(), last_good),
            RENEW_EVERY,
            "once fenced, renewals go on for the rows still in flight"
        );
    }

    #[test]
    fn holders_are_16_hex_digits_and_differ() {
        let (a, b) = (holder_id(), holder_id());
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
