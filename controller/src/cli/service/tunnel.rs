//! `kip tunnel <service> [--local-port N]`: listens on `127.0.0.1:<port>` and forwards each
//! connection to the service's pod through the API server's port-forward (the same path as
//! `kubectl port-forward`; the service is never exposed beyond this machine).
//!
//! The forwarding loop ([`forward`]) is generic over how an upstream stream is opened, so it
//! is tested without a kubelet; the Kubernetes side is one `Api::<Pod>::portforward` call.

use std::future::Future;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::TunnelArgs;
use super::manage::service_secret;
use crate::cli::{Io, io_error};
use crate::services::SERVICE_LABEL;
use crate::services::render::pod_name;
use crate::{Error, Result};

/// Accepts connections on `listener` until `shutdown` resolves; each one is joined to a
/// stream from `connect`. A connection whose upstream fails is closed and reported on
/// `report` (one line each); the tunnel stays open for the next one.
pub async fn forward<C, Fut, S>(
    listener: TcpListener,
    connect: C,
    shutdown: impl Future<Output = ()>,
    report: &mut dyn std::io::Write,
) -> Result<()>
where
    C: Fn() -> Fut,
    Fut: Future<Output = Result<S>> + Send + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => {
                // What failed before the stop is still reported.
                while let Ok(line) = rx.try_recv() {
                    writeln!(report, "{line}").map_err(io_error)?;
                }
                return Ok(());
            }
            Some(line) = rx.recv() => {
                writeln!(report, "{line}").map_err(io_error)?;
            }
            accepted = listener.accept() => {
                let (mut local, peer) = accepted.map_err(|source| Error::Io {
                    context: "accept a tunnel connection".into(),
                    source,
                })?;
                let upstream = connect();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let result = match upstream.await {
                        Ok(mut remote) => tokio::io::copy_bidirectional(&mut local, &mut remote)
                            .await
                            .map(|_| ())
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    if let Err(e) = result {
                        let _ = tx.send(format!("connection from {peer} closed: {e}"));
                    }
                });
            }
        }
    }
}

/// Resolves on SIGINT (Ctrl+C) or SIGTERM; the handlers are installed when this is called.
fn interrupted() -> Result<impl Future<Output = ()>> {
    let failed = |source| Error::Io {
        context: "install the Ctrl+C handler".into(),
        source,
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).map_err(failed)?;
        let mut terminate = signal(SignalKind::terminate()).map_err(failed)?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        let _ = failed;
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

/// The pod to forward to: `<svc>-0`, else any running pod of the service.
async fn running_pod(pods: &Api<Pod>, service: &str, ns: &str) -> Result<String> {
    let running = |p: &Pod| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            && p.metadata.deletion_timestamp.is_none()
    };
    if let Some(p) = pods.get_opt(&pod_name(service)).await?
        && running(&p)
    {
        return Ok(p.name_any());
    }
    let list = pods
        .list(&ListParams::default().labels(&format!("{SERVICE_LABEL}={service}")))
        .await?;
    list.items
        .iter()
        .find(|p| running(p))
        .map(ResourceExt::name_any)
        .ok_or_else(|| {
            Error::Unavailable(format!(
                "service {service} has no running pod in {ns}: see `kip service list` (it may still be starting)"
            ))
        })
}

/// Opens the tunnel and keeps it open until Ctrl+C.
pub(super) async fn tunnel(
    client: &kube::Client,
    args: &TunnelArgs,
    io: &mut Io<'_>,
) -> Result<()> {
    let ns = args.scope.namespace();
    let service = &args.service;
    let (_, kind) = service_secret(client, &ns, service).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = running_pod(&pods, service, &ns).await?;
    let remote = kind.default_port();
    let local = args.local_port.unwrap_or(remote);
    let listener = TcpListener::bind(("127.0.0.1", local))
        .await
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AddrInUse {
                Error::Invalid(format!(
                    "localhost:{local} is already in use on this machine: pick another port with --local-port {}",
                    u32::from(local) + 10000
                ))
            } else {
                Error::Io {
                    context: format!("listen on localhost:{local} (--local-port)"),
                    source,
                }
            }
        })?;
    // Ctrl+C must close the tunnel from the moment it says it is open: the handlers are
    // installed now, not when the loop first polls them.
    let shutdown = interrupted()?;
    let bound = listener.local_addr().map_or(local, |a| a.port());
    writeln!(
        io.out,
        "✔ Tunnel open: localhost:{bound} → {service} ({})",
        kind.as_str()
    )
    .map_err(io_error)?;
    writeln!(io.out, "Press Ctrl+C to close").map_err(io_error)?;
    io.out.flush().map_err(io_error)?;
    let connect = || {
        let pods = pods.clone();
        let pod = pod.clone();
        async move {
            let mut pf = pods.portforward(&pod, &[remote]).await?;
            let stream = pf.take_stream(remote).ok_or_else(|| {
                Error::Unavailable(format!(
                    "port-forward to {pod} gave no stream for port {remote}"
                ))
            })?;
            // The forwarder's task ends when the stream closes; wait for it off this path.
            tokio::spawn(async move {
                let _ = pf.join().await;
            });
            Ok(stream)
        }
    };
    forward(listener, connect, shutdown, io.err).await?;
    writeln!(io.out, "Tunnel closed").map_err(io_error)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// An upstream that answers every line with the line upper-cased.
    async fn echo_server() -> std::net::SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    loop {
                        let n = s.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        let up: Vec<u8> = buf[..n].to_ascii_uppercase();
                        if s.write_all(&up).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn forwards_every_connection_both_ways_and_stops_on_shutdown() {
        let upstream = echo_server().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let local = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let connect = move || async move {
            TcpStream::connect(upstream)
                .await
                .map_err(|source| Error::Io {
                    context: "upstream".into(),
                    source,
                })
        };
        let clients = async move {
            for word in ["select 1", "ping"] {
                let mut c = TcpStream::connect(local).await.unwrap();
                c.write_all(word.as_bytes()).await.unwrap();
                let mut buf = vec![0u8; word.len()];
                c.read_exact(&mut buf).await.unwrap();
                assert_eq!(buf, word.to_uppercase().as_bytes());
            }
            stop.send(()).unwrap();
        };
        let mut report = Vec::new();
        let shutdown = async { stopped.await.unwrap_or(()) };
        let (result, ()) = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            tokio::join!(forward(listener, connect, shutdown, &mut report), clients)
        })
        .await
        .unwrap();
        result.unwrap();
        assert!(report.is_empty(), "{}", String::from_utf8_lossy(&report));
        // The listener is gone with the tunnel.
        assert!(TcpStream::connect(local).await.is_err());
    }

    #[tokio::test]
    async fn a_failed_upstream_closes_that_connection_only_and_is_reported() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let local = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let connect = || async { Err::<TcpStream, _>(Error::Unavailable("no kubelet".into())) };
        let clients = async move {
            let mut c = TcpStream::connect(local).await.unwrap();
            let mut buf = Vec::new();
            // The connection is closed (EOF), not left hanging.
            c.read_to_end(&mut buf).await.unwrap();
            assert!(buf.is_empty());
            // The tunnel still accepts.
            let _second = TcpStream::connect(local).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            stop.send(()).unwrap();
        };
        let mut report = Vec::new();
        let shutdown = async { stopped.await.unwrap_or(()) };
        let (result, ()) = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            tokio::join!(forward(listener, connect, shutdown, &mut report), clients)
        })
        .await
        .unwrap();
        result.unwrap();
        let report = String::from_utf8(report).unwrap();
        assert!(report.contains("no kubelet"), "{report}");
    }
}
