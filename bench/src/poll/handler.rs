//! The minimal local no-op handler the sidecars deliver to, and the
//! handler's own ceiling: its direct request rate from a pooled keep-alive
//! client at the sidecar's concurrency, measured in the same run.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// A running no-op handler: answers every request 200 `{"ok":true}` and
/// counts the requests.
#[derive(Debug, Clone)]
pub struct NoopHandler {
    /// Where it listens.
    pub addr: SocketAddr,
    requests: Arc<AtomicU64>,
}

impl NoopHandler {
    /// Binds 127.0.0.1:0 and serves on the current runtime.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the no-op handler")?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicU64::new(0));
        let counter = requests.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let counter = counter.clone();
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                            let counter = counter.clone();
                            async move {
                                // Read the body like a real handler would.
                                let _ = request.into_body().collect().await;
                                counter.fetch_add(1, Ordering::Relaxed);
                                Ok::<_, Infallible>(hyper::Response::new(Full::new(
                                    Bytes::from_static(b"{\"ok\":true}"),
                                )))
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, requests })
    }

    /// The URL sidecars POST to.
    pub fn url(&self) -> String {
        format!("http://{}/event", self.addr)
    }

    /// Requests served so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// POSTs `total` small JSON bodies to the handler from `concurrency`
/// keep-alive connections and returns requests per second.
pub async fn direct_rate(
    handler: &NoopHandler,
    total: u64,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .build(connector);
    let uri: http::Uri = handler.url().parse()?;
    let body = Bytes::from_static(
        br#"{"id":123456,"customer":"c123456","amount":1234.25,"status":"pending"}"#,
    );
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, uri, body, next) = (client.clone(), uri.clone(), body.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let request = http::Request::post(uri.clone())
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()))?;
                let answer = client.request(request).await?;
                let _ = answer.into_body().collect().await;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(total as f64
        / started
            .elapsed()
            .max(Duration::from_micros(1))
            .as_secs_f64())
}
