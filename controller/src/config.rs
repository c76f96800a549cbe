//! kipper-controller's configuration: flags, each also read from its environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use kipper_contract::{LogFormat, parse_duration_or_seconds};

use crate::render::RenderSettings;

/// Command line of `kipper-controller`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "kipper-controller",
    version,
    about = "Renders kipper.run Functions into Kubernetes and KEDA objects"
)]
pub struct ControllerArgs {
    /// Port of /health, /ready, /metrics and /pending (the admin port, as in kipper-poll and
    /// kipper-shim); default 8080, or the port of --listen.
    #[arg(long, env = "KIPPER_ADMIN_PORT")]
    pub admin_port: Option<u16>,
    /// Address of the admin server; a set --admin-port replaces its port.
    #[arg(long, env = "KIPPER_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Public domain of function URLs: https://fn-<name>-<cluster-domain>.
    #[arg(long, env = "KIPPER_CLUSTER_DOMAIN")]
    pub cluster_domain: String,
    /// Runtime image of node functions.
    #[arg(
        long,
        env = "KIPPER_NODE_IMAGE",
        default_value = "kipper-runtime-node:0.1.0"
    )]
    pub node_image: String,
    /// Runtime image of python functions.
    #[arg(
        long,
        env = "KIPPER_PYTHON_IMAGE",
        default_value = "kipper-runtime-python:0.1.0"
    )]
    pub python_image: String,
    /// Image of the kipper-poll sidecar.
    #[arg(long, env = "KIPPER_POLL_IMAGE", default_value = "kipper-poll:0.1.0")]
    pub poll_image: String,
    /// Base URL at which KEDA reaches this controller (for minio functions' metrics-api).
    #[arg(
        long,
        env = "KIPPER_PENDING_URL",
        default_value = "http://kipper-controller.kipper-system.svc.cluster.local:8080"
    )]
    pub pending_url: String,
    /// DNS name of the KEDA HTTP add-on interceptor proxy Service.
    #[arg(
        long,
        env = "KIPPER_INTERCEPTOR_HOST",
        default_value = "keda-add-ons-http-interceptor-proxy.keda.svc.cluster.local"
    )]
    pub interceptor_host: String,
    /// Port of the interceptor proxy Service.
    #[arg(long, env = "KIPPER_INTERCEPTOR_PORT", default_value_t = 8080)]
    pub interceptor_port: u16,
    /// IngressClass of function routes.
    #[arg(long, env = "KIPPER_INGRESS_CLASS", default_value = "traefik")]
    pub ingress_class: String,
    /// Access mode of the dependency cache volume `<fn>-deps` (ReadWriteOnce or ReadWriteMany).
    #[arg(
        long,
        env = "KIPPER_DEPS_CACHE_ACCESS_MODE",
        default_value = "ReadWriteOnce"
    )]
    pub deps_cache_access_mode: String,
    /// Size of the dependency cache volume.
    #[arg(long, env = "KIPPER_DEPS_CACHE_SIZE", default_value = "1Gi")]
    pub deps_cache_size: String,
    /// StorageClass of the dependency cache volume; empty uses the cluster's default.
    #[arg(long, env = "KIPPER_DEPS_CACHE_STORAGE_CLASS", default_value = "")]
    pub deps_cache_storage_class: String,
    /// Log format on stderr: json or text.
    #[arg(long, env = "KIPPER_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// The boolean KIPPER_LOG_FORMAT had before the three binaries agreed on one (README,
    /// deploy/controller.yaml): `--log-json` or `KIPPER_LOG_JSON=true` is json, `false` text.
    /// Still read; KIPPER_LOG_FORMAT wins.
    #[arg(long, env = "KIPPER_LOG_JSON", hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub log_json: Option<bool>,
    /// How long open HTTP connections get to finish on SIGTERM (a duration, or seconds).
    #[arg(long, env = "KIPPER_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration_or_seconds)]
    pub shutdown_grace: Duration,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Renderer settings.
    pub render: RenderSettings,
    /// `KIPPER_LOG_FORMAT`.
    pub log_format: LogFormat,
    /// Drain cap.
    pub shutdown_grace: Duration,
}

/// Checks a cluster domain (`--cluster-domain` / `KIPPER_CLUSTER_DOMAIN` of the controller
/// and of `kip`); the error names `flag` and the fix.
pub fn validate_cluster_domain(domain: &str, flag: &str) -> crate::Result<String> {
    let domain = domain.trim();
    let domain_ok = !domain.is_empty()
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if domain_ok {
        Ok(domain.to_owned())
    } else {
        Err(crate::Error::Invalid(format!(
            "{flag} / KIPPER_CLUSTER_DOMAIN {domain:?} is not a DNS name: use e.g. 46-225-91-12.kipper.run"
        )))
    }
}

impl ControllerArgs {
    /// Parses the command line and environment. `--help` and `--version`
    /// print and exit 0; anything else wrong comes back as one line (clap's
    /// own report adds usage lines), for `main` to print with exit code 2.
    pub fn parse_one_line() -> Result<Self, String> {
        use clap::CommandFactory as _;
        use clap::error::ErrorKind;
        Self::try_parse().map_err(|e| match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => e.exit(),
            // The one required setting; clap lists it on a second line.
            ErrorKind::MissingRequiredArgument => "KIPPER_CLUSTER_DOMAIN (--cluster-domain) is required: the public domain of function URLs, e.g. KIPPER_CLUSTER_DOMAIN=46-225-91-12.kipper.run".to_owned(),
            _ => kipper_contract::command_line::one_line(&e, &Self::command()),
        })
    }

    /// Validates; the error is one line naming the setting and the fix.
    pub fn validate(self) -> crate::Result<ControllerConfig> {
        let domain = validate_cluster_domain(&self.cluster_domain, "--cluster-domain")?;
        if !(self.pending_url.starts_with("http://") || self.pending_url.starts_with("https://")) {
            return Err(crate::Error::Invalid(format!(
                "--pending-url / KIPPER_PENDING_URL {:?} must be an http(s) URL reachable by KEDA",
                self.pending_url
            )));
        }
        if !matches!(
            self.deps_cache_access_mode.as_str(),
            "ReadWriteOnce" | "ReadWriteMany" | "ReadWriteOncePod"
        ) {
            return Err(crate::Error::Invalid(format!(
                "--deps-cache-access-mode / KIPPER_DEPS_CACHE_ACCESS_MODE {:?}: use ReadWriteOnce or ReadWriteMany",
                self.deps_cache_access_mode
            )));
        }
        let listen = match self.admin_port {
            None => self.listen,
            Some(0) => {
                return Err(crate::Error::Invalid(
                    "--admin-port / KIPPER_ADMIN_PORT 0 would turn off /pending (KEDA's metrics-api) and the probes: set a free port, e.g. 8080".to_owned(),
                ));
            }
            Some(port) => SocketAddr::new(self.listen.ip(), port),
        };
        Ok(ControllerConfig {
            listen,
            render: RenderSettings {
                cluster_domain: domain,
                node_image: self.node_image,
                python_image: self.python_image,
                poll_image: self.poll_image,
                pending_url: self.pending_url,
                interceptor_host: self.interceptor_host,
                interceptor_port: i32::from(self.interceptor_port),
                ingress_class: self.ingress_class,
                deps_cache: crate::render::DepsCacheSettings {
                    access_mode: self.deps_cache_access_mode,
                    size: self.deps_cache_size,
                    storage_class: Some(self.deps_cache_storage_class).filter(|c| !c.is_empty()),
                },
            },
            log_format: self
                .log_format
                .or(self.log_json.map(LogFormat::from_json_flag))
                .unwrap_or_default(),
            shutdown_grace: self.shutdown_grace,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn cluster_domain_is_required_and_checked() {
        assert!(ControllerArgs::try_parse_from(["kipper-controller"]).is_err());
        let args =
            ControllerArgs::try_parse_from(["kc", "--cluster-domain", "Bad Domain"]).unwrap();
        let e = args.validate().unwrap_err().to_string();
        assert!(e.contains("--cluster-domain"), "{e}");
    }

    #[test]
    fn defaults_and_flags() {
        let cfg = ControllerArgs::try_parse_from([
            "kc",
            "--cluster-domain",
            "46-225-91-12.kipper.run",
            "--poll-image",
            "reg/kipper-poll:1",
            "--listen",
            "127.0.0.1:9999",
        ])
        .unwrap()
        .validate()
        .unwrap();
        assert_eq!(cfg.render.poll_image, "reg/kipper-poll:1");
        assert_eq!(cfg.render.interceptor_port, 8080);
        assert_eq!(cfg.listen.port(), 9999);
        let bad = ControllerArgs::try_parse_from([
            "kc",
            "--cluster-domain",
            "x.y",
            "--pending-url",
            "ftp://x",
        ])
        .unwrap()
        .validate();
        assert!(bad.unwrap_err().to_string().contains("--pending-url"));
    }

    fn parse(args: &[&str]) -> Result<ControllerConfig, String> {
        use clap::CommandFactory as _;
        let mut argv = vec!["kc", "--cluster-domain", "x.kipper.run"];
        argv.extend_from_slice(args);
        ControllerArgs::try_parse_from(argv)
            .map_err(|e| kipper_contract::command_line::one_line(&e, &ControllerArgs::command()))?
            .validate()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn shutdown_grace_takes_seconds_as_before_and_durations_now() {
        assert_eq!(parse(&[]).unwrap().shutdown_grace, Duration::from_secs(10));
        let grace = |value: &str| parse(&["--shutdown-grace", value]).unwrap().shutdown_grace;
        assert_eq!(grace("20"), Duration::from_secs(20));
        assert_eq!(grace("1m"), Duration::from_secs(60));
        assert_eq!(grace("500ms"), Duration::from_millis(500));
        assert_eq!(
            parse(&["--shutdown-grace", "soon"]).unwrap_err(),
            "KIPPER_SHUTDOWN_GRACE: \"soon\" is not a duration; write e.g. 5s, 500ms or 1m30s"
        );
    }

    #[test]
    fn log_format_is_json_by_default_and_the_old_flag_still_works() {
        let format = |args: &[&str]| parse(args).unwrap().log_format;
        assert_eq!(format(&[]), LogFormat::Json);
        assert_eq!(format(&["--log-format", "text"]), LogFormat::Text);
        assert_eq!(format(&["--log-json"]), LogFormat::Json);
        assert_eq!(format(&["--log-json=false"]), LogFormat::Text);
        assert_eq!(format(&["--log-json=true"]), LogFormat::Json);
        assert_eq!(
            format(&["--log-json=true", "--log-format=text"]),
            LogFormat::Text,
            "the new name wins"
        );
        assert_eq!(
            parse(&["--log-format", "xml"]).unwrap_err(),
            "KIPPER_LOG_FORMAT: \"xml\" is not json or text"
        );
    }

    #[test]
    fn admin_port_replaces_the_port_of_listen() {
        let listen = |args: &[&str]| parse(args).unwrap().listen.to_string();
        assert_eq!(listen(&[]), "0.0.0.0:8080");
        assert_eq!(listen(&["--admin-port", "9000"]), "0.0.0.0:9000");
        assert_eq!(
            listen(&["--listen", "127.0.0.1:0", "--admin-port", "9000"]),
            "127.0.0.1:9000"
        );
        assert_eq!(listen(&["--listen", "127.0.0.1:0"]), "127.0.0.1:0");
        let e = parse(&["--admin-port", "0"]).unwrap_err();
        assert!(e.starts_with("--admin-port / KIPPER_ADMIN_PORT 0"), "{e}");
    }
}
