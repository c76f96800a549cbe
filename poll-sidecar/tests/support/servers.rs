//! Private database and Redis servers for the tests that restart them: each
//! on a free port with its data in a temporary directory, never the shared
//! services other tests (and other engineers) use. A missing server binary
//! fails the test with a message, never skips it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

fn run(what: &str, command: &mut Command) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn wait_for_port(what: &str, port: u16, log: &Path) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what} did not listen on {port}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The directory of PostgreSQL's server binaries (`initdb`, `pg_ctl`).
fn postgres_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries are required under /usr/lib/postgresql/<version>/bin")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found
        .pop()
        .expect("initdb is required under /usr/lib/postgresql/<version>/bin")
}

/// A private PostgreSQL cluster run by the `postgres` user (the server
/// refuses root), trust authentication, database `test`; stopped on drop.
pub struct PrivatePostgres {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl PrivatePostgres {
    pub fn start() -> Self {
        let bin = postgres_bin();
        let dir = tempfile::tempdir().unwrap();
        run(
            "chown",
            Command::new("chown")
                .arg("-R")
                .arg("postgres:")
                .arg(dir.path()),
        );
        let data = dir.path().join("data");
        run(
            "initdb",
            Command::new("su").args(["postgres", "-c"]).arg(format!(
                "{} -D {} -A trust -U postgres --no-sync >/dev/null",
                bin.join("initdb").display(),
                data.display()
            )),
        );
        let server = Self {
            port: free_port(),
            dir,
            bin,
        };
        server.pg_ctl("start");
        run(
            "createdb",
            Command::new("su").args(["postgres", "-c"]).arg(format!(
                "{} -h 127.0.0.1 -p {} test",
                server.bin.join("createdb").display(),
                server.port
            )),
        );
        server
    }

    fn pg_ctl(&self, action: &str) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("log");
        run(
            &format!("pg_ctl {action}"),
            Command::new("su").args(["postgres", "-c"]).arg(format!(
                "{} -D {} -l {} -w -m fast -o \"-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50\" {action}",
                self.bin.join("pg_ctl").display(),
                data.display(),
                log.display(),
                self.port,
                self.dir.path().display(),
            )),
        );
    }

    /// `pg_ctl restart -m fast`: every session ends, its locks with it.
    pub fn restart(&self) {
        self.pg_ctl("restart");
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/test", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Command::new("su")
            .args(["postgres", "-c"])
            .arg(format!(
                "{} -D {} -m immediate stop",
                self.bin.join("pg_ctl").display(),
                self.dir.path().join("data").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A private MariaDB server (`mariadb-install-db` into a temporary
/// directory, root without a password, database `test`); killed on drop.
pub struct PrivateMariadb {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateMariadb {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let install = || {
            Command::new("mariadb-install-db")
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .arg("--user=root")
                .arg("--auth-root-authentication-method=normal")
                .arg("--skip-test-db")
                .output()
                .expect("mariadb-install-db (MariaDB server packages are required)")
        };
        // Its bootstrap server failed once with the whole restart suite
        // running on two cores; a second try in a fresh directory settles it.
        let mut out = install();
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&data);
            out = install();
        }
        assert!(
            out.status.success(),
            "mariadb-install-db failed twice: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut server = Self {
            port: free_port(),
            dir,
            child: None,
        };
        server.launch();
        let out = Command::new("mariadb")
            .args(["-uroot", "-h127.0.0.1"])
            .arg(format!("-P{}", server.port))
            .args(["-e", "CREATE DATABASE test"])
            .output()
            .expect("the mariadb client is required");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        server
    }

    fn launch(&mut self) {
        let d = self.dir.path();
        let log = d.join("error.log");
        let child = Command::new("mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", d.join("data").display()))
            .arg(format!("--port={}", self.port))
            .arg(format!("--socket={}", d.join("sock").display()))
            .arg(format!("--pid-file={}", d.join("pid").display()))
            .arg(format!("--log-error={}", log.display()))
            .arg("--bind-address=127.0.0.1")
            .arg("--user=root")
            .arg("--innodb-buffer-pool-size=32M")
            .arg("--innodb-flush-log-at-trx-commit=2")
            .arg("--max-connections=100")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd is required (apt-get install mariadb-server)");
        self.child = Some(child);
        wait_for_port("mariadbd", self.port, &log);
    }

    /// A clean server restart (SIGTERM, wait for the exit, start again):
    /// every session ends, its `GET_LOCK`s with it.
    pub fn restart(&mut self) {
        terminate(&mut self.child);
        self.launch();
    }

    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/test", self.port)
    }
}

impl Drop for PrivateMariadb {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A private redis-server that keeps its data across a restart (append-only
/// file, fsync on every write); killed on drop.
pub struct PrivateRedis {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn start() -> Self {
        let mut server = Self {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let log = self.dir.path().join("redis.log");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--dir", &self.dir.path().display().to_string()])
            .args(["--logfile", &log.display().to_string()])
            .args(["--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is required (apt-get install redis-server)");
        self.child = Some(child);
        wait_for_port("redis-server", self.port, &log);
    }

    /// SIGTERM (redis-server writes its append-only file and exits), then
    /// start again on the same port and data.
    pub fn restart(&mut self) {
        terminate(&mut self.child);
        // Down for a moment, as a real restart is: the replicas' next commands fail, so the
        // outage is seen (an instant relaunch could be bridged by a reconnect in one command).
        std::thread::sleep(std::time::Duration::from_millis(1500));
        self.launch();
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A private SeaweedFS (`weed mini`: master, volume, filer and S3 in one
/// process) with the identities of scripts/seaweedfs-s3.json, every port
/// free-picked, data in a temporary directory kept across a restart.
pub struct PrivateSeaweedfs {
    pub s3_port: u16,
    ports: Vec<u16>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateSeaweedfs {
    pub fn start() -> Self {
        let mut server = Self {
            s3_port: free_port(),
            ports: (0..11).map(|_| free_port()).collect(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let d = self.dir.path();
        let log = d.join("weed.log");
        let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/seaweedfs-s3.json");
        let p = &self.ports;
        let child = Command::new("weed")
            .arg("mini")
            .arg(format!("-dir={}", d.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-s3.config={}", config.display()))
            .args([
                "-admin.ui=false",
                "-webdav=false",
                "-master.telemetry=false",
            ])
            .arg(format!("-master.port={}", p[0]))
            .arg(format!("-master.port.grpc={}", p[1]))
            .arg(format!("-volume.port={}", p[2]))
            .arg(format!("-volume.port.grpc={}", p[3]))
            .arg(format!("-filer.port={}", p[4]))
            .arg(format!("-filer.port.grpc={}", p[5]))
            .arg(format!("-s3.port={}", self.s3_port))
            .arg(format!("-s3.port.grpc={}", p[6]))
            .arg(format!("-admin.port={}", p[7]))
            .arg(format!("-admin.port.grpc={}", p[8]))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .current_dir(d)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("weed (SeaweedFS) is required, as scripts/services.sh says");
        self.child = Some(child);
        wait_for_port("weed mini (S3)", self.s3_port, &log);
    }

    /// SIGTERM, wait for the exit, start again on the same ports and data.
    pub fn restart(&mut self) {
        terminate(&mut self.child);
        self.launch();
    }

    pub fn url(&self) -> String {
        format!(
            "http://kipper-test-access:kipper-test-secret-only-for-local-tests@127.0.0.1:{}",
            self.s3_port
        )
    }
}

impl Drop for PrivateSeaweedfs {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// SIGTERM to a private server and wait for its exit (a clean shutdown, as a restart does).
fn terminate(child: &mut Option<std::process::Child>) {
    if let Some(mut child) = child.take() {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let _ = child.wait();
    }
}
