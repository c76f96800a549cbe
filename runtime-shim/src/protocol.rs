//! The framed protocol between the shim and a language worker, over a unix
//! socket. Compact on purpose: one fixed little-endian header a worker decodes
//! with a single `struct.unpack_from` / `Buffer.readUInt32LE` call, the body
//! carried as raw bytes (JSON is parsed only by the worker, only when the
//! request says it is JSON), and many frames per `write` under load.
//!
//! Every frame: `u32 len` (bytes after this field), `u8 kind`, `u32 id`, payload.
//!
//! | kind | direction | payload |
//! |---|---|---|
//! | 1 `INVOKE` | shim -> worker | `u8 flags, u8 body_kind, u64 deadline_ms, u16 method, u16 path, u32 query, u32 headers, u16 request_id, u32 body` lengths, then those bytes |
//! | 2 `RESULT` | worker -> shim | `u16 status, u8 content_type, u32 headers_len`, headers (`name:value\n`), body |
//! | 4 `LOG` | worker -> shim | `u8 stream` (1 stdout, 2 stderr, 3 the stack of a thrown exception), text; `id` is the invocation's, 0 when none |
//! | 5 `PING` | shim -> worker | none; answered by a `PONG` with the same id from the loop that runs handlers, so a missing answer means that loop is stuck |
//! | 6 `PONG` | worker -> shim | none |
//! | 7 `UNSTARTED` | worker -> shim | none; the worker is exiting (a handler called `process.exit` / `os._exit` / `sys.exit`) and never started invocation `id`: the shim sends it to another worker. Id 0 comes first and only says "exiting": the shim stops writing to the worker, which then drains what was written |
//! | 10 `READY` | worker -> shim | the handler loaded; optional `u8 flags`: 1 = the worker runs one invocation at a time (a sync python handler), so the shim sends it one at a time |
//! | 11 `LOAD_FAILED` | worker -> shim | the error message and stack |
//!
//! In batch mode (`FLAG_BATCH`) a `RESULT`'s status is the exit code and its body the JSON to print.

use bytes::{Buf, Bytes, BytesMut};

use crate::{Error, ProtocolViolation, Result};

/// Frame kind: shim -> worker, one invocation.
pub const INVOKE: u8 = 1;
/// Frame kind: worker -> shim, the answer to an invocation.
pub const RESULT: u8 = 2;
/// Frame kind: worker -> shim, a line the handler printed.
pub const LOG: u8 = 4;
/// Frame kind: shim -> worker, "is the loop that runs handlers free to answer?".
pub const PING: u8 = 5;
/// Frame kind: worker -> shim, the answer to a `PING`.
pub const PONG: u8 = 6;
/// Frame kind: worker -> shim, "I am exiting and never started this invocation".
pub const UNSTARTED: u8 = 7;
/// Frame kind: worker -> shim, the handler loaded.
pub const READY: u8 = 10;
/// `READY` flag: the worker runs one invocation at a time.
pub const READY_SERIAL: u8 = 1;
/// Frame kind: worker -> shim, the handler failed to load (and why).
pub const LOAD_FAILED: u8 = 11;

/// `INVOKE` flag: the request came to `POST /event` (context.trigger is the event trigger).
pub const FLAG_EVENT: u8 = 1;
/// `INVOKE` flag: batch mode, the worker answers with an exit code.
pub const FLAG_BATCH: u8 = 2;

/// How the worker turns the body into `event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BodyKind {
    /// Empty body: `null` / `None`.
    Empty = 0,
    /// Parse as JSON.
    Json = 1,
    /// Pass as text.
    Text = 2,
}

/// `RESULT` content type codes, so the common ones cost one byte.
///
/// No content type (the handler set its own, or there is no body).
pub const CT_NONE: u8 = 0;
/// `application/json`.
pub const CT_JSON: u8 = 1;
/// `text/plain; charset=utf-8`.
pub const CT_TEXT: u8 = 2;
/// `application/octet-stream`.
pub const CT_OCTET: u8 = 3;

/// The `Content-Type` header value of a `RESULT` content type code.
pub fn content_type(code: u8) -> Option<&'static str> {
    match code {
        CT_JSON => Some("application/json"),
        CT_TEXT => Some("text/plain; charset=utf-8"),
        CT_OCTET => Some("application/octet-stream"),
        _ => None,
    }
}

/// Bytes before a frame's payload: length, kind and id.
pub const HEADER: usize = 9;
const INVOKE_FIXED: usize = 28;
/// Largest frame accepted from a worker: the body limit plus room for headers.
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// One invocation, borrowed from the HTTP request.
#[derive(Debug, Clone, Copy)]
pub struct Invoke<'a> {
    /// Frame id, assigned by the worker handle.
    pub id: u32,
    /// `FLAG_EVENT`, `FLAG_BATCH`.
    pub flags: u8,
    /// How the worker turns the body into `event`.
    pub body_kind: BodyKind,
    /// `context.deadline`, Unix milliseconds.
    pub deadline_ms: u64,
    /// `context.method`.
    pub method: &'a str,
    /// `context.path`.
    pub path: &'a str,
    /// The raw query string, parsed into `context.query` by the worker.
    pub query: &'a str,
    /// Lower-case `name:value\n` lines.
    pub headers: &'a [u8],
    /// `context.requestId`.
    pub request_id: &'a str,
    /// The request body.
    pub body: &'a [u8],
}

fn clip16(s: &[u8]) -> &[u8] {
    &s[..s.len().min(u16::MAX as usize)]
}

impl Invoke<'_> {
    /// Appends the frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let method = clip16(self.method.as_bytes());
        let path = clip16(self.path.as_bytes());
        let request_id = clip16(self.request_id.as_bytes());
        let len = 5
            + INVOKE_FIXED
            + method.len()
            + path.len()
            + self.query.len()
            + self.headers.len()
            + request_id.len()
            + self.body.len();
        out.reserve(len + 4);
        out.extend_from_slice(&(len as u32).to_le_bytes());
        out.push(INVOKE);
        out.extend_from_slice(&self.id.to_le_bytes());
        out.push(self.flags);
        out.push(self.body_kind as u8);
        out.extend_from_slice(&self.deadline_ms.to_le_bytes());
        out.extend_from_slice(&(method.len() as u16).to_le_bytes());
        out.extend_from_slice(&(path.len() as u16).to_le_bytes());
        out.extend_from_slice(&(self.query.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.headers.len() as u32).to_le_bytes());
        out.extend_from_slice(&(request_id.len() as u16).to_le_bytes());
        out.extend_from_slice(&(self.body.len() as u32).to_le_bytes());
        out.extend_from_slice(method);
        out.extend_from_slice(path);
        out.extend_from_slice(self.query.as_bytes());
        out.extend_from_slice(self.headers);
        out.extend_from_slice(request_id);
        out.extend_from_slice(self.body);
    }
}

/// Appends a `PING` frame with id `id` to `out`.
pub fn encode_ping(id: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&5u32.to_le_bytes());
    out.push(PING);
    out.extend_from_slice(&id.to_le_bytes());
}

/// Where a handler's log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// `console.log`, `print`: logged at INFO.
    Stdout,
    /// `console.error`, `sys.stderr`: logged at INFO too (Python's logging
    /// writes every level there, so stderr alone says nothing of severity).
    Stderr,
    /// The stack of an exception the handler threw (the request got a 500):
    /// logged at ERROR.
    Thrown,
}

/// A frame received from a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The answer to an invocation.
    Result(Reply),
    /// A line the handler printed during invocation `id` (0: none).
    Log {
        /// The invocation that printed it.
        id: u32,
        /// Where the handler printed it.
        stream: Stream,
        /// The text.
        text: Bytes,
    },
    /// The answer to the `PING` with this id.
    Pong(u32),
    /// The worker is exiting and never started this invocation.
    Unstarted(u32),
    /// The handler loaded.
    Ready {
        /// It runs one invocation at a time: a blocking handler would hold
        /// every invocation queued behind it.
        serial: bool,
    },
    /// The handler failed to load: the error and its stack.
    LoadFailed(String),
}

/// A worker's answer to one invocation, already mapped to HTTP by the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The invocation's frame id.
    pub id: u32,
    /// HTTP status (batch mode: the exit code).
    pub status: u16,
    /// One of the `CT_*` codes.
    pub content_type: u8,
    /// `name:value\n` lines set by the handler.
    pub headers: Bytes,
    /// The response body (batch mode: the JSON to print).
    pub body: Bytes,
}

impl Reply {
    /// The handler-set headers as (name, value) pairs; malformed lines are skipped.
    pub fn header_pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.headers.split(|b| *b == b'\n').filter_map(|line| {
            let colon = line.iter().position(|b| *b == b':')?;
            Some((&line[..colon], &line[colon + 1..]))
        })
    }
}

/// Takes one complete frame off the front of `buf`, or `None` when more bytes are needed.
pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if !(5..=MAX_FRAME).contains(&len) {
        return Err(Error::Protocol(ProtocolViolation::FrameLength(len)));
    }
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    let mut frame = buf.split_to(len).freeze();
    let kind = frame.get_u8();
    let id = frame.get_u32_le();
    let decoded = match kind {
        RESULT => {
            if frame.len() < 7 {
                return Err(Error::Protocol(ProtocolViolation::Short("RESULT")));
            }
            let status = frame.get_u16_le();
            let content_type = frame.get_u8();
            let headers_len = frame.get_u32_le() as usize;
            if frame.len() < headers_len {
                return Err(Error::Protocol(ProtocolViolation::HeadersOverrun));
            }
            let headers = frame.split_to(headers_len);
            Frame::Result(Reply {
                id,
                status,
                content_type,
                headers,
                body: frame,
            })
        }
        LOG => {
            if frame.is_empty() {
                return Err(Error::Protocol(ProtocolViolation::Short("LOG")));
            }
            let stream = frame.get_u8();
            Frame::Log {
                id,
                stream: match stream {
                    1 => Stream::Stdout,
                    3 => Stream::Thrown,
                    _ => Stream::Stderr,
                },
                text: frame,
            }
        }
        PONG => Frame::Pong(id),
        UNSTARTED => Frame::Unstarted(id),
        READY => Frame::Ready {
            serial: frame.first() == Some(&READY_SERIAL),
        },
        LOAD_FAILED => Frame::LoadFailed(String::from_utf8_lossy(&frame).into_owned()),
        other => return Err(Error::Protocol(ProtocolViolation::UnknownKind(other))),
    };
    Ok(Some(decoded))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result_frame(id: u32, status: u16, ct: u8, headers: &[u8], body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let len = 5 + 7 + headers.len() + body.len();
        out.extend_from_slice(&(len as u32).to_le_bytes());
        out.push(RESULT);
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&status.to_le_bytes());
        out.push(ct);
        out.extend_from_slice(&(headers.len() as u32).to_le_bytes());
        out.extend_from_slice(headers);
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn invoke_layout_matches_the_fixed_header() {
        let mut out = Vec::new();
        Invoke {
            id: 7,
            flags: FLAG_EVENT,
            body_kind: BodyKind::Json,
            deadline_ms: 99,
            method: "POST",
            path: "/event",
            query: "a=1",
            headers: b"x:y\n",
            request_id: "r1",
            body: b"{}",
        }
        .encode(&mut out);
        let len = u32::from_le_bytes(out[0..4].try_into().unwrap()) as usize;
        assert_eq!(len + 4, out.len());
        assert_eq!(out[4], INVOKE);
        assert_eq!(u32::from_le_bytes(out[5..9].try_into().unwrap()), 7);
        assert_eq!(out[9], FLAG_EVENT);
        assert_eq!(out[10], 1);
        assert_eq!(u64::from_le_bytes(out[11..19].try_into().unwrap()), 99);
        assert_eq!(&out[HEADER + INVOKE_FIXED..], b"POST/eventa=1x:y\nr1{}");
    }

    #[test]
    fn decodes_frames_split_anywhere() {
        let mut wire = result_frame(3, 201, CT_JSON, b"x-a:1\n", b"{\"ok\":true}");
        wire.extend_from_slice(&[5, 0, 0, 0, READY, 0, 0, 0, 0]);
        wire.extend_from_slice(&[5, 0, 0, 0, PONG, 9, 0, 0, 0]);
        wire.extend_from_slice(&[6, 0, 0, 0, READY, 0, 0, 0, 0, READY_SERIAL]);
        wire.extend_from_slice(&[5, 0, 0, 0, UNSTARTED, 4, 1, 0, 0]);
        for cut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut frames = Vec::new();
            while let Some(f) = decode(&mut buf).unwrap() {
                frames.push(f);
            }
            buf.extend_from_slice(&wire[cut..]);
            while let Some(f) = decode(&mut buf).unwrap() {
                frames.push(f);
            }
            assert_eq!(frames.len(), 5, "cut at {cut}");
            let Frame::Result(reply) = &frames[0] else {
                panic!("{frames:?}")
            };
            assert_eq!(
                (reply.id, reply.status, reply.content_type),
                (3, 201, CT_JSON)
            );
            assert_eq!(
                reply.header_pairs().collect::<Vec<_>>(),
                vec![(&b"x-a"[..], &b"1"[..])]
            );
            assert_eq!(&reply.body[..], b"{\"ok\":true}");
            assert_eq!(frames[1], Frame::Ready { serial: false });
            assert_eq!(frames[2], Frame::Pong(9));
            assert_eq!(frames[3], Frame::Ready { serial: true });
            assert_eq!(frames[4], Frame::Unstarted(260));
        }
    }

    #[test]
    fn ping_layout() {
        let mut out = Vec::new();
        encode_ping(7, &mut out);
        assert_eq!(out, [5, 0, 0, 0, PING, 7, 0, 0, 0]);
    }

    #[test]
    fn rejects_garbage() {
        let mut buf = BytesMut::from(&[1u8, 0, 0, 0, 0][..]);
        assert!(decode(&mut buf).is_err());
        let mut buf = BytesMut::from(&[5u8, 0, 0, 0, 99, 0, 0, 0, 0][..]);
        assert!(decode(&mut buf).is_err());
    }
}
