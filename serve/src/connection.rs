//! One connection's task: the [`Accept`] step, then hyper's HTTP/1 connection until the client
//! closes it or the server's [`Phase`] says to stop.

use std::error::Error as StdError;
use std::sync::Arc;

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper::{Request, Response};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::accept::Accept;
use crate::drain::{Phase, next};

/// Serves one accepted stream. `phase` is held until the connection is gone: that is how the
/// drain knows it closed.
pub(crate) async fn serve<A, S, B>(
    server: &'static str,
    accept: A,
    http: Arc<http1::Builder>,
    stream: TcpStream,
    service: S,
    mut phase: watch::Receiver<Phase>,
) where
    A: Accept,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let io = tokio::select! {
        biased;
        io = accept.accept(stream) => match io {
            Ok(io) => io,
            Err(error) => {
                tracing::debug!(message = "Connection setup failed.", server, %error);
                return;
            }
        },
        // No request has started: nothing to finish.
        _ = next(&mut phase) => return,
    };
    let connection = http.serve_connection(io, service);
    tokio::pin!(connection);
    // The connection is polled first: a request that is ready is served before the phase is
    // looked at, and the common case (no shutdown) costs one extra poll of a parked receiver.
    let ended = tokio::select! {
        biased;
        ended = connection.as_mut() => ended,
        phase_now = next(&mut phase) => {
            if phase_now == Phase::Closed {
                return;
            }
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                biased;
                ended = connection.as_mut() => ended,
                _ = next(&mut phase) => return,
            }
        }
    };
    if let Err(error) = ended {
        // A client going away mid-request is routine, not a server fault.
        tracing::debug!(message = "Connection ended with an error.", server, %error);
    }
}
