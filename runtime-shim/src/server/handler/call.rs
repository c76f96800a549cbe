//! The request as a worker sees it: method, path, query, flattened headers, body and how the
//! worker should read the body, built once per request and framed once per attempt.

use bytes::Bytes;
use http::Method;
use http::header::{CONTENT_TYPE, HeaderMap};
use http::request::Parts;

use crate::protocol::{BodyKind, FLAG_EVENT, Invoke};

/// The request as a worker sees it: built once, framed afresh for each attempt (only the
/// deadline changes between attempts).
pub(super) struct Call<'a> {
    parts: &'a Parts,
    flags: u8,
    body_kind: BodyKind,
    /// `name:value` lines, newline-separated.
    headers: Vec<u8>,
    pub(super) request_id: &'a str,
    body: &'a Bytes,
}

impl<'a> Call<'a> {
    pub(super) fn new(parts: &'a Parts, body: &'a Bytes, request_id: &'a str) -> Self {
        let is_event = parts.method == Method::POST && parts.uri.path() == "/event";
        Self {
            parts,
            flags: if is_event { FLAG_EVENT } else { 0 },
            body_kind: body_kind(parts, is_event, body),
            headers: flatten_headers(&parts.headers),
            request_id,
            body,
        }
    }

    /// The frame for an attempt that must finish by `deadline_ms` (Unix milliseconds).
    pub(super) fn frame(&self, deadline_ms: u64) -> Invoke<'_> {
        Invoke {
            id: 0,
            flags: self.flags,
            body_kind: self.body_kind,
            deadline_ms,
            method: self.parts.method.as_str(),
            path: self.parts.uri.path(),
            query: self.parts.uri.query().unwrap_or(""),
            headers: &self.headers,
            request_id: self.request_id,
            body: self.body,
        }
    }
}

/// How the worker turns the body into `event`: `/event` bodies are always JSON (kipper-poll
/// sends JSON), others by their content type.
fn body_kind(parts: &Parts, is_event: bool, body: &Bytes) -> BodyKind {
    if body.is_empty() {
        BodyKind::Empty
    } else if is_event
        || parts
            .headers
            .get(CONTENT_TYPE)
            .is_some_and(|v| is_json(v.as_bytes()))
    {
        BodyKind::Json
    } else {
        BodyKind::Text
    }
}

fn flatten_headers(headers: &HeaderMap) -> Vec<u8> {
    let mut flat = Vec::with_capacity(256);
    for (name, value) in headers {
        flat.extend_from_slice(name.as_str().as_bytes());
        flat.push(b':');
        flat.extend_from_slice(value.as_bytes());
        flat.push(b'\n');
    }
    flat.pop();
    flat
}

/// Whether a content type is JSON (`application/json` or any `+json`).
fn is_json(content_type: &[u8]) -> bool {
    let ct = content_type
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default();
    let ct = ct.trim_ascii();
    ct.eq_ignore_ascii_case(b"application/json")
        || (ct.len() > 5 && ct[ct.len() - 5..].eq_ignore_ascii_case(b"+json"))
}

#[cfg(test)]
mod tests {
    use http::{HeaderValue, Request};

    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json(b"application/json"));
        assert!(is_json(b"Application/JSON; charset=utf-8"));
        assert!(is_json(b"application/cloudevents+json"));
        assert!(!is_json(b"text/plain"));
        assert!(!is_json(b"application/jsonx"));
    }

    #[test]
    fn headers_flatten_to_lines_without_a_trailing_newline() {
        let mut headers = HeaderMap::new();
        headers.insert("a", HeaderValue::from_static("1"));
        headers.append("b", HeaderValue::from_static("2"));
        assert_eq!(flatten_headers(&headers), b"a:1\nb:2");
        assert!(flatten_headers(&HeaderMap::new()).is_empty());
    }

    #[test]
    fn event_bodies_are_json_whatever_their_content_type() {
        let (parts, ()) = Request::post("/event")
            .header(CONTENT_TYPE, "text/plain")
            .body(())
            .unwrap()
            .into_parts();
        let body = Bytes::from_static(b"{}");
        assert_eq!(body_kind(&parts, true, &body), BodyKind::Json);
        assert_eq!(body_kind(&parts, false, &body), BodyKind::Text);
        assert_eq!(body_kind(&parts, true, &Bytes::new()), BodyKind::Empty);
        let call = Call::new(&parts, &body, "r1");
        let frame = call.frame(7);
        assert_eq!((frame.flags, frame.deadline_ms), (FLAG_EVENT, 7));
        assert_eq!((frame.path, frame.request_id), ("/event", "r1"));
    }
}
