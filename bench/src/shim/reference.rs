//! Same-run references for throughput: the hello handler behind each
//! language's standard HTTP server (`bench/reference/`), the way upstream
//! Kipper runtimes serve it (node: http, as under Express; python: http.server).

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{Lang, Setup, free_port};

/// A running reference server, killed on drop.
pub struct Reference {
    child: Child,
    /// Where it listens.
    pub port: u16,
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the reference is, for the table.
pub fn describe(lang: Lang) -> &'static str {
    match lang {
        Lang::Node => "node http, 1 process",
        Lang::Python => "python ThreadingHTTPServer",
    }
}

/// Starts the reference server of `lang` and waits until it accepts connections.
pub fn start(setup: &Setup, lang: Lang) -> Result<Reference> {
    let port = free_port()?;
    let dir = setup.repo.join("bench/reference");
    let (program, script) = match lang {
        Lang::Node => (setup.node.as_str(), dir.join("node-http.js")),
        Lang::Python => (setup.python.as_str(), dir.join("python-http.py")),
    };
    let child = Command::new(program)
        .arg(&script)
        .arg(lang.handler(&setup.repo))
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", script.display()))?;
    let reference = Reference { child, port };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!(
                "the {} reference server did not listen within 10 s",
                lang.name()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(reference)
}
