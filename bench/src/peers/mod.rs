//! The peers: the tools a user would pick instead of ours, measured in the same run on the same
//! data and handler. Their setup code lives in `bench/peers/` (one small adapter per peer);
//! this module installs them on first use into a cache directory, at pinned versions (no global
//! installs), and runs multi-process servers as one process group so that stopping one stops
//! its workers too.
//!
//! The cache is `target/bench-peers/` (or `KIPPER_BENCH_PEERS_DIR`): `node/` holds the npm
//! packages, `python/` a venv with the PyPI ones. A pin change reinstalls.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// npm packages and their pinned versions: the newest releases that run on Node 20
/// (graphile-worker 0.18 and pg-boss 11+ need Node 22).
pub const NPM: &[(&str, &str)] = &[
    ("graphile-worker", "0.17.3"),
    ("pg-boss", "10.4.2"),
    ("bullmq", "6.7.0"),
    // BullMQ 6 takes its Redis client as an optional peer dependency.
    ("ioredis", "5.9.2"),
    ("fastify", "5.12.8"),
];

/// PyPI packages and their pinned versions (uvloop and httptools: what `uvicorn[standard]`
/// runs on).
pub const PYPI: &[(&str, &str)] = &[
    ("uvicorn", "0.54.0"),
    ("uvloop", "0.23.0"),
    ("httptools", "0.9.0"),
    ("granian", "2.8.9"),
];

/// `name version` of every pinned peer, for the notes under the tables.
pub fn pinned() -> String {
    NPM.iter()
        .chain(PYPI)
        .map(|(name, version)| format!("{name} {version}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The adapters' directory, `bench/peers/`.
pub fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers")
}

/// The directory under the workspace's `target/` where the harness writes what it produces.
pub fn target_dir(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| crate::shim::repo_root().join("target"), PathBuf::from);
    target.join(name)
}

/// The install cache of the peers.
#[derive(Debug, Clone)]
pub struct PeerCache {
    dir: PathBuf,
}

impl Default for PeerCache {
    fn default() -> Self {
        Self::new()
    }
}

impl PeerCache {
    /// `KIPPER_BENCH_PEERS_DIR`, else `target/bench-peers`.
    pub fn new() -> Self {
        let dir = std::env::var_os("KIPPER_BENCH_PEERS_DIR")
            .map_or_else(|| target_dir("bench-peers"), PathBuf::from);
        Self { dir }
    }

    /// `node_modules` holding the pinned npm packages; `npm install --prefix` on first use.
    pub fn node_modules(&self) -> anyhow::Result<PathBuf> {
        let prefix = self.dir.join("node");
        let specs: Vec<String> = NPM.iter().map(|(n, v)| format!("{n}@{v}")).collect();
        install_once(&prefix, &specs, || {
            run(Command::new("npm")
                .arg("install")
                .arg("--prefix")
                .arg(&prefix)
                .args(["--no-audit", "--no-fund", "--save-exact"])
                .args(&specs))
        })?;
        Ok(prefix.join("node_modules"))
    }

    /// The `bin/` of a venv holding the pinned PyPI packages, made with `python` on first use.
    pub fn python_bin(&self, python: &str) -> anyhow::Result<PathBuf> {
        let venv = self.dir.join("python");
        let specs: Vec<String> = PYPI.iter().map(|(n, v)| format!("{n}=={v}")).collect();
        let bin = venv.join("bin");
        install_once(&venv, &specs, || {
            run(Command::new(python).arg("-m").arg("venv").arg(&venv))?;
            run(Command::new(bin.join("pip"))
                .args(["install", "--disable-pip-version-check", "-q"])
                .args(&specs))
        })?;
        Ok(bin)
    }
}

/// Runs `install` unless `dir/.pinned` already lists `specs`; records them after success.
fn install_once(
    dir: &Path,
    specs: &[String],
    install: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let marker = dir.join(".pinned");
    let wanted = specs.join("\n");
    if std::fs::read_to_string(&marker).is_ok_and(|have| have == wanted) {
        return Ok(());
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the peer cache {}", dir.display()))?;
    eprintln!(
        "bench: installing {} into {} (first use)",
        specs.join(" "),
        dir.display()
    );
    install().with_context(|| {
        format!(
            "installing {} into {}: check the network and the registry, or delete the \
             directory and retry",
            specs.join(" "),
            dir.display()
        )
    })?;
    std::fs::write(&marker, wanted)?;
    Ok(())
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    anyhow::ensure!(
        status.success(),
        "{:?} failed ({status})",
        cmd.get_program()
    );
    Ok(())
}

/// A process started in its own process group; dropping it sends SIGTERM to the whole group
/// (a server's workers too), then SIGKILL to what is left after 5 s.
#[derive(Debug)]
pub struct ProcessGroup {
    /// The group leader.
    pub child: Child,
}

impl ProcessGroup {
    /// Spawns `cmd` as the leader of a new process group.
    pub fn spawn(cmd: &mut Command) -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt as _;
        let child = cmd
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {:?}", cmd.get_program()))?;
        Ok(Self { child })
    }

    fn signal_group(&self, signal: &str) {
        let _ = Command::new("kill")
            .arg(signal)
            .arg("--")
            .arg(format!("-{}", self.child.id()))
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.signal_group("-TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Workers may outlive their leader; whatever is left of the group goes now.
        self.signal_group("-KILL");
        let _ = self.child.wait();
    }
}
