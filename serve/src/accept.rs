//! The step between accepting a TCP stream and speaking HTTP on it: nothing for a plain port,
//! a TLS handshake for an HTTPS one. It runs in the connection's own task, so a slow handshake
//! never holds up the accept loop.

use std::future::Future;
use std::io;

use hyper::rt::{Read, Write};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Turns an accepted TCP stream into the transport hyper serves.
pub trait Accept: Clone + Send + Sync + 'static {
    /// The transport, e.g. `TokioIo<TcpStream>` or a TLS stream wrapped in `TokioIo`.
    type Io: Read + Write + Unpin + Send + 'static;

    /// Prepares `stream`; an error drops the connection (logged at debug: a client that went
    /// away mid-handshake is no fault of the server's).
    fn accept(&self, stream: TcpStream) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

/// Plain TCP: HTTP straight on the accepted stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plain;

impl Accept for Plain {
    type Io = TokioIo<TcpStream>;

    fn accept(&self, stream: TcpStream) -> impl Future<Output = io::Result<Self::Io>> + Send {
        std::future::ready(Ok(TokioIo::new(stream)))
    }
}
