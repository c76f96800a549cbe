//! The one error type of the library. Messages name the input at fault and the fix.

/// Everything that can go wrong in the controller, the renderer and the CLI.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A user-supplied value (flag, spec field, a name that does not exist) is wrong; the
    /// message names it and the fix. Only user input: a failure of the cluster or of a
    /// service is one of the other variants.
    #[error("{0}")]
    Invalid(String),

    /// A part of a Function could not be rendered (reported as a False condition).
    #[error("cannot render {part}: {reason}")]
    Render {
        /// Which object or section could not be rendered.
        part: &'static str,
        /// Why, in words the user can act on.
        reason: String,
    },

    /// A bound or source service does not exist (no `<service>-credentials` Secret).
    #[error(
        "unknown service {service:?} in namespace {namespace:?}: create it with `kip service add` or fix the name"
    )]
    UnknownService {
        /// The service name as given.
        service: String,
        /// Where it was looked for.
        namespace: String,
    },

    /// The Function's public hostname already belongs to another function or app.
    #[error("hostname {host} is already used by {owner}: rename the function")]
    HostnameConflict {
        /// The contested host.
        host: String,
        /// `kind namespace/name` of the current owner.
        owner: String,
    },

    /// The Kubernetes API refused or failed a request (one human line, see [`describe_kube`]).
    #[error("{}", describe_kube(.0))]
    Kube(#[from] kube::Error),

    /// An object could not be (de)serialized.
    #[error("serialization: {0}")]
    Json(#[from] serde_json::Error),

    /// YAML output failed.
    #[error("yaml: {0}")]
    Yaml(#[from] serde_yaml::Error),

    /// Reading a file or a stream failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being read or written.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },

    /// An S3 request for the pending-changes count failed.
    #[error("s3: {0}")]
    S3(String),

    /// The Kubernetes API, or something else the controller or `kip` depends on (a service's
    /// pod, the host index), cannot be reached or is not ready yet; the controller retries
    /// with backoff.
    #[error("{0}")]
    Unavailable(String),

    /// An object in the cluster is not in the shape Kipper writes (a missing key, field or
    /// label, a value that does not parse): someone edited it, or it is not Kipper's.
    #[error("{object} {problem}")]
    MalformedObject {
        /// The object, e.g. `Secret orders-credentials`.
        object: String,
        /// What is wrong with it and, where one exists, the fix.
        problem: String,
    },

    /// A task of the controller panicked or was cancelled.
    #[error("{task} task failed: {source}")]
    TaskFailed {
        /// Which task, e.g. `server`.
        task: &'static str,
        /// How it ended.
        source: tokio::task::JoinError,
    },

    /// A path the program's own structure rules out was reached (a bug).
    #[error("internal: {0}")]
    Internal(&'static str),
}

/// One line a user can act on for a Kubernetes client error: the API server's own message
/// (not the Rust structure), with what to check for the usual causes.
pub fn describe_kube(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            let details = status.details.as_ref();
            let kind = details.map(|d| d.kind.as_str()).unwrap_or_default();
            let name = details.map(|d| d.name.as_str()).unwrap_or_default();
            match status.code {
                404 if kind == "namespaces" => format!(
                    "namespace {name:?} not found: create it or check --project/--environment"
                ),
                401 => format!(
                    "the API server refused the credentials ({}): check the kubeconfig's user",
                    status.message
                ),
                403 => format!(
                    "{}: the kubeconfig's user is not allowed to do this (check its RBAC roles)",
                    status.message
                ),
                _ if status.message.is_empty() => {
                    format!("the API server answered {} {}", status.code, status.reason)
                }
                _ => status.message.clone(),
            }
        }
        other => {
            // Connection and TLS failures nest their cause: name the innermost one.
            let mut cause: &dyn std::error::Error = other;
            while let Some(next) = cause.source() {
                cause = next;
            }
            if matches!(other, kube::Error::Service(_) | kube::Error::HyperError(_)) {
                format!(
                    "cannot reach the Kubernetes API server: {cause} (check the kubeconfig's server address, or that the cluster is up)"
                )
            } else if other.to_string().contains(&cause.to_string()) {
                other.to_string()
            } else {
                format!("{other}: {cause}")
            }
        }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Short, stable reason used in conditions and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "InvalidSpec",
            Error::Render { .. } => "RenderFailed",
            Error::UnknownService { .. } => "UnknownService",
            Error::HostnameConflict { .. } => "HostnameConflict",
            Error::Kube(_) => "KubeError",
            Error::Json(_) | Error::Yaml(_) => "SerializationError",
            Error::Io { .. } => "IoError",
            Error::S3(_) => "S3Error",
            Error::Unavailable(_) => "Unavailable",
            Error::MalformedObject { .. } => "MalformedObject",
            Error::TaskFailed { .. } => "TaskFailed",
            Error::Internal(_) => "Internal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infrastructure_failures_are_not_invalid_input() {
        let malformed = Error::MalformedObject {
            object: "StatefulSet db in shop-prod".into(),
            problem: "has no container".into(),
        };
        assert_eq!(
            malformed.to_string(),
            "StatefulSet db in shop-prod has no container"
        );
        assert_eq!(malformed.reason(), "MalformedObject");
        let internal = Error::Internal("kip function is not run by the services module");
        assert_eq!(
            internal.to_string(),
            "internal: kip function is not run by the services module"
        );
        assert_ne!(internal.reason(), Error::Invalid(String::new()).reason());
        assert_eq!(Error::Unavailable("x".into()).reason(), "Unavailable");
    }
}
