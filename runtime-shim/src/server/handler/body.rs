//! The request body's limit (`KIPPER_BODY_LIMIT`), enforced in one place whichever way a body
//! exceeds it: declared too long by `Content-Length` (refused before the request is held), or
//! found too long while a chunked body is read. Both give the same 413.

use bytes::Bytes;
use http::StatusCode;
use http::header::{CONTENT_LENGTH, HeaderMap};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::{Resp, error};

/// Why a request body is not taken. Both ways of exceeding the limit (declared by
/// `Content-Length`, or found while reading a chunked body) give the same answer.
#[derive(Debug)]
pub(super) enum BodyRefusal {
    /// Over `KIPPER_BODY_LIMIT`.
    TooLarge,
    /// The client sent something unreadable, or went away.
    Unreadable(String),
}

impl BodyRefusal {
    pub(super) fn answer(&self, limit: usize) -> Resp {
        match self {
            Self::TooLarge => error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "the request body is larger than the limit of {limit} bytes (KIPPER_BODY_LIMIT)"
                ),
                None,
            ),
            Self::Unreadable(reason) => error(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the request body: {reason}"),
                None,
            ),
        }
    }
}

/// Refuses a body whose declared length is over `limit`, before it is read or held.
pub(super) fn check_declared_length(headers: &HeaderMap, limit: usize) -> Result<(), BodyRefusal> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyRefusal::TooLarge);
    }
    Ok(())
}

/// Collects the body, stopping at `limit` bytes (a chunked body declares no length).
pub(super) async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, BodyRefusal> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(BodyRefusal::TooLarge)
        }
        Err(e) => Err(BodyRefusal::Unreadable(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn a_declared_length_over_the_limit_is_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("11"));
        assert!(check_declared_length(&headers, 11).is_ok());
        assert!(matches!(
            check_declared_length(&headers, 10),
            Err(BodyRefusal::TooLarge)
        ));
        assert!(check_declared_length(&HeaderMap::new(), 0).is_ok());
    }

    #[test]
    fn over_the_limit_is_413_naming_the_setting_and_unreadable_is_400() {
        let resp = BodyRefusal::TooLarge.answer(10);
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let resp = BodyRefusal::Unreadable("reset".into()).answer(10);
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    }
}
