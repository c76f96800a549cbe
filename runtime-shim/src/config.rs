//! Configuration of the shim: one clap struct whose every flag also reads the
//! environment variable of the handler contract (CONTRACT section 1), validated
//! into a typed [`Config`] before anything is bound or spawned.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use kipper_contract::Trigger;
use kipper_contract::env;
use kipper_contract::{LogFormat, parse_duration_or_seconds};

use crate::{Error, Result};

/// Command line and environment of `kipper-shim`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "kipper-shim",
    version,
    about = "In-pod runtime of Kipper Node and Python functions"
)]
pub struct Args {
    /// Handler file; the positional argument wins over `KIPPER_FUNCTION_PATH`.
    #[arg(value_name = "HANDLER")]
    pub handler: Option<PathBuf>,

    /// Handler file (default /app/function/index.js, or handler.py for python).
    #[arg(long = "function-path", env = "KIPPER_FUNCTION_PATH")]
    pub function_path: Option<PathBuf>,

    /// `node` or `python`; inferred from the handler's extension when unset.
    #[arg(long, env = env::RUNTIME)]
    pub runtime: Option<String>,

    /// Listen port of the function.
    #[arg(long, env = env::PORT, default_value_t = 8080)]
    pub port: u16,

    /// Listen address of both ports.
    #[arg(long, env = "KIPPER_BIND", default_value = "0.0.0.0")]
    pub bind: IpAddr,

    /// Port of the admin server (`/metrics`, `/health`, `/ready`); 0 disables it.
    /// Not 9091: the kipper-poll sidecar's admin port, in the same pod network.
    #[arg(long, env = "KIPPER_ADMIN_PORT", default_value_t = 9092)]
    pub admin_port: u16,

    /// `http` (serve), `batch` (invoke once, print, exit) or `install` (install the
    /// dependencies into `KIPPER_DEPS_CACHE` and exit: the pod's init step).
    #[arg(long, env = env::MODE, default_value = env::mode::HTTP)]
    pub mode: String,

    /// Trigger type, passed to the handler as `context.trigger` of `/event` and in batch events.
    #[arg(long, env = env::TRIGGER)]
    pub trigger: Option<String>,

    /// Number of language worker processes; defaults to the CPUs available.
    #[arg(long, env = "KIPPER_WORKERS")]
    pub workers: Option<usize>,

    /// Per-invocation timeout: a duration (`30s`, `500ms`) or a number of seconds; 30 s in
    /// http mode, 3600 s in batch mode (a cron run may take minutes).
    #[arg(long, env = "KIPPER_TIMEOUT", value_parser = parse_duration_or_seconds)]
    pub timeout: Option<Duration>,

    /// Requests held at most while the handler starts; more get 503.
    #[arg(long, env = "KIPPER_HOLD_MAX", default_value_t = 4096)]
    pub hold_max: usize,

    /// Longest a request is held while the handler starts (a duration or seconds).
    #[arg(long, env = "KIPPER_HOLD_TIMEOUT", default_value = "60", value_parser = parse_duration_or_seconds)]
    pub hold_timeout: Duration,

    /// Largest request body accepted, in bytes; larger bodies get 413.
    #[arg(long, env = "KIPPER_BODY_LIMIT", default_value_t = 6 * 1024 * 1024)]
    pub body_limit: usize,

    /// Grace period of the SIGTERM drain (a duration or seconds; default 25 s).
    #[arg(long, env = "KIPPER_SHUTDOWN_GRACE", value_parser = parse_duration_or_seconds)]
    pub shutdown_grace: Option<Duration>,

    /// The name `KIPPER_SHUTDOWN_GRACE` had before the three binaries agreed on it (README);
    /// still read, `KIPPER_SHUTDOWN_GRACE` wins.
    #[arg(long = "grace", env = "KIPPER_GRACE", hide = true, value_parser = parse_duration_or_seconds)]
    pub legacy_grace: Option<Duration>,

    /// Writable directory for the worker sockets, bootstrap files and installed dependencies.
    #[arg(long, env = "KIPPER_WORK_DIR")]
    pub work_dir: Option<PathBuf>,

    /// Mounted cache of installed dependencies, keyed by the manifest's content hash.
    #[arg(long, env = env::DEPS_CACHE)]
    pub deps_cache: Option<PathBuf>,

    /// Node executable.
    #[arg(long, env = "KIPPER_NODE_BIN", default_value = "node")]
    pub node_bin: String,

    /// Python executable.
    #[arg(long, env = "KIPPER_PYTHON_BIN", default_value = "python3")]
    pub python_bin: String,

    /// npm executable, used when a package.json sits beside the handler.
    #[arg(long, env = "KIPPER_NPM_BIN", default_value = "npm")]
    pub npm_bin: String,

    /// Log format on stderr: `json` or `text`.
    #[arg(long, env = "KIPPER_LOG_FORMAT", default_value_t)]
    pub log_format: LogFormat,
}

/// The language of the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// `node` running `bootstrap/node.js`.
    Node,
    /// `python3` running `bootstrap/python.py`.
    Python,
}

impl Runtime {
    /// The name used in logs and the `KIPPER_RUNTIME` variable.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Node => "node",
            Runtime::Python => "python",
        }
    }

    /// Infers the runtime from a handler file's extension.
    pub fn from_extension(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()? {
            "js" | "cjs" | "mjs" => Some(Runtime::Node),
            "py" => Some(Runtime::Python),
            _ => None,
        }
    }
}

/// Whether the shim serves HTTP or runs the handler once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Serve HTTP until SIGTERM.
    Http,
    /// Invoke once, print the result, exit 0 or 1.
    Batch,
    /// Install the dependencies (into the cache when one is set) and exit 0, or 1 when
    /// the install fails. The rendered pod runs this as an init container with a memory
    /// limit of its own, so the serving container never pays an installer's peak.
    Install,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The handler file (`KIPPER_FUNCTION_PATH`).
    pub handler: PathBuf,
    /// Its language (`KIPPER_RUNTIME`, else inferred).
    pub runtime: Runtime,
    /// `KIPPER_MODE`.
    pub mode: Mode,
    /// `KIPPER_TRIGGER`, when set.
    pub trigger: Option<String>,
    /// The function's address (`KIPPER_BIND`, `PORT`).
    pub listen: SocketAddr,
    /// The admin server's address, unless disabled.
    pub admin: Option<SocketAddr>,
    /// Worker processes (`KIPPER_WORKERS`).
    pub workers: usize,
    /// Per-invocation timeout (`KIPPER_TIMEOUT`).
    pub timeout: Duration,
    /// Requests held at most during a cold start (`KIPPER_HOLD_MAX`).
    pub hold_max: usize,
    /// Longest hold (`KIPPER_HOLD_TIMEOUT`).
    pub hold_timeout: Duration,
    /// Largest request body in bytes (`KIPPER_BODY_LIMIT`).
    pub body_limit: usize,
    /// SIGTERM drain (`KIPPER_SHUTDOWN_GRACE`, formerly `KIPPER_GRACE`).
    pub shutdown_grace: Duration,
    /// Writable directory (`KIPPER_WORK_DIR`).
    pub work_dir: PathBuf,
    /// The work dir is the shim's own temporary one: removed at exit.
    pub owns_work_dir: bool,
    /// Dependency cache (`KIPPER_DEPS_CACHE`).
    pub deps_cache: Option<PathBuf>,
    /// `KIPPER_NODE_BIN`.
    pub node_bin: String,
    /// `KIPPER_PYTHON_BIN`.
    pub python_bin: String,
    /// `KIPPER_NPM_BIN`.
    pub npm_bin: String,
    /// `KIPPER_LOG_FORMAT`.
    pub log_format: LogFormat,
}

/// The `setting` of a configuration error clap reports, which may name any flag.
pub const COMMAND_LINE: &str = "command line";

/// The default drain of `KIPPER_SHUTDOWN_GRACE`: within the pod's 30 s termination grace.
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(25);

/// The longest wait any duration setting of the shim accepts: a day.
const LONGEST: Duration = Duration::from_secs(86_400);

/// Refuses a zero or longer-than-a-day wait, naming the setting and the fix.
fn bounded(value: Duration, setting: &'static str) -> Result<Duration> {
    if value.is_zero() || value > LONGEST {
        return Err(Error::config(
            setting,
            format!("{setting} must be more than 0 and at most a day, e.g. {setting}=30s"),
        ));
    }
    Ok(value)
}

/// A directory stands for the handler file in it (`/app/function` ->
/// `/app/function/index.js` or `handler.py`), as the ConfigMap mount holds one.
fn handler_in_dir(path: PathBuf, runtime: Option<Runtime>) -> PathBuf {
    if !path.is_dir() {
        return path;
    }
    let candidates: &[&str] = match runtime {
        Some(Runtime::Node) => &["index.js", "index.mjs", "index.cjs"],
        Some(Runtime::Python) => &["handler.py", "main.py"],
        None => &[
            "index.js",
            "index.mjs",
            "index.cjs",
            "handler.py",
            "main.py",
        ],
    };
    candidates
        .iter()
        .map(|name| path.join(name))
        .find(|p| p.is_file())
        .unwrap_or(path)
}

impl Args {
    /// Parses the command line and environment. `--help` and `--version`
    /// print and exit 0; a malformed value comes back as one line naming the
    /// environment variable, for the caller to print and exit with code 2.
    pub fn parse_one_line() -> std::result::Result<Self, String> {
        kipper_contract::command_line::parse_or_one_line()
    }

    /// Validates the arguments into a [`Config`]; errors name the setting and the fix.
    pub fn into_config(self) -> Result<Config> {
        let explicit = match &self.runtime {
            None => None,
            Some(r) if r.is_empty() => None,
            Some(r) if r == "node" || r == "nodejs" => Some(Runtime::Node),
            Some(r) if r == "python" || r == "python3" => Some(Runtime::Python),
            Some(r) => {
                return Err(Error::config(
                    "KIPPER_RUNTIME",
                    format!("KIPPER_RUNTIME={r} is not supported; set it to node or python"),
                ));
            }
        };
        let path = self
            .handler
            .or(self.function_path)
            .map(|p| handler_in_dir(p, explicit));
        let (handler, runtime) = match (path, explicit) {
            (Some(p), Some(r)) => (p, r),
            (Some(p), None) => match Runtime::from_extension(&p) {
                Some(r) => (p, r),
                None => {
                    return Err(Error::config(
                        "KIPPER_RUNTIME",
                        format!(
                            "cannot infer the runtime of {}: name it .js/.cjs/.mjs or .py, or set KIPPER_RUNTIME=node|python",
                            p.display()
                        ),
                    ));
                }
            },
            (None, Some(Runtime::Python)) => {
                (PathBuf::from("/app/function/handler.py"), Runtime::Python)
            }
            (None, _) => (PathBuf::from("/app/function/index.js"), Runtime::Node),
        };
        let mode = match self.mode.as_str() {
            env::mode::HTTP | "" => Mode::Http,
            env::mode::BATCH => Mode::Batch,
            env::mode::INSTALL => Mode::Install,
            other => {
                return Err(Error::config(
                    "KIPPER_MODE",
                    format!(
                        "KIPPER_MODE={other} is not supported; set it to http, batch or install"
                    ),
                ));
            }
        };
        let trigger = self.trigger.filter(|t| !t.is_empty());
        if let Some(t) = &trigger
            && t.parse::<Trigger>().is_err()
        {
            let names: Vec<&str> = Trigger::ALL.into_iter().map(Trigger::as_str).collect();
            return Err(Error::config(
                "KIPPER_TRIGGER",
                format!(
                    "KIPPER_TRIGGER={t} is not supported; use one of {}",
                    names.join(", ")
                ),
            ));
        }
        let workers = match self.workers {
            Some(0) => {
                return Err(Error::config(
                    "KIPPER_WORKERS",
                    "KIPPER_WORKERS=0: set at least 1 worker, or unset it to use one per CPU",
                ));
            }
            Some(n) if n > 256 => {
                return Err(Error::config(
                    "KIPPER_WORKERS",
                    format!("KIPPER_WORKERS={n} is too many; use at most 256"),
                ));
            }
            Some(n) => n,
            None => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        };
        if self.hold_max == 0 {
            return Err(Error::config(
                "KIPPER_HOLD_MAX",
                "KIPPER_HOLD_MAX=0 would refuse every request during a cold start; set it to 1 or more",
            ));
        }
        if self.body_limit == 0 {
            return Err(Error::config(
                "KIPPER_BODY_LIMIT",
                "KIPPER_BODY_LIMIT=0 would refuse every body; set a size in bytes, e.g. 6291456",
            ));
        }
        let owns_work_dir = self.work_dir.is_none();
        let work_dir = self.work_dir.unwrap_or_else(|| {
            std::env::temp_dir().join(format!("kipper-shim-{}", std::process::id()))
        });
        Ok(Config {
            handler,
            runtime,
            mode,
            trigger,
            listen: SocketAddr::new(self.bind, self.port),
            admin: (self.admin_port != 0).then(|| SocketAddr::new(self.bind, self.admin_port)),
            workers,
            timeout: bounded(
                self.timeout
                    .unwrap_or(Duration::from_secs(if mode == Mode::Batch {
                        3600
                    } else {
                        30
                    })),
                "KIPPER_TIMEOUT",
            )?,
            hold_max: self.hold_max,
            hold_timeout: bounded(self.hold_timeout, "KIPPER_HOLD_TIMEOUT")?,
            body_limit: self.body_limit,
            shutdown_grace: match (self.shutdown_grace, self.legacy_grace) {
                (Some(grace), _) => bounded(grace, "KIPPER_SHUTDOWN_GRACE")?,
                (None, Some(grace)) => bounded(grace, "KIPPER_GRACE")?,
                (None, None) => DEFAULT_SHUTDOWN_GRACE,
            },
            work_dir,
            owns_work_dir,
            deps_cache: self.deps_cache.filter(|p| !p.as_os_str().is_empty()),
            node_bin: self.node_bin,
            python_bin: self.python_bin,
            npm_bin: self.npm_bin,
            log_format: self.log_format,
        })
    }
}

impl Config {
    /// A configuration for tests and benchmarks: the handler on an ephemeral loopback port.
    pub fn for_handler(handler: impl Into<PathBuf>) -> Result<Self> {
        let mut args = Args::try_parse_from(["kipper-shim"])
            .map_err(|e| Error::config(COMMAND_LINE, e.to_string()))?;
        args.handler = Some(handler.into());
        args.bind = IpAddr::V4(Ipv4Addr::LOCALHOST);
        args.port = 0;
        args.admin_port = 0;
        args.into_config()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses as `main` does: a malformed value is the one line `main` prints.
    fn parse(args: &[&str]) -> Result<Config> {
        use clap::CommandFactory as _;
        let mut all = vec!["kipper-shim"];
        all.extend_from_slice(args);
        Args::try_parse_from(all)
            .map_err(|e| {
                Error::config(
                    COMMAND_LINE,
                    kipper_contract::command_line::one_line(&e, &Args::command()),
                )
            })?
            .into_config()
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.handler, PathBuf::from("/app/function/index.js"));
        assert_eq!(c.runtime, Runtime::Node);
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(
            c.admin.map(|a| a.port()),
            Some(9092),
            "clear of kipper-poll's 9091 and 9090"
        );
        assert_eq!(c.mode, Mode::Http);
        assert!(c.workers >= 1);
        let c = parse(&["--runtime", "python"]).unwrap();
        assert_eq!(c.handler, PathBuf::from("/app/function/handler.py"));
    }

    #[test]
    fn runtime_is_inferred_from_the_extension() {
        for (file, rt) in [
            ("a.js", Runtime::Node),
            ("a.mjs", Runtime::Node),
            ("a.cjs", Runtime::Node),
            ("h.py", Runtime::Python),
        ] {
            assert_eq!(parse(&[file]).unwrap().runtime, rt, "{file}");
        }
        let err = parse(&["handler.rb"]).unwrap_err().to_string();
        assert!(err.contains("KIPPER_RUNTIME"), "{err}");
        assert_eq!(
            parse(&["--runtime", "python", "x.txt"]).unwrap().runtime,
            Runtime::Python
        );
    }

    #[test]
    fn a_directory_means_the_handler_in_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("handler.py"), "").unwrap();
        let c = parse(&[dir.path().to_str().unwrap()]).unwrap();
        assert_eq!(
            (c.handler, c.runtime),
            (dir.path().join("handler.py"), Runtime::Python)
        );
        std::fs::write(dir.path().join("index.js"), "").unwrap();
        let c = parse(&[dir.path().to_str().unwrap()]).unwrap();
        assert_eq!(
            (c.handler, c.runtime),
            (dir.path().join("index.js"), Runtime::Node)
        );
        let c = parse(&["--runtime", "python", dir.path().to_str().unwrap()]).unwrap();
        assert_eq!(c.handler, dir.path().join("handler.py"));
        let empty = tempfile::tempdir().unwrap();
        assert!(
            parse(&[empty.path().to_str().unwrap()])
                .unwrap_err()
                .to_string()
                .contains("KIPPER_RUNTIME")
        );
    }

    #[test]
    fn bad_settings_name_the_variable() {
        for (args, setting) in [
            (&["--mode", "daemon"][..], "KIPPER_MODE"),
            (&["--runtime", "ruby"][..], "KIPPER_RUNTIME"),
            (&["--trigger", "kafka"][..], "KIPPER_TRIGGER"),
            (&["--workers", "0"][..], "KIPPER_WORKERS"),
            (&["--timeout", "0"][..], "KIPPER_TIMEOUT"),
            (&["--hold-max", "0"][..], "KIPPER_HOLD_MAX"),
            (&["--log-format", "xml"][..], "KIPPER_LOG_FORMAT"),
        ] {
            let err = parse(args).unwrap_err();
            // A value clap's parser refuses is reported by clap (setting: the command
            // line); its one line still names the variable.
            assert!(
                matches!(&err, Error::Config { setting: s, .. } if *s == setting || *s == COMMAND_LINE),
                "{args:?}: {err:?}"
            );
            let err = err.to_string();
            assert!(err.contains(setting), "{args:?}: {err}");
        }
    }

    #[test]
    fn flags_mirror_values() {
        let c = parse(&[
            "--port",
            "9000",
            "--admin-port",
            "0",
            "--mode",
            "batch",
            "--trigger",
            "cron",
            "--workers",
            "3",
            "--timeout",
            "0.5",
        ])
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert!(c.admin.is_none());
        assert_eq!(c.mode, Mode::Batch);
        assert_eq!(c.trigger.as_deref(), Some("cron"));
        assert_eq!(c.workers, 3);
        assert_eq!(c.timeout, Duration::from_millis(500));
        assert_eq!(parse(&[]).unwrap().timeout, Duration::from_secs(30));
        assert_eq!(
            parse(&["--mode", "batch"]).unwrap().timeout,
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn shutdown_grace_has_one_name_and_the_old_one_still_works() {
        assert_eq!(parse(&[]).unwrap().shutdown_grace, Duration::from_secs(25));
        let grace = |args: &[&str]| parse(args).unwrap().shutdown_grace;
        assert_eq!(grace(&["--shutdown-grace", "10s"]), Duration::from_secs(10));
        assert_eq!(
            grace(&["--shutdown-grace", "2.5"]),
            Duration::from_millis(2500)
        );
        // `--grace` is the flag of KIPPER_GRACE, the name before the binaries agreed on one.
        assert_eq!(grace(&["--grace", "12"]), Duration::from_secs(12));
        assert_eq!(
            grace(&["--grace", "12", "--shutdown-grace", "3s"]),
            Duration::from_secs(3),
            "the new name wins"
        );
        let err = parse(&["--grace", "0"]).unwrap_err().to_string();
        assert!(err.starts_with("KIPPER_GRACE must be more than 0"), "{err}");
    }

    #[test]
    fn durations_take_seconds_as_before_and_units_now() {
        let c = parse(&["--timeout", "250ms", "--hold-timeout", "1m"]).unwrap();
        assert_eq!(
            (c.timeout, c.hold_timeout),
            (Duration::from_millis(250), Duration::from_secs(60))
        );
        assert_eq!(parse(&[]).unwrap().hold_timeout, Duration::from_secs(60));
        assert_eq!(
            parse(&["--timeout", "soon"]).unwrap_err().to_string(),
            "KIPPER_TIMEOUT: \"soon\" is not a duration; write e.g. 5s, 500ms or 1m30s"
        );
        assert!(parse(&["--timeout", "2d"]).is_err());
    }

    #[test]
    fn log_format_is_json_unless_text_is_asked_for() {
        assert_eq!(parse(&[]).unwrap().log_format, LogFormat::Json);
        assert_eq!(
            parse(&["--log-format", "text"]).unwrap().log_format,
            LogFormat::Text
        );
        assert_eq!(
            parse(&["--log-format", "xml"]).unwrap_err().to_string(),
            "KIPPER_LOG_FORMAT: \"xml\" is not json or text"
        );
    }
}
