//! Traefik `Middleware` (`traefik.io/v1alpha1`), headers only, from
//! `../shared/schemas/traefik.io_middlewares.yaml`.

use std::collections::BTreeMap;

use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// `Middleware.spec`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "traefik.io",
    version = "v1alpha1",
    kind = "Middleware",
    plural = "middlewares",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct MiddlewareSpec {
    /// Response (and request) header settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<MiddlewareHeaders>,
}

/// `Middleware.spec.headers`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MiddlewareHeaders {
    /// `X-Frame-Options: DENY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_deny: Option<bool>,
    /// `X-Content-Type-Options: nosniff`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type_nosniff: Option<bool>,
    /// `X-XSS-Protection: 1; mode=block`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser_xss_filter: Option<bool>,
    /// `Referrer-Policy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer_policy: Option<String>,
    /// `Strict-Transport-Security` max-age.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sts_seconds: Option<i64>,
    /// `includeSubDomains` on HSTS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sts_include_subdomains: Option<bool>,
    /// `Content-Security-Policy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_security_policy: Option<String>,
    /// `Permissions-Policy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions_policy: Option<String>,
    /// Extra response headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_response_headers: BTreeMap<String, String>,
}
