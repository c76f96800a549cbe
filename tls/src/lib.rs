//! The one TLS crypto provider of every Kipper binary, and the S3 SDK's HTTPS client built on it.
//!
//! rustls 0.23 panics at the first TLS handshake ("Could not automatically determine the
//! process-level CryptoProvider") when more than one provider is compiled in and none is
//! installed. The workspace compiles in exactly one, `ring` (kube's `ring` feature, our
//! `rustls` dependency, and the S3 client below instead of the SDK's default aws-lc-rs one),
//! and every binary calls [`install_crypto_provider`] first thing in `main`, so neither a second
//! provider creeping into the dependency graph nor a library that asks for the default can make
//! a binary panic. `controller/tests/tls_provider.rs` fails when aws-lc-rs enters the graph.
//!
//! Why ring: it builds from crates.io with a C compiler only (aws-lc-rs needs cmake or a long
//! C build and doubles the TLS code in every binary), kube-rs supports it directly, and none of
//! our TLS peers (the Kubernetes API server, S3/MinIO, Redis) needs a cipher only aws-lc-rs has.

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
