//! Client TLS: verified by default, with the escape hatches real deployments need.
//!
//! Orchestrators often present self-signed certificates and Livepeer's own
//! clients simply skip verification. We offer, in order of preference: the
//! system roots (default), a CA file, a pinned leaf-certificate SHA-256, and
//! an explicit `insecure` switch that logs a warning every time it is used.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

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

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read CA file {path}: {source}")]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CA file {path} holds no usable certificate")]
    CaFileEmpty { path: PathBuf },
    #[error("pin_sha256 {0:?} is not 64 hex digits (colons allowed)")]
    BadPin(String),
    #[error("{NO_ROOTS}")]
    NoRoots,
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
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
    /// Builds the rustls client config these options describe.
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let config = if self.insecure {
            tracing::warn!(
                "TLS verification is DISABLED (tls.insecure = true): any server, or anyone in between, is trusted"
            );
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(LeafVerifier {
                    accept: Acceptance::Anything,
                    provider: provider(),
                }))
                .with_no_client_auth()
        } else if let Some(pin) = &self.pin_sha256 {
            let pin = parse_pin(pin)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(LeafVerifier {
                    accept: Acceptance::Pinned(pin),
                    provider: provider(),
                }))
                .with_no_client_auth()
        } else {
            match self.roots() {
                Ok(roots) => builder.with_root_certificates(roots).with_no_client_auth(),
                // Plain http:// needs no roots, and a board installed without
                // ca-certificates may talk only to a LAN worker: the missing
                // roots become every https handshake's error, not this one's.
                Err(TlsError::NoRoots) => {
                    tracing::debug!(
                        "no system root certificates: https servers cannot be verified"
                    );
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(LeafVerifier {
                            accept: Acceptance::Nothing,
                            provider: provider(),
                        }))
                        .with_no_client_auth()
                }
                Err(e) => return Err(e),
            }
        };
        Ok(config)
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

/// Which certificates a non-CA verifier accepts.
#[derive(Debug)]
enum Acceptance {
    /// Exactly the leaf with this SHA-256, whoever signed it.
    Pinned([u8; 32]),
    /// Anything; only built when the user asked for `insecure`.
    Anything,
    /// Nothing: the system has no roots and no CA file or pin was given.
    Nothing,
}

/// Verifier for pins and `insecure`. Handshake signatures are still checked,
/// so with a pin the peer must hold that certificate's private key.
#[derive(Debug)]
struct LeafVerifier {
    accept: Acceptance,
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
            Acceptance::Nothing => Err(rustls::Error::General(NO_ROOTS.into())),
            Acceptance::Pinned(pin) => {
                let got: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
                if got == *pin {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(rustls::Error::General(format!(
                        "certificate fingerprint {} does not match tls.pin_sha256",
                        fingerprint(end_entity.as_ref())
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
