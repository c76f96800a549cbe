//! The kipper-shim benchmark: throughput under `wrk -t2 -c64`, added latency
//! at one connection against calling a worker directly over its own protocol,
//! and cold starts (first response to a request sent at t = 0; failures among
//! 1,000 requests sent during start), for node and python, each compared with
//! the targets and with baselines measured in the same run, and with the servers a
//! Python or Node user would deploy instead (`peers`).

pub mod cold;
pub mod direct;
pub mod peers;
pub mod reference;
pub mod wrk;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A language under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// examples/hello-node.
    Node,
    /// examples/hello-python.
    Python,
}

impl Lang {
    /// Its name in tables and flags.
    pub fn name(self) -> &'static str {
        match self {
            Lang::Node => "node",
            Lang::Python => "python",
        }
    }

    /// The hello handler of the README's examples.
    pub fn handler(self, repo: &Path) -> PathBuf {
        match self {
            Lang::Node => repo.join("examples/hello-node/index.js"),
            Lang::Python => repo.join("examples/hello-python/handler.py"),
        }
    }

    /// The throughput target of issue 4 (req/s under wrk -t2 -c64).
    pub fn target_rps(self) -> f64 {
        match self {
            Lang::Node => 21_000.0,
            Lang::Python => 22_000.0,
        }
    }

    /// What the existing Kipper runtime does under the same load (quoted in issue 4).
    pub fn upstream_rps(self) -> f64 {
        match self {
            Lang::Node => 13_900.0,
            Lang::Python => 11_300.0,
        }
    }
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The repository root.
    pub repo: PathBuf,
    /// The release kipper-shim binary.
    pub shim: PathBuf,
    /// The python executable.
    pub python: String,
    /// The node executable.
    pub node: String,
    /// Length of each throughput run.
    pub duration: Duration,
    /// wrk threads.
    pub threads: u32,
    /// wrk connections.
    pub connections: u32,
    /// Cold starts whose median is reported.
    pub cold_runs: usize,
    /// Requests sent together during a cold start.
    pub cold_requests: usize,
    /// Throughput runs whose median is reported.
    pub repeats: usize,
}

/// The repository root (this crate lives in `bench/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The release `kipper-shim` binary: `explicit`, else built with cargo now.
pub fn shim_binary(explicit: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        if !path.is_file() {
            bail!(
                "--shim-bin {} does not exist; build it with cargo build --release --workspace --bin kipper-shim",
                path.display()
            );
        }
        return Ok(path);
    }
    Ok(crate::build::release_binaries(&["kipper-shim"])?.remove(0))
}

/// The real python executable (a pyenv shim would add its own start-up to every cold start).
pub fn python_executable() -> String {
    Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "python3".into())
}

/// A free loopback port.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A running shim, killed on drop.
pub struct ShimProcess {
    /// The process.
    pub child: Child,
    /// Its function port.
    pub port: u16,
    /// When it was spawned (t = 0 of a cold start).
    pub started: Instant,
    _work: tempfile::TempDir,
}

impl ShimProcess {
    /// Starts the shim on a free port for `lang`'s hello handler; does not wait.
    pub fn spawn(setup: &Setup, lang: Lang, extra: &[(&str, &str)]) -> Result<Self> {
        let work = tempfile::tempdir()?;
        let port = free_port()?;
        let mut cmd = Command::new(&setup.shim);
        cmd.arg(lang.handler(&setup.repo))
            .env("PORT", port.to_string())
            .env("KIPPER_BIND", "127.0.0.1")
            .env("KIPPER_ADMIN_PORT", "0")
            .env("KIPPER_WORK_DIR", work.path())
            .env("KIPPER_PYTHON_BIN", &setup.python)
            .env("KIPPER_NODE_BIN", &setup.node)
            .env("RUST_LOG", "warn")
            .env_remove("KIPPER_TRIGGER")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let started = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", setup.shim.display()))?;
        Ok(Self {
            child,
            port,
            started,
            _work: work,
        })
    }

    /// Waits until `/ready` answers 200.
    pub fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(status) = cold::get_status(self.port, "/ready")
                && status == 200
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        bail!("kipper-shim did not become ready within 30 s")
    }
}

impl Drop for ShimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The load profile of every server in the tables: a warm-up, the median of `setup.repeats`
/// runs of `wrk -t<threads> -c<connections>`, then 5 s of `wrk -t1 -c1`.
pub fn load_profile(setup: &Setup, url: &str) -> Result<(wrk::WrkResult, wrk::WrkResult)> {
    // Warm up the connections, the JIT and the allocator before measuring.
    wrk::run(
        url,
        setup.threads,
        setup.connections,
        Duration::from_secs(2),
    )?;
    // The machine is shared: the median of several runs resists a neighbour's build spike.
    let mut runs = Vec::new();
    for _ in 0..setup.repeats.max(1) {
        runs.push(wrk::run(
            url,
            setup.threads,
            setup.connections,
            setup.duration,
        )?);
    }
    runs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    let one = wrk::run(url, 1, 1, Duration::from_secs(5))?;
    Ok((runs[runs.len() / 2], one))
}

/// The load average, to say how busy the shared machine was.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Formats a ratio as `1.23x`.
pub fn ratio(value: f64, reference: f64) -> String {
    if reference > 0.0 {
        format!("{:.2}x", value / reference)
    } else {
        "-".into()
    }
}
