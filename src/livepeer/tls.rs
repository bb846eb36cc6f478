//! How an orchestrator's certificate is checked. Orchestrators present
//! self-signed certificates regenerated at will, so the system roots are of
//! no use; Livepeer's Go gateway skips verification altogether and the SDK
//! pins the certificate it first sees, in memory. We offer three explicit
//! choices, never a silent skip:
//!
//! - `tofu` (default): the first certificate seen for `host:port` is pinned
//!   and its SHA-256 kept on disk under the pins directory, so a restart
//!   does not trust a new one blindly; a changed certificate is refused with
//!   both fingerprints and the file to delete.
//! - `pin`: a `pin_sha256` per `host:port`, given in the config.
//! - `insecure`: any certificate, with a warning at every connection.
//!
//! Once an orchestrator's pin is known, every later request to it (start,
//! `/payment`, its trickle channels) uses the same pin through
//! [`TlsOptions::pin_sha256`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::Uri;
use rustls::ClientConfig;

use super::error::LivepeerError;
use crate::trickle::TlsOptions;
pub use crate::trickle::tls::Seen;
use crate::trickle::tls::parse_pin;

/// The user's choice for orchestrator certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrchestratorTls {
    /// Trust on first use; pins kept as files in this directory.
    Tofu { pins_dir: PathBuf },
    /// Only these certificates, by `host:port`.
    Pins(BTreeMap<String, String>),
    /// Any certificate (warned about at every connection).
    Insecure,
    /// The agent's own `[tls]` options, as its other HTTPS requests to the
    /// same peer use (a BYOC orchestrator's gRPC port is its HTTP port).
    Options(TlsOptions),
}

/// `host:port` of an orchestrator URL (port 443 for `https` without one).
pub fn target(url: &str) -> Result<String, LivepeerError> {
    let uri: Uri = url.parse().map_err(|e| LivepeerError::Orchestrator {
        url: url.to_string(),
        reason: format!("not a URL: {e}"),
    })?;
    let host = uri.host().ok_or_else(|| LivepeerError::Orchestrator {
        url: url.to_string(),
        reason: "no host".into(),
    })?;
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("http") {
            80
        } else {
            443
        });
    Ok(format!("{host}:{port}"))
}

/// The file holding the pin of `target` under `dir`.
pub fn pin_file(dir: &Path, target: &str) -> PathBuf {
    let name: String = target
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{name}.sha256"))
}

/// How one connection to one orchestrator checks its certificate.
#[derive(Debug, Clone)]
pub enum TlsPlan {
    /// A known pin (configured or stored), or `insecure`.
    Known(TlsOptions),
    /// First contact under `tofu`: accept what is presented and keep it.
    FirstUse { file: PathBuf },
}

impl OrchestratorTls {
    /// The plan for `url`.
    pub fn plan(&self, url: &str) -> Result<TlsPlan, LivepeerError> {
        let target = target(url)?;
        match self {
            OrchestratorTls::Insecure => Ok(TlsPlan::Known(TlsOptions {
                insecure: true,
                ..Default::default()
            })),
            OrchestratorTls::Options(opts) => Ok(TlsPlan::Known(opts.clone())),
            OrchestratorTls::Pins(pins) => {
                let pin = pins
                    .get(&target)
                    .ok_or_else(|| LivepeerError::Orchestrator {
                        url: url.to_string(),
                        reason: format!("no pin for {target} in job.orchestrator_pins"),
                    })?;
                Ok(TlsPlan::Known(pinned(pin)))
            }
            OrchestratorTls::Tofu { pins_dir } => {
                let file = pin_file(pins_dir, &target);
                match std::fs::read_to_string(&file) {
                    Ok(pin) => {
                        parse_pin(pin.trim())?;
                        Ok(TlsPlan::Known(pinned(pin.trim())))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        Ok(TlsPlan::FirstUse { file })
                    }
                    Err(source) => Err(LivepeerError::PinStore { path: file, source }),
                }
            }
        }
    }
}

fn pinned(pin: &str) -> TlsOptions {
    TlsOptions {
        pin_sha256: Some(pin.to_string()),
        ..Default::default()
    }
}

/// Keeps `fingerprint` as the pin of a first-use target.
pub fn store_pin(file: &Path, fingerprint: &str) -> Result<(), LivepeerError> {
    let err = |source| LivepeerError::PinStore {
        path: file.to_path_buf(),
        source,
    };
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    std::fs::write(file, format!("{fingerprint}\n")).map_err(err)
}

/// The rustls config for `plan`; a first use also returns where the seen
/// certificate is recorded.
pub fn client_config(plan: &TlsPlan) -> Result<(ClientConfig, Option<Arc<Seen>>), LivepeerError> {
    match plan {
        TlsPlan::Known(opts) => Ok((opts.client_config()?, None)),
        TlsPlan::FirstUse { .. } => {
            let (config, seen) = TlsOptions::first_use_config()?;
            Ok((config, Some(seen)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_default_the_port_by_scheme() {
        assert_eq!(target("https://o.example:8935").unwrap(), "o.example:8935");
        assert_eq!(target("https://o.example").unwrap(), "o.example:443");
        assert_eq!(target("http://[::1]:9").unwrap(), "[::1]:9");
    }

    #[test]
    fn pin_files_are_named_by_target() {
        let f = pin_file(Path::new("/s"), "[::1]:8935");
        assert_eq!(f, Path::new("/s/___1__8935.sha256"));
        assert_eq!(
            pin_file(Path::new("/s"), "o.example:8935"),
            Path::new("/s/o.example_8935.sha256")
        );
    }

    #[test]
    fn pins_mode_refuses_an_unlisted_orchestrator() {
        let tls = OrchestratorTls::Pins(BTreeMap::new());
        let err = tls.plan("https://o.example:8935").unwrap_err().to_string();
        assert!(err.contains("no pin for o.example:8935"), "{err}");
    }
}
