//! The HTTPS front: accepts TLS connections, checks the bearer token, records each request,
//! applies injected failures, and routes to discovery, pod logs, watches or the verbs.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use kipper_serve::{Accept, Server};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::Seen;
use super::query;
use super::status::Failure;
use super::store::Store;
use super::target::Target;
use super::verbs::{self, Call};
use super::watch;

type Body = BoxBody<Bytes, Infallible>;

/// What the server tasks and the test's handle share.
pub(super) struct Shared {
    store: Mutex<Store>,
    token: String,
}

impl Shared {
    pub(super) fn new(token: String) -> Self {
        Self {
            store: Mutex::new(Store::new()),
            token,
        }
    }

    /// The store; a test that panicked while holding it leaves it usable for the others.
    pub(super) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Serves `listener` until `stop` fires, then closes it and every open connection (watches
/// included) before returning, as an API server going away would.
pub(super) async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    stop: oneshot::Receiver<()>,
) {
    let service = service_fn(move |request| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(handle(&shared, request).await) }
    });
    let stopped = async {
        let _ = stop.await;
    };
    let connections = Server::new("fake-apiserver")
        .with_accept(Tls(acceptor))
        .serve(listener, service, stopped)
        .await;
    // No grace: a watch streams until its timeout, and a stop must end it now.
    connections.drain(Duration::ZERO).await;
}

/// The TLS handshake, in each connection's own task.
#[derive(Clone)]
struct Tls(TlsAcceptor);

impl Accept for Tls {
    type Io = TokioIo<TlsStream<TcpStream>>;

    fn accept(&self, stream: TcpStream) -> impl Future<Output = io::Result<Self::Io>> + Send {
        let handshake = self.0.accept(stream);
        async move { handshake.await.map(TokioIo::new) }
    }
}

fn json_response(code: u16, value: &Value) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    response(
        code,
        "application/json",
        Full::new(Bytes::from(body)).boxed(),
    )
}

fn failure(failure: &Failure) -> Response<Body> {
    json_response(failure.code, &failure.to_value())
}

fn response(code: u16, content_type: &str, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::OK);
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

async fn handle(shared: &Shared, request: Request<Incoming>) -> Response<Body> {
    let authorized = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .is_some_and(|token| token == shared.token);
    if !authorized {
        return failure(&Failure::unauthorized());
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return failure(&Failure::bad_request(format!("reading the body: {e}"))),
    };
    let mut store = shared.store();
    store.log.push(Seen {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
    });
    let injected = store
        .failures
        .iter()
        .find(|(m, fragment, _)| *m == method && path.contains(fragment.as_str()))
        .map(|(_, _, code)| *code);
    if let Some(code) = injected {
        return failure(&Failure::injected(code));
    }
    match path.as_str() {
        "/version" => {
            return json_response(
                200,
                &json!({"major": "1", "minor": "36", "gitVersion": "v1.36.0-kipper-fake",
                        "platform": "linux/amd64"}),
            );
        }
        "/api" => {
            return json_response(
                200,
                &json!({"kind": "APIVersions", "versions": ["v1"],
                        "serverAddressByClientCIDRs": []}),
            );
        }
        _ => {}
    }
    let Some(target) = Target::parse(&path) else {
        return failure(&Failure::path_not_found(&path));
    };
    match &target {
        Target::Object {
            location,
            subresource: Some(sub),
        } if method == Method::GET && sub == "log" && location.resource.plural == "pods" => {
            let text = format!("hello from {}\nbye\n", location.name);
            return response(200, "text/plain", Full::new(Bytes::from(text)).boxed());
        }
        Target::Collection {
            resource,
            namespace,
        } if method == Method::GET && query::flag(&query, "watch") => {
            let filter = match verbs::filter(resource, namespace.as_deref(), &query) {
                Ok(filter) => filter,
                Err(e) => return failure(&e),
            };
            // "0" (or none) asks for the current state first, as ADDED events.
            let since = query::param(&query, "resourceVersion")
                .and_then(|rv| rv.parse::<u64>().ok())
                .filter(|rv| *rv != 0);
            let timeout = query::param(&query, "timeoutSeconds")
                .and_then(|s| s.parse::<u64>().ok())
                .map(Duration::from_secs);
            let events = watch::start(&store, filter, since, timeout);
            return response(
                200,
                "application/json",
                BodyExt::boxed(StreamBody::new(events)),
            );
        }
        _ => {}
    }
    let call = Call {
        method: &method,
        query: &query,
        content_type: &content_type,
        body: &body,
    };
    match verbs::answer(&mut store, &target, &call) {
        Ok((code, value)) => json_response(code, &value),
        Err(e) => failure(&e),
    }
}
