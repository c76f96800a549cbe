//! An in-memory Kubernetes API server served over HTTPS on `127.0.0.1`, for black-box tests of
//! the real `kip` and `kipper-controller` binaries: they reach it through a kubeconfig, with
//! kube's real TLS stack, as they would reach a user's cluster.
//!
//! It keeps objects the way the real server does where our code depends on it: resourceVersion
//! and generation, watches that replay from a resourceVersion, field ownership with
//! server-side apply (conflicts, `force`, pruning what a manager stopped applying), `/status`
//! and `/scale`, finalizers, garbage collection through ownerReferences, and the real error
//! `Status` messages. It does no validation, defaulting, admission or discovery beyond
//! `/version` and `/api`.
//!
//! The server runs on its own thread and tokio runtime, so it serves while a test blocks on a
//! child process, from `#[test]` and `#[tokio::test]` alike.
//!
//! Files: `http.rs` (TLS connections, auth, routing), `target.rs` (resources, object paths, request paths), `verbs.rs`
//! (get/list/create/replace/patch/apply/delete), `fields.rs` (field ownership), `store.rs`
//! (objects, history, deletion), `watch.rs`, `query.rs` (selectors), `status.rs` (error
//! bodies), `tls.rs` (certificates and kubeconfig).
//!
//! It is test support: a fake that cannot do what a test asked (bind a port, sign a
//! certificate) panics with what went wrong, as a test assertion does.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod fields;
mod http;
mod query;
mod status;
mod store;
mod target;
mod tls;
mod verbs;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use ::http::Method;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

use self::http::Shared;
use self::target::Location;

/// One request as the server saw it (after authentication).
#[derive(Clone, Debug)]
pub struct Seen {
    /// The HTTP method.
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// The query string, empty when there was none.
    pub query: String,
}

/// `/api/v1/namespaces/ns/secrets/name`-style path of an object (from its apiVersion, kind,
/// namespace and name; without a namespace, the cluster-scoped path).
pub fn path_of(object: &Value) -> String {
    Location::of_object(object)
        .expect("path_of: the object needs apiVersion, kind and metadata.name")
        .key()
}

/// A running server on one port, and its store. Dropping it stops the server.
pub struct ApiServer {
    shared: Arc<Shared>,
    port: u16,
    acceptor: TlsAcceptor,
    runtime: tokio::runtime::Handle,
    serving: Mutex<Option<Serving>>,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
    thread: Option<std::thread::JoinHandle<()>>,
    end_runtime: Option<oneshot::Sender<()>>,
}

/// The accept loop of one start or restart.
struct Serving {
    stop: oneshot::Sender<()>,
    stopped: mpsc::Receiver<()>,
}

fn bind(port: u16) -> std::net::TcpListener {
    // After a stop, the port may take a moment to be free again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::net::TcpListener::bind(("127.0.0.1", port)) {
            Ok(listener) => {
                listener
                    .set_nonblocking(true)
                    .expect("make the listener non-blocking");
                return listener;
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("the fake API server cannot listen on 127.0.0.1:{port}: {e}"),
        }
    }
}

impl ApiServer {
    /// Starts a server on a free port, with an empty store, and writes its kubeconfig.
    pub fn start() -> ApiServer {
        let certificates = tls::certificates();
        let token = format!("kipper-fake-{:032x}", rand::random::<u128>());
        let listener = bind(0);
        let port = listener.local_addr().expect("listener address").port();
        let dir = tempfile::tempdir().expect("a directory for the kubeconfig");
        let kubeconfig = tls::write_kubeconfig(dir.path(), port, &certificates.ca_pem, &token);

        let (handle_tx, handle_rx) = mpsc::channel();
        let (end_runtime, end_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fake-apiserver".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("fake-apiserver")
                    .enable_all()
                    .build()
                    .expect("the fake API server's runtime");
                let _ = handle_tx.send(runtime.handle().clone());
                runtime.block_on(async {
                    let _ = end_rx.await;
                });
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .expect("the fake API server's thread");
        let runtime = handle_rx.recv().expect("the fake API server's runtime");

        let server = ApiServer {
            shared: Arc::new(Shared::new(token)),
            port,
            acceptor: TlsAcceptor::from(certificates.server),
            runtime,
            serving: Mutex::new(None),
            kubeconfig,
            _dir: dir,
            thread: Some(thread),
            end_runtime: Some(end_runtime),
        };
        server.namespace("default");
        server.serve(listener);
        server
    }

    fn serve(&self, listener: std::net::TcpListener) {
        let (stop, stop_rx) = oneshot::channel();
        let (stopped_tx, stopped) = mpsc::channel();
        let (acceptor, shared) = (self.acceptor.clone(), Arc::clone(&self.shared));
        self.runtime.spawn(async move {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => http::serve(listener, acceptor, shared, stop_rx).await,
                Err(e) => eprintln!("fake API server: cannot serve: {e}"),
            }
            let _ = stopped_tx.send(());
        });
        *self.serving.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(Serving { stop, stopped });
    }

    /// Closes the listener and every open connection (watches end mid-stream); the store is
    /// kept, like an API server whose etcd survives. Returns once the port is closed.
    pub fn stop(&self) {
        let serving = self
            .serving
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(serving) = serving {
            let _ = serving.stop.send(());
            let _ = serving.stopped.recv();
        }
    }

    /// Serves again on the same port (the kubeconfig stays valid), after a [`stop`](Self::stop).
    pub fn restart(&self) {
        self.stop();
        self.serve(bind(self.port));
    }

    /// The kubeconfig file that reaches this server (its CA, URL and token).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The port the server listens on (kept across a restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// A client built from the kubeconfig through kube's own TLS and auth stack.
    pub async fn client(&self) -> kube::Client {
        kipper_tls::install_crypto_provider();
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("read the kubeconfig");
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .expect("a kube config from the kubeconfig");
        kube::Client::try_from(config).expect("a kube client")
    }

    /// Puts an object in the store as if it already existed in the cluster (creating its
    /// namespace if need be), replacing any object at its path; watches see it. The server
    /// fills in uid, creationTimestamp, generation and resourceVersion when absent. Its fields
    /// have no owner until someone writes them.
    pub fn insert(&self, object: Value) {
        let location = Location::of_object(&object)
            .expect("insert: the object needs apiVersion, kind and metadata.name");
        let mut store = self.shared.store();
        if let Some(namespace) = &location.namespace {
            store.ensure_namespace(namespace);
        }
        let owners = store
            .get(&location.key())
            .map(|s| s.owners.clone())
            .unwrap_or_default();
        store.write(&location, object, owners);
    }

    /// Creates the Namespace `name` unless it exists.
    pub fn namespace(&self, name: &str) {
        self.shared.store().ensure_namespace(name);
    }

    /// The stored object at `path` (see [`path_of`]), if any.
    pub fn get(&self, path: &str) -> Option<Value> {
        self.shared.store().get(path).map(|s| s.object.clone())
    }

    /// Paths of every stored object.
    pub fn paths(&self) -> Vec<String> {
        self.shared.store().keys()
    }

    /// The field managers owning `field` (dotted from the root, `.spec.replicas`) of the
    /// object at `path`.
    pub fn managers(&self, path: &str, field: &str) -> Vec<String> {
        self.shared
            .store()
            .get(path)
            .and_then(|s| {
                s.owners
                    .iter()
                    .find(|(leaf, _)| fields::dotted(leaf) == field)
                    .map(|(_, managers)| managers.iter().cloned().collect())
            })
            .unwrap_or_default()
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Seen> {
        self.shared.store().log.clone()
    }

    /// Forgets the request log.
    pub fn clear_log(&self) {
        self.shared.store().log.clear();
    }

    /// Makes requests of `method` whose path contains `fragment` fail with `code` (a `Status`
    /// with the usual reason for the code), until [`clear_failures`](Self::clear_failures).
    pub fn fail(&self, method: Method, fragment: &str, code: u16) {
        self.shared
            .store()
            .failures
            .push((method, fragment.to_owned(), code));
    }

    /// Forgets every injected failure: requests are answered normally again.
    pub fn clear_failures(&self) {
        self.shared.store().failures.clear();
    }

    /// Waits until the object at `path` exists and satisfies `predicate`, polling every 20 ms;
    /// panics with the last value seen after `timeout`.
    pub async fn wait_for(
        &self,
        path: &str,
        predicate: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            match self.poll(path, &predicate, deadline) {
                Ok(object) => return object,
                Err(()) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// [`wait_for`](Self::wait_for) for tests without a runtime.
    pub fn wait_for_blocking(
        &self,
        path: &str,
        predicate: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            match self.poll(path, &predicate, deadline) {
                Ok(object) => return object,
                Err(()) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Waits until no object is stored at `path`; panics with it after `timeout`.
    pub async fn wait_gone(&self, path: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while let Some(object) = self.get(path) {
            assert!(
                Instant::now() < deadline,
                "{path} still exists after {timeout:?}: {object:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn poll(
        &self,
        path: &str,
        predicate: &impl Fn(&Value) -> bool,
        deadline: Instant,
    ) -> Result<Value, ()> {
        let object = self.get(path);
        if let Some(object) = object.as_ref().filter(|o| predicate(o)) {
            return Ok(object.clone());
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {path}; last value: {}",
            object.map_or_else(|| "(absent)".to_owned(), |o| format!("{o:#}"))
        );
        Err(())
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop();
        if let Some(end) = self.end_runtime.take() {
            let _ = end.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
