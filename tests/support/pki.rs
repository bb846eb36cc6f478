//! Certificates for the TLS tests, made with rcgen and written as PEM into
//! the test's own temp dir: a private CA, a server certificate it signed
//! (for `localhost` and 127.0.0.1), a client certificate it signed, and a
//! second CA that signed nothing here (a "wrong" CA file).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Paths of the PEM files, and the server certificate's DER for pins.
pub struct Pki {
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub server_der: Vec<u8>,
}

fn params(names: &[&str], common_name: &str) -> CertificateParams {
    let mut p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    // Distinct names: OpenSSL (mosquitto) takes a leaf whose subject equals
    // its issuer's for self-issued.
    p.distinguished_name.push(DnType::CommonName, common_name);
    p
}

fn ca(common_name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut p = params(&[], common_name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    (p.self_signed(&key).unwrap(), key)
}

/// Writes a fresh PKI into `dir`.
pub fn make(dir: &Path) -> Pki {
    let (ca_cert, ca_key) = ca("trickle-edge test CA");
    let (other_cert, _) = ca("trickle-edge other CA");
    let server_key = KeyPair::generate().unwrap();
    let server = params(&["localhost", "127.0.0.1"], "localhost")
        .signed_by(&server_key, &ca_cert, &ca_key)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = params(&[], "trickle-edge test client")
        .signed_by(&client_key, &ca_cert, &ca_key)
        .unwrap();
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    Pki {
        ca: write("ca.pem", ca_cert.pem()),
        other_ca: write("other-ca.pem", other_cert.pem()),
        server_cert: write("server.pem", server.pem()),
        server_key: write("server.key", server_key.serialize_pem()),
        client_cert: write("client.pem", client.pem()),
        client_key: write("client.key", client_key.serialize_pem()),
        server_der: server.der().to_vec(),
    }
}

/// A rustls server config presenting the server certificate (ring provider).
pub fn server_config(pki: &Pki) -> Arc<rustls::ServerConfig> {
    let certs = vec![CertificateDer::from_pem_file(&pki.server_cert).unwrap()];
    let key = PrivateKeyDer::from_pem_file(&pki.server_key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    Arc::new(config)
}
