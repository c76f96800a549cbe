//! kipper-controller's configuration: flags, each also read from its environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

use crate::render::RenderSettings;

/// Command line of `kipper-controller`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "kipper-controller",
    version,
    about = "Renders kipper.run Functions into Kubernetes and KEDA objects"
)]
pub struct ControllerArgs {
    /// Address of /health, /ready, /metrics and /pending.
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
    /// Log as JSON lines instead of text.
    #[arg(long, env = "KIPPER_LOG_JSON", default_value_t = false)]
    pub log_json: bool,
    /// Seconds open HTTP connections get to finish on SIGTERM.
    #[arg(long, env = "KIPPER_SHUTDOWN_GRACE", default_value_t = 10)]
    pub shutdown_grace: u64,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Renderer settings.
    pub render: RenderSettings,
    /// JSON logs.
    pub log_json: bool,
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
        use clap::error::ErrorKind;
        match Self::try_parse() {
            Ok(args) => Ok(args),
            Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
                e.exit()
            }
            Err(e) => {
                let text = e.render().to_string();
                let first = text.lines().next().unwrap_or_default();
                let first = first.trim_start_matches("error: ");
                Err(match e.kind() {
                    // The one required setting; clap lists it on a second line.
                    ErrorKind::MissingRequiredArgument => "KIPPER_CLUSTER_DOMAIN (--cluster-domain) is required: the public domain of function URLs, e.g. KIPPER_CLUSTER_DOMAIN=46-225-91-12.kipper.run".to_owned(),
                    _ => format!("{first}; see kipper-controller --help"),
                })
            }
        }
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
        Ok(ControllerConfig {
            listen: self.listen,
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
            log_json: self.log_json,
            shutdown_grace: Duration::from_secs(self.shutdown_grace),
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
}
