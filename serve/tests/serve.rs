//! The accept loop against real sockets on 127.0.0.1:0: requests are served, the listener closes
//! at shutdown, requests in progress finish within the grace, and what outlives it is cut.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use kipper_serve::{Connections, Drained, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A response body that never ends, like a Kubernetes watch.
struct Endless;

impl Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Pending
    }
}

/// Serves `service` on a fresh port; the oneshot starts the shutdown.
async fn start<S, B>(service: S) -> (SocketAddr, oneshot::Sender<()>, JoinHandle<Connections>)
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(Server::new("test").serve(listener, service, async {
        let _ = stopped.await;
    }));
    (addr, stop, task)
}

fn hello() -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    service_fn(|_req: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hi"))))
    })
}

async fn send(stream: &mut TcpStream, close: bool) {
    let connection = if close { "close" } else { "keep-alive" };
    let request = format!("GET / HTTP/1.1\r\nHost: t\r\nConnection: {connection}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
}

async fn read_until_body(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.ends_with(b"hi") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the answer: {seen:?}");
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(seen).unwrap()
}

#[tokio::test]
async fn serves_then_refuses_new_connections_after_shutdown() {
    let (addr, stop, task) = start(hello()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    send(&mut stream, true).await;
    let answer = read_until_body(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    stop.send(()).unwrap();
    let connections = task.await.unwrap();
    assert_eq!(
        connections.drain(Duration::from_secs(5)).await,
        Drained::Complete
    );
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_closes_at_once_on_drain() {
    let (addr, stop, task) = start(hello()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    send(&mut stream, false).await;
    read_until_body(&mut stream).await;
    stop.send(()).unwrap();
    let connections = task.await.unwrap();
    assert_eq!(connections.open(), 1);
    let drained = tokio::time::timeout(
        Duration::from_secs(5),
        connections.drain(Duration::from_secs(30)),
    )
    .await
    .expect("an idle connection does not wait for the grace");
    assert_eq!(drained, Drained::Complete);
    let mut rest = Vec::new();
    assert_eq!(stream.read_to_end(&mut rest).await.unwrap(), 0);
}

#[tokio::test]
async fn a_request_in_progress_finishes_within_the_grace() {
    let slow = service_fn(|_req: Request<Incoming>| async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hi"))))
    });
    let (addr, stop, task) = start(slow).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    send(&mut stream, false).await;
    // Let the request reach the service before the shutdown starts.
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.send(()).unwrap();
    let connections = task.await.unwrap();
    let drain = tokio::spawn(connections.drain(Duration::from_secs(5)));
    let answer = read_until_body(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(drain.await.unwrap(), Drained::Complete);
}

#[tokio::test]
async fn a_stream_outliving_the_grace_is_cut() {
    let endless =
        service_fn(|_req: Request<Incoming>| async { Ok::<_, Infallible>(Response::new(Endless)) });
    let (addr, stop, task) = start(endless).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    send(&mut stream, false).await;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    stop.send(()).unwrap();
    let connections = task.await.unwrap();
    assert_eq!(
        connections.drain(Duration::from_millis(100)).await,
        Drained::Cut { open: 1 }
    );
    let mut rest = Vec::new();
    // Closed mid-stream: the client sees the end of the connection.
    let _ = stream.read_to_end(&mut rest).await;
}

#[tokio::test]
async fn dropping_the_connections_closes_them() {
    let (addr, stop, task) = start(hello()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    send(&mut stream, false).await;
    read_until_body(&mut stream).await;
    stop.send(()).unwrap();
    drop(task.await.unwrap());
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the connection was closed");
}
