//! The servers a Python or Node user would deploy instead of kipper-shim, serving the same
//! hello handler with as many worker processes as the shim runs: uvicorn and granian (the
//! handler as a plain ASGI app, `bench/peers/asgi_app.py`), and node:http and fastify behind
//! node's cluster module (`bench/peers/node-cluster.js`, `fastify.js`). Installed on first use
//! by [`crate::peers::PeerCache`]; each runs as one process group, stopped with its workers.

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::{Lang, Setup, free_port};
use crate::peers::{PeerCache, ProcessGroup, scripts};

/// A server under comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerPeer {
    /// uvicorn with uvloop and httptools (`uvicorn[standard]`), `--workers N`.
    Uvicorn,
    /// granian, `--interface asgi --workers N`.
    Granian,
    /// node:http, N cluster workers.
    NodeCluster,
    /// fastify, N cluster workers.
    Fastify,
}

impl ServerPeer {
    /// The peers of a runtime.
    pub fn of(lang: Lang) -> &'static [ServerPeer] {
        match lang {
            Lang::Python => &[ServerPeer::Uvicorn, ServerPeer::Granian],
            Lang::Node => &[ServerPeer::NodeCluster, ServerPeer::Fastify],
        }
    }

    /// Its name in tables.
    pub fn name(self) -> &'static str {
        match self {
            ServerPeer::Uvicorn => "uvicorn (uvloop, httptools)",
            ServerPeer::Granian => "granian (asgi)",
            ServerPeer::NodeCluster => "node:http, cluster",
            ServerPeer::Fastify => "fastify, cluster",
        }
    }

    fn command(
        self,
        setup: &Setup,
        cache: &PeerCache,
        lang: Lang,
        port: u16,
        workers: usize,
    ) -> Result<Command> {
        let handler = lang.handler(&setup.repo);
        let (port, workers) = (port.to_string(), workers.to_string());
        let cmd = match self {
            ServerPeer::Uvicorn | ServerPeer::Granian => {
                let bin = cache.python_bin(&setup.python)?;
                let mut cmd;
                if self == ServerPeer::Uvicorn {
                    cmd = Command::new(bin.join("uvicorn"));
                    cmd.arg("--app-dir")
                        .arg(scripts())
                        .args(["--loop", "uvloop", "--http", "httptools"])
                        .args(["--no-access-log", "--log-level", "warning"]);
                } else {
                    cmd = Command::new(bin.join("granian"));
                    cmd.arg("--working-dir")
                        .arg(scripts())
                        .args(["--interface", "asgi", "--no-ws"])
                        .args(["--no-access-log", "--log-level", "warning"]);
                }
                cmd.args([
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &port,
                    "--workers",
                    &workers,
                ])
                .arg("asgi_app:app")
                .env("PEER_HANDLER", handler);
                cmd
            }
            ServerPeer::NodeCluster | ServerPeer::Fastify => {
                let script = if self == ServerPeer::Fastify {
                    "fastify.js"
                } else {
                    "node-cluster.js"
                };
                let mut cmd = Command::new(&setup.node);
                cmd.arg(scripts().join(script))
                    .arg(handler)
                    .arg(&port)
                    .arg(&workers)
                    .env("NODE_PATH", cache.node_modules()?);
                cmd
            }
        };
        Ok(cmd)
    }

    /// Starts it on a free port with `workers` processes and waits until it accepts
    /// connections; returns the group (stopped on drop) and the port.
    pub fn start(
        self,
        setup: &Setup,
        cache: &PeerCache,
        lang: Lang,
        workers: usize,
    ) -> Result<(ProcessGroup, u16)> {
        let port = free_port()?;
        let mut cmd = self.command(setup, cache, lang, port, workers)?;
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let mut group = ProcessGroup::spawn(&mut cmd)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = group.child.try_wait() {
                bail!("{} exited before listening ({status})", self.name());
            }
            if Instant::now() > deadline {
                bail!("{} did not listen within 30 s", self.name());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Every worker should be up before the load starts: give the others a moment.
        std::thread::sleep(Duration::from_millis(500));
        Ok((group, port))
    }
}
