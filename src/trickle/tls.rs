//! Client TLS: verified by default, with the escape hatches real deployments need.
//!
//! Orchestrators often present self-signed certificates and Livepeer's own
//! clients simply skip verification. We offer, in order of preference: the
//! system roots (default), a CA file, a pinned leaf-certificate SHA-256, and
//! an explicit `insecure` switch that logs a warning every time it is used.
//!
//! This is the crate's one client TLS policy: the trickle clients (`[tls]`)
//! and the webhook and MQTT outputs (their own `ca_file`, `pin_sha256`,
//! `insecure`, and for mutual TLS a [`ClientIdentity`]) and the orchestrator
//! clients (trust on first use, [`TlsOptions::first_use_config`]) all build
//! their rustls config here, with the same `ring` provider and verifier.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustls::client::WantsClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{
    ClientConfig, ConfigBuilder, DigitallySignedStruct, RootCertStore, SignatureScheme,
    WantsVerifier,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

use crate::sync::LockIgnoringPoison;

/// How the client verifies a server's certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of CA certificates to trust instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// SHA-256 of the server's leaf certificate (DER), hex, colons allowed.
    /// When set, only that certificate is accepted, whoever signed it.
    pub pin_sha256: Option<String>,
    /// Accept any certificate. Logs a warning; for lab use only.
    pub insecure: bool,
}

/// A client certificate (PEM, leaf first, then any intermediates) and its
/// private key (PEM: PKCS#8, PKCS#1 or SEC1), for servers that ask the
/// client to prove who it is (mutual TLS, e.g. a broker with
/// `require_certificate true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl ClientIdentity {
    fn load(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        let cert_pem = std::fs::read(&self.cert_file).map_err(|source| TlsError::ClientCert {
            path: self.cert_file.clone(),
            source,
        })?;
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&cert_pem)
            .filter_map(Result::ok)
            .collect();
        if certs.is_empty() {
            return Err(TlsError::ClientCertEmpty {
                path: self.cert_file.clone(),
            });
        }
        let key_pem = std::fs::read(&self.key_file).map_err(|source| TlsError::ClientKey {
            path: self.key_file.clone(),
            source,
        })?;
        let key =
            PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::ClientKeyEmpty {
                path: self.key_file.clone(),
            })?;
        Ok((certs, key))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read CA file {path}: {source}")]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "CA file {path} holds no usable certificate (expected PEM: -----BEGIN CERTIFICATE-----)"
    )]
    CaFileEmpty { path: PathBuf },
    #[error("cannot read client certificate {path}: {source}")]
    ClientCert {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "client certificate file {path} holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)"
    )]
    ClientCertEmpty { path: PathBuf },
    #[error("cannot read client key {path}: {source}")]
    ClientKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "client key file {path} holds no private key (expected PEM: -----BEGIN PRIVATE KEY----- or an RSA/EC key)"
    )]
    ClientKeyEmpty { path: PathBuf },
    #[error("client certificate {cert} and key {key} cannot be used together: {source}")]
    ClientIdentity {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("pin_sha256 {0:?} is not 64 hex digits (colons allowed)")]
    BadPin(String),
    #[error("{NO_ROOTS}")]
    NoRoots,
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

impl TlsError {
    /// The setting at fault, as the outputs' tables spell it, so a config
    /// error can point at its key.
    pub fn setting(&self) -> &'static str {
        match self {
            TlsError::CaFile { .. } | TlsError::CaFileEmpty { .. } | TlsError::NoRoots => "ca_file",
            TlsError::BadPin(_) => "pin_sha256",
            TlsError::ClientCert { .. } | TlsError::ClientCertEmpty { .. } => "client_cert",
            TlsError::ClientKey { .. }
            | TlsError::ClientKeyEmpty { .. }
            | TlsError::ClientIdentity { .. } => "client_key",
            TlsError::Rustls(_) => "ca_file",
        }
    }
}

/// Why an https server cannot be verified on a system without root certificates.
pub const NO_ROOTS: &str = "no system root certificates found (install ca-certificates), so no https server can be verified; or set tls.ca_file or tls.pin_sha256";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses a hex fingerprint such as `AB:CD:…` or `abcd…`.
pub fn parse_pin(pin: &str) -> Result<[u8; 32], TlsError> {
    let hex: String = pin.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 {
        return Err(TlsError::BadPin(pin.to_string()));
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16)
            .map_err(|_| TlsError::BadPin(pin.to_string()))?;
    }
    Ok(out)
}

/// SHA-256 of a certificate, lowercase hex, as `pin_sha256` expects.
pub fn fingerprint(cert: &[u8]) -> String {
    Sha256::digest(cert)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl TlsOptions {
    /// Builds the rustls client config of the trickle clients (`[tls]`),
    /// warning when verification is off.
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        if self.insecure {
            tracing::warn!(
                "TLS verification is DISABLED (tls.insecure = true): any server, or anyone in between, is trusted"
            );
        }
        self.client_config_for("tls", None)
    }

    /// Builds the rustls client config these options describe. `setting`
    /// names the table they came from (`tls`, `outputs.hook`), so a refused
    /// pin or a missing root names the key to change; `identity` is
    /// presented to servers that ask for a client certificate. Logs nothing:
    /// the caller warns about `insecure` in its own words, once per use.
    pub fn client_config_for(
        &self,
        setting: &str,
        identity: Option<&ClientIdentity>,
    ) -> Result<ClientConfig, TlsError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let verified = if self.insecure {
            leaf_verifier(builder, Acceptance::Anything, setting)
        } else if let Some(pin) = &self.pin_sha256 {
            leaf_verifier(builder, Acceptance::Pinned(parse_pin(pin)?), setting)
        } else {
            match self.roots() {
                Ok(roots) => builder.with_root_certificates(roots),
                // Plain http:// needs no roots, and a board installed without
                // ca-certificates may talk only to a LAN worker: the missing
                // roots become every https handshake's error, not this one's.
                Err(TlsError::NoRoots) => {
                    tracing::debug!(
                        "no system root certificates: https servers cannot be verified"
                    );
                    leaf_verifier(builder, Acceptance::Nothing, setting)
                }
                Err(e) => return Err(e),
            }
        };
        match identity {
            None => Ok(verified.with_no_client_auth()),
            Some(id) => {
                let (certs, key) = id.load()?;
                verified
                    .with_client_auth_cert(certs, key)
                    .map_err(|source| TlsError::ClientIdentity {
                        cert: id.cert_file.clone(),
                        key: id.key_file.clone(),
                        source,
                    })
            }
        }
    }

    /// A config that accepts whatever certificate the server presents and
    /// records its fingerprint in the returned [`Seen`]: trust on first use,
    /// for peers (orchestrators) whose self-signed certificate is pinned once
    /// seen. The handshake's signature is still checked.
    pub fn first_use_config() -> Result<(ClientConfig, Arc<Seen>), TlsError> {
        let seen = Arc::new(Seen::default());
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let config =
            leaf_verifier(builder, Acceptance::FirstUse(seen.clone()), "tls").with_no_client_auth();
        Ok((config, seen))
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        if let Some(path) = &self.ca_file {
            let pem = std::fs::read(path).map_err(|source| TlsError::CaFile {
                path: path.clone(),
                source,
            })?;
            for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(TlsError::CaFileEmpty { path: path.clone() });
            }
            return Ok(roots);
        }
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return Err(TlsError::NoRoots);
        }
        Ok(roots)
    }
}

fn leaf_verifier(
    builder: ConfigBuilder<ClientConfig, WantsVerifier>,
    accept: Acceptance,
    setting: &str,
) -> ConfigBuilder<ClientConfig, WantsClientCert> {
    builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(LeafVerifier {
            accept,
            setting: setting.to_string(),
            provider: provider(),
        }))
}

/// Which certificates a non-CA verifier accepts.
#[derive(Debug)]
enum Acceptance {
    /// Exactly the leaf with this SHA-256, whoever signed it.
    Pinned([u8; 32]),
    /// Anything; only built when the user asked for `insecure`.
    Anything,
    /// Nothing: the system has no roots and no CA file or pin was given.
    Nothing,
    /// Anything, recording what it saw (trust on first use).
    FirstUse(Arc<Seen>),
}

/// What a first-use connection saw: the certificate to pin.
#[derive(Debug, Default)]
pub struct Seen(Mutex<Option<String>>);

impl Seen {
    pub fn fingerprint(&self) -> Option<String> {
        self.0.lock_ignoring_poison().clone()
    }
}

/// Verifier for pins and `insecure`. Handshake signatures are still checked,
/// so with a pin the peer must hold that certificate's private key.
#[derive(Debug)]
struct LeafVerifier {
    accept: Acceptance,
    /// The table the options came from, named in refusals.
    setting: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for LeafVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.accept {
            Acceptance::Anything => Ok(ServerCertVerified::assertion()),
            Acceptance::FirstUse(seen) => {
                *seen.0.lock_ignoring_poison() = Some(fingerprint(end_entity.as_ref()));
                Ok(ServerCertVerified::assertion())
            }
            Acceptance::Nothing if self.setting == "tls" => {
                Err(rustls::Error::General(NO_ROOTS.into()))
            }
            Acceptance::Nothing => Err(rustls::Error::General(format!(
                "no system root certificates found (install ca-certificates), so no https server can be verified; or set {0}.ca_file or {0}.pin_sha256",
                self.setting
            ))),
            Acceptance::Pinned(pin) => {
                let got: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
                if got == *pin {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(rustls::Error::General(format!(
                        "certificate fingerprint {} does not match {}.pin_sha256",
                        fingerprint(end_entity.as_ref()),
                        self.setting
                    )))
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_parse_with_or_without_colons() {
        let hex = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(parse_pin(&hex).unwrap(), [0xab; 32]);
        assert_eq!(parse_pin(&colons).unwrap(), [0xab; 32]);
        assert!(matches!(parse_pin("abcd"), Err(TlsError::BadPin(_))));
        assert!(matches!(
            parse_pin(&"zz".repeat(32)),
            Err(TlsError::BadPin(_))
        ));
    }

    #[test]
    fn missing_ca_file_names_the_path() {
        let opts = TlsOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let err = opts.client_config().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }
}
