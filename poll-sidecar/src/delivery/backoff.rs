//! Retry waits: exponential backoff with jitter, and the target's
//! `Retry-After` when it sends one.

use std::time::{Duration, SystemTime};

use rand::Rng;

/// The longest `Retry-After` honoured; beyond it a misconfigured target
/// would park events for hours.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(600);

/// Exponential backoff: `initial * 2^(retry-1)`, capped at `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The wait before the first retry.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Backoff {
    /// The wait before retry number `retry` (1 = first retry), with "equal
    /// jitter": half fixed, half random, so replicas that failed together do
    /// not retry together, yet the wait still grows.
    pub fn wait(&self, retry: u32) -> Duration {
        let exp = self.initial.saturating_mul(
            1u32.checked_shl(retry.saturating_sub(1).min(30))
                .unwrap_or(u32::MAX),
        );
        let capped = exp.min(self.max);
        let half = capped / 2;
        half + rand::rng().random_range(Duration::ZERO..=half)
    }

    /// The wait before retry `retry`, or what the target asked for.
    pub fn wait_or(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(asked) => asked.min(RETRY_AFTER_CAP),
            None => self.wait(retry),
        }
    }
}

/// Parses a `Retry-After` value: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(date.timestamp()).ok()?);
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_and_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for _ in 0..100 {
            let first = b.wait(1);
            assert!(
                first >= Duration::from_millis(50) && first <= Duration::from_millis(100),
                "{first:?}"
            );
            let third = b.wait(3);
            assert!(
                third >= Duration::from_millis(200) && third <= Duration::from_millis(400),
                "{third:?}"
            );
            assert!(b.wait(40) <= Duration::from_secs(1));
        }
    }

    #[test]
    fn retry_after_wins_and_is_capped() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(
            b.wait_or(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            b.wait_or(1, Some(Duration::from_secs(99_999))),
            RETRY_AFTER_CAP
        );
    }

    #[test]
    fn retry_after_formats() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
