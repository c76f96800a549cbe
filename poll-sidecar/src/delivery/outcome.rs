//! What one delivery attempt, and an event's whole series of attempts, came
//! to: typed, so the deliverer decides on kinds (a 503, a refused connection)
//! rather than on the text, and the text logged and dead-lettered is rendered
//! from the kind in one place.

use std::fmt;
use std::time::Duration;

use http::{StatusCode, Uri};

use super::MAX_EVENT_BYTES;

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The target answered 2xx.
    Delivered,
    /// Anything else.
    Failed(Failure),
}

/// Why an attempt failed and what the target asked for. Its `Display` is the
/// one line logged and written into dead letters, e.g. `HTTP 500: {"error":"boom"}`
/// or `timed out after 30s`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong.
    pub kind: FailureKind,
    /// The target's `Retry-After`, if any.
    pub retry_after: Option<Duration>,
}

/// The kinds of failed attempt the deliverer tells apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// The target answered with this non-2xx status.
    Status {
        /// The status.
        status: StatusCode,
        /// The start of the answer's body on one line; empty when it had none.
        body: String,
    },
    /// No answer within the delivery timeout.
    Timeout(Duration),
    /// No connection could be made (refused, or the host is unreachable): the
    /// target is not up, which says nothing about the event.
    Refused {
        /// Where the event was going.
        target: Uri,
        /// The client's reason, on one line.
        detail: String,
    },
    /// The connection failed after it was made (reset, a malformed answer).
    Connection {
        /// Where the event was going.
        target: Uri,
        /// The client's reason, on one line.
        detail: String,
    },
    /// No request could be built for the target URL.
    Unsendable {
        /// The target URL.
        target: Uri,
    },
    /// The event is over [`MAX_EVENT_BYTES`]; it is dead-lettered unsent.
    TooLarge {
        /// The event's size.
        bytes: usize,
    },
}

impl Failure {
    /// A failure of `kind` with no `Retry-After`.
    pub fn new(kind: FailureKind) -> Self {
        Self {
            kind,
            retry_after: None,
        }
    }

    /// The status the target answered with, when it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match &self.kind {
            FailureKind::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the target answered 503: not ready, overloaded, or (when its
    /// ready URL says it is ready) its own verdict on the event.
    pub fn is_unavailable(&self) -> bool {
        self.status() == Some(StatusCode::SERVICE_UNAVAILABLE)
    }

    /// Refused or 503: the target is not ready, so the attempt says nothing
    /// about the event (the readiness gate closes on it).
    pub fn is_not_ready(&self) -> bool {
        matches!(self.kind, FailureKind::Refused { .. }) || self.is_unavailable()
    }

    /// Whether the target answered at all (any status, a 500 too): it is up
    /// and serving.
    pub fn target_answered(&self) -> bool {
        self.status().is_some()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status { status, body } if body.is_empty() => {
                write!(f, "HTTP {}", status.as_u16())
            }
            Self::Status { status, body } => write!(f, "HTTP {}: {body}", status.as_u16()),
            Self::Timeout(after) => write!(f, "timed out after {after:?}"),
            Self::Refused { target, detail } => write!(f, "cannot connect to {target}: {detail}"),
            Self::Connection { target, detail } => {
                write!(f, "request to {target} failed: {detail}")
            }
            Self::Unsendable { target } => write!(f, "cannot build a request to {target}"),
            Self::TooLarge { bytes } => write!(
                f,
                "event of {bytes} bytes exceeds the {MAX_EVENT_BYTES}-byte limit"
            ),
        }
    }
}

/// How an event's deliveries ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// A 2xx after `attempts` attempts.
    Delivered {
        /// Attempts made, the successful one included.
        attempts: u32,
    },
    /// The attempt cap was reached, or the event could not be sent at all.
    Dead {
        /// Attempts made.
        attempts: u32,
        /// The last failure; its text goes into the dead letter.
        error: Failure,
    },
    /// Shutdown came first, or the source revoked the event (its claim was
    /// lost: see [`super::Deliverer::deliver_fenced`]); no further attempt was made.
    Cancelled {
        /// Attempts made.
        attempts: u32,
    },
}

impl Settled {
    /// Attempts made, failed ones included.
    pub fn attempts(&self) -> u32 {
        match self {
            Self::Delivered { attempts }
            | Self::Dead { attempts, .. }
            | Self::Cancelled { attempts } => *attempts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Uri {
        Uri::from_static("http://localhost:8080/event")
    }

    fn status(code: u16, body: &str) -> Failure {
        Failure::new(FailureKind::Status {
            status: StatusCode::from_u16(code).unwrap(),
            body: body.into(),
        })
    }

    #[test]
    fn renders_the_text_logged_and_dead_lettered() {
        let cases = [
            (
                status(500, r#"{"error":"boom"}"#),
                r#"HTTP 500: {"error":"boom"}"#.to_string(),
            ),
            (status(502, ""), "HTTP 502".to_string()),
            (
                Failure::new(FailureKind::Timeout(Duration::from_secs(30))),
                "timed out after 30s".to_string(),
            ),
            (
                Failure::new(FailureKind::Refused {
                    target: target(),
                    detail: "client error (Connect)".into(),
                }),
                "cannot connect to http://localhost:8080/event: client error (Connect)".to_string(),
            ),
            (
                Failure::new(FailureKind::Connection {
                    target: target(),
                    detail: "connection reset".into(),
                }),
                "request to http://localhost:8080/event failed: connection reset".to_string(),
            ),
            (
                Failure::new(FailureKind::Unsendable { target: target() }),
                "cannot build a request to http://localhost:8080/event".to_string(),
            ),
            (
                Failure::new(FailureKind::TooLarge { bytes: 20 }),
                format!("event of 20 bytes exceeds the {MAX_EVENT_BYTES}-byte limit"),
            ),
        ];
        for (failure, text) in cases {
            assert_eq!(failure.to_string(), text);
        }
    }

    #[test]
    fn refused_and_503_say_not_ready_other_answers_say_up() {
        let refused = Failure::new(FailureKind::Refused {
            target: target(),
            detail: String::new(),
        });
        assert!(refused.is_not_ready() && !refused.is_unavailable());
        assert!(!refused.target_answered());

        let unavailable = status(503, "");
        assert!(unavailable.is_not_ready() && unavailable.is_unavailable());
        assert!(unavailable.target_answered());

        for code in [500, 502, 504, 404, 429] {
            let failure = status(code, "x");
            assert!(!failure.is_not_ready(), "{code}");
            assert!(failure.target_answered(), "{code}");
        }

        let timeout = Failure::new(FailureKind::Timeout(Duration::from_secs(1)));
        assert!(!timeout.is_not_ready() && !timeout.target_answered());
    }
}
