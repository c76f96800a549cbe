//! The server's certificate and the kubeconfig that trusts it: a self-signed CA, a server
//! certificate it signs for `127.0.0.1` and `localhost`, and a kubeconfig with the CA, the
//! server URL and a bearer token, as a user's cluster would hand out.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A fresh CA (as PEM, for the kubeconfig) and the server's TLS configuration.
pub(super) struct Certificates {
    pub(super) ca_pem: String,
    pub(super) server: Arc<ServerConfig>,
}

/// Generates the CA and server certificate. Panics on failure: a test cannot go on without.
pub(super) fn certificates() -> Certificates {
    kipper_tls::install_crypto_provider();
    let ca_key = KeyPair::generate().expect("generate the CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "kipper fake API server CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_pem = ca.self_signed(&ca_key).expect("self-sign the CA").pem();
    let issuer = Issuer::new(ca, ca_key);

    let server_key = KeyPair::generate().expect("generate the server key");
    let mut server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server certificate parameters");
    server
        .distinguished_name
        .push(DnType::CommonName, "kipper-fake-apiserver");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server
        .signed_by(&server_key, &issuer)
        .expect("sign the server certificate");

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let chain = vec![CertificateDer::from(server_cert.der().to_vec())];
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server TLS configuration");
    Certificates {
        ca_pem,
        server: Arc::new(config),
    }
}

/// Writes `dir/kubeconfig`: one cluster, user and context, namespace `default`.
pub(super) fn write_kubeconfig(dir: &Path, port: u16, ca_pem: &str, token: &str) -> PathBuf {
    let ca = STANDARD.encode(ca_pem);
    let kubeconfig = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: kipper-fake
  cluster:
    server: https://127.0.0.1:{port}
    certificate-authority-data: {ca}
users:
- name: kipper-fake
  user:
    token: {token}
contexts:
- name: kipper-fake
  context:
    cluster: kipper-fake
    user: kipper-fake
    namespace: default
current-context: kipper-fake
"
    );
    let path = dir.join("kubeconfig");
    std::fs::write(&path, kubeconfig).expect("write the kubeconfig");
    path
}
