//! The one TLS crypto provider of every Kipper binary, and the S3 SDK's HTTPS client built on it.
//!
//! rustls 0.23 panics at the first TLS handshake ("Could not automatically determine the
//! process-level CryptoProvider") when more than one provider is compiled in and none is
//! installed. The workspace compiles in exactly one, `ring` (kube's `ring` feature, our
//! `rustls` dependency, and the S3 client below instead of the SDK's default aws-lc-rs one),
//! and every binary calls [`install_crypto_provider`] first thing in `main`, so neither a second
//! provider creeping into the dependency graph nor a library that asks for the default can make
//! a binary panic. `tests/one_provider.rs` fails when aws-lc-rs enters the graph.
//!
//! Why ring: it builds from crates.io with a C compiler only (aws-lc-rs needs cmake or a long
//! C build and doubles the TLS code in every binary), kube-rs supports it directly, and none of
//! our TLS peers (the Kubernetes API server, S3/MinIO, Redis) needs a cipher only aws-lc-rs has.
//!
//! With the `s3` feature, [`s3_client`] is the one way both kipper-poll and kipper-controller
//! build an S3 client for a watched bucket, so they address a server the same way.

/// Installs ring as the process-wide rustls crypto provider. Idempotent; call it before any
/// TLS client is built.
pub fn install_crypto_provider() {
    // Err means a provider is installed already (a second call): nothing to do.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The HTTPS client of every S3 SDK client in the workspace: hyper + rustls on ring, with the
/// platform's root certificates.
pub fn s3_http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The signing region of [`s3_client`]: S3-compatible servers accept any, and AWS buckets in
/// other regions redirect.
#[cfg(feature = "s3")]
pub const S3_REGION: &str = "us-east-1";

/// An S3 client for MinIO-style servers at `endpoint` (`http://host:port`): path-style
/// addressing, static credentials, [`S3_REGION`], the HTTPS client of [`s3_http_client`].
/// `caller` names the credentials' provider in the SDK's logs. Opens no connection yet.
#[cfg(feature = "s3")]
pub fn s3_client(
    endpoint: &str,
    access_key: &str,
    secret_key: &str,
    caller: &'static str,
) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(s3_http_client())
        .region(Region::new(S3_REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(access_key, secret_key, None, None, caller))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_provider_is_ring_after_install() {
        super::install_crypto_provider();
        super::install_crypto_provider();
        let provider = rustls::crypto::CryptoProvider::get_default();
        assert!(provider.is_some_and(|p| {
            p.cipher_suites
                .iter()
                .eq(rustls::crypto::ring::default_provider()
                    .cipher_suites
                    .iter())
        }));
    }
}
