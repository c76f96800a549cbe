//! The one accept-and-serve loop of every Kipper HTTP port: the shim's function port and admin
//! port, kipper-poll's admin port and MinIO webhook receiver, the controller's endpoints, and the
//! test API server's HTTPS front.
//!
//! A [`Server`] accepts until its shutdown future resolves, serves each connection in its own
//! task with hyper's HTTP/1 server, and hands back the open [`Connections`], which the caller
//! [drains](Connections::drain) within its grace period. What differs between ports is a
//! parameter, not a copy of the loop: the name in the logs, the [`Accept`] step (plain TCP, or
//! a TLS handshake), the service, the shutdown future and the grace.
//!
//! **Architecture Invariant:** an accept error (EMFILE, ENOBUFS, a connection reset before it
//! was accepted) is logged and backed off, never fatal and never a busy loop; the listener is
//! closed as soon as shutdown starts, so new connections are refused while the old ones drain.

mod accept;
mod connection;
mod drain;

pub use accept::{Accept, Plain};
pub use drain::{Connections, Drained};

use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::TokioTimer;
use tokio::net::TcpListener;

/// How long the loop waits after a failed accept. Most accept errors (out of file
/// descriptors, out of buffers) persist for a while; retrying at once would spin a core.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// One HTTP port's accept loop, before it runs.
#[derive(Debug, Clone)]
pub struct Server<A = Plain> {
    name: &'static str,
    accept: A,
}

impl Server<Plain> {
    /// A plain-TCP server; `name` labels its log lines (`server = name`).
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            accept: Plain,
        }
    }
}

impl<A: Accept> Server<A> {
    /// The same server with another per-connection step, e.g. a TLS handshake.
    pub fn with_accept<B: Accept>(self, accept: B) -> Server<B> {
        Server {
            name: self.name,
            accept,
        }
    }

    /// Accepts on `listener` until `shutdown` resolves, serving each connection with a clone of
    /// `service` in its own task, then closes the listener and returns the connections still
    /// open, for the caller to [drain](Connections::drain).
    ///
    /// Every connection gets `TCP_NODELAY` (small answers must not wait for Nagle and delayed
    /// ACK, 40 ms) and hyper's HTTP/1 keep-alive with its timer, so a client that never
    /// finishes its request headers is closed after hyper's header-read timeout.
    pub async fn serve<S, B, F>(self, listener: TcpListener, service: S, shutdown: F) -> Connections
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn StdError + Send + Sync>>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
        F: Future<Output = ()>,
    {
        let connections = Connections::new();
        // Shared rather than cloned per connection: one reference count, not a struct copy.
        let http = Arc::new({
            let mut http = http1::Builder::new();
            http.timer(TokioTimer::new()).keep_alive(true);
            http
        });
        tokio::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        tracing::debug!(message = "Connection accepted.", server = self.name, %peer);
                        stream
                    }
                    Err(error) => {
                        tracing::warn!(message = "Accept failed; backing off.", server = self.name, %error);
                        tokio::select! {
                            () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                            () = &mut shutdown => break,
                        }
                    }
                },
                () = &mut shutdown => break,
            };
            // Best effort: a socket that refuses the option still serves, only slower.
            let _ = stream.set_nodelay(true);
            tokio::spawn(connection::serve(
                self.name,
                self.accept.clone(),
                Arc::clone(&http),
                stream,
                service.clone(),
                connections.watch(),
            ));
        }
        // Refuse new connections while the open ones drain.
        drop(listener);
        connections
    }
}
