//! The `Status` bodies of failed requests, with the real API server's reasons and messages, so
//! code that matches on `reason` or shows `message` to a user sees what a cluster would send.

use serde_json::{Value, json};

use super::target::Resource;

/// A failed request: its HTTP code and `Status` body.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) code: u16,
    reason: &'static str,
    message: String,
    details: Option<Value>,
}

impl Failure {
    fn new(code: u16, reason: &'static str, message: String) -> Self {
        Self {
            code,
            reason,
            message,
            details: None,
        }
    }

    fn about(mut self, resource: &Resource, name: &str) -> Self {
        let mut details = json!({"name": name, "kind": resource.plural});
        if !resource.group().is_empty() {
            details["group"] = json!(resource.group());
        }
        self.details = Some(details);
        self
    }

    /// `functions.kipper.run "x" not found`
    pub(super) fn not_found(resource: &Resource, name: &str) -> Self {
        let message = format!("{} \"{name}\" not found", resource.qualified());
        Self::new(404, "NotFound", message).about(resource, name)
    }

    /// `namespaces "x" not found`, for a create in a namespace that does not exist.
    pub(super) fn namespace_not_found(namespace: &str) -> Self {
        Self::not_found(&Resource::namespaces(), namespace)
    }

    pub(super) fn namespace_terminating(resource: &Resource, name: &str, namespace: &str) -> Self {
        let message = format!(
            "{} \"{name}\" is forbidden: unable to create new content in namespace {namespace} \
             because it is being terminated",
            resource.qualified()
        );
        Self::new(403, "Forbidden", message).about(resource, name)
    }

    pub(super) fn already_exists(resource: &Resource, name: &str) -> Self {
        let message = format!("{} \"{name}\" already exists", resource.qualified());
        Self::new(409, "AlreadyExists", message).about(resource, name)
    }

    /// A stale `metadata.resourceVersion` on an update.
    pub(super) fn stale(resource: &Resource, name: &str) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
             please apply your changes to the latest version and try again",
            resource.qualified()
        );
        Self::new(409, "Conflict", message).about(resource, name)
    }

    /// Server-side apply conflicts: `(manager, field)` pairs, fields as `.spec.replicas`.
    pub(super) fn apply_conflicts(
        resource: &Resource,
        name: &str,
        conflicts: &[(String, String)],
    ) -> Self {
        let n = conflicts.len();
        let plural = if n == 1 { "conflict" } else { "conflicts" };
        let list: Vec<String> = conflicts
            .iter()
            .map(|(manager, field)| {
                format!(
                    "conflict with \"{manager}\" using {}: {field}",
                    resource.api_version()
                )
            })
            .collect();
        let message = format!("Apply failed with {n} {plural}: {}", list.join("\n"));
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(manager, field)| {
                json!({"reason": "FieldManagerConflict",
                       "message": format!("conflict with \"{manager}\""), "field": field})
            })
            .collect();
        let mut failure = Self::new(409, "Conflict", message).about(resource, name);
        if let Some(details) = failure.details.as_mut() {
            details["causes"] = json!(causes);
        }
        failure
    }

    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message.into())
    }

    pub(super) fn invalid(resource: &Resource, name: &str, message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message.into()).about(resource, name)
    }

    pub(super) fn unsupported_media_type(content_type: &str) -> Self {
        let message = format!(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (the fake API server does not take {content_type})"
        );
        Self::new(415, "UnsupportedMediaType", message)
    }

    pub(super) fn method_not_allowed(method: &str) -> Self {
        let message =
            format!("the server does not allow this method on the requested resource ({method})");
        Self::new(405, "MethodNotAllowed", message)
    }

    pub(super) fn path_not_found(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    pub(super) fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized".to_owned())
    }

    /// A failure a test asked for with `ApiServer::fail`.
    pub(super) fn injected(code: u16) -> Self {
        let reason = match code {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            409 => "Conflict",
            410 => "Expired",
            422 => "Invalid",
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "InternalError",
        };
        Self::new(code, reason, format!("injected failure ({code} {reason})"))
    }

    /// A watch that fell behind: the client must list again (as after a real 410 Gone).
    pub(super) fn expired() -> Self {
        Self::new(
            410,
            "Expired",
            "too old resource version: the watch fell behind".to_owned(),
        )
    }

    pub(super) fn to_value(&self) -> Value {
        let mut status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason, "code": self.code});
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}
