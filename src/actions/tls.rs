//! The TLS settings the webhook and MQTT outputs share: checked with the
//! output's other fields, and built with the crate's one client TLS policy
//! (`trickle::tls`), so an output verifies a server exactly as the trickle
//! clients do.

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;

use super::config::{MqttConfig, WebhookConfig};
use super::error::ActionError;
use crate::trickle::TlsOptions;
use crate::trickle::tls::{ClientIdentity, parse_pin};

/// One output's TLS settings, whatever its kind.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutputTls<'a> {
    pub ca_file: Option<&'a Path>,
    pub pin_sha256: Option<&'a str>,
    pub insecure: bool,
    pub client_cert: Option<&'a Path>,
    pub client_key: Option<&'a Path>,
}

impl<'a> From<&'a WebhookConfig> for OutputTls<'a> {
    fn from(c: &'a WebhookConfig) -> Self {
        OutputTls {
            ca_file: c.ca_file.as_deref(),
            pin_sha256: c.pin_sha256.as_deref(),
            insecure: c.insecure,
            client_cert: None,
            client_key: None,
        }
    }
}

impl<'a> From<&'a MqttConfig> for OutputTls<'a> {
    fn from(c: &'a MqttConfig) -> Self {
        OutputTls {
            ca_file: c.ca_file.as_deref(),
            pin_sha256: c.pin_sha256.as_deref(),
            insecure: c.insecure,
            client_cert: c.client_cert.as_deref(),
            client_key: c.client_key.as_deref(),
        }
    }
}

impl OutputTls<'_> {
    /// The settings that are set, by field name, in table order.
    fn set_fields(&self) -> Vec<&'static str> {
        [
            ("ca_file", self.ca_file.is_some()),
            ("pin_sha256", self.pin_sha256.is_some()),
            ("insecure", self.insecure),
            ("client_cert", self.client_cert.is_some()),
            ("client_key", self.client_key.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, on)| on.then_some(k))
        .collect()
    }

    /// What the config alone can show. `encrypted` says whether the URL's
    /// scheme is the TLS one (`tls_scheme`, named in the refusal of a TLS
    /// setting on a plain URL: it would protect nothing, silently).
    pub fn check(
        &self,
        output: &str,
        encrypted: bool,
        url_field: &'static str,
        tls_scheme: &str,
    ) -> Result<(), ActionError> {
        let invalid = |field, reason: String| ActionError::Invalid {
            output: output.into(),
            field,
            reason,
        };
        if !encrypted {
            if let Some(field) = self.set_fields().first() {
                return Err(invalid(
                    field,
                    format!("applies to {tls_scheme} only, and `{url_field}` is not one"),
                ));
            }
            return Ok(());
        }
        let trust: Vec<&str> = self
            .set_fields()
            .into_iter()
            .filter(|f| ["ca_file", "pin_sha256", "insecure"].contains(f))
            .collect();
        if let [first, second, ..] = trust[..] {
            return Err(invalid(
                second,
                format!(
                    "`{first}` and `{second}` contradict each other: choose one way to trust the server"
                ),
            ));
        }
        if let Some(pin) = self.pin_sha256 {
            parse_pin(pin).map_err(|e| ActionError::Tls {
                output: output.into(),
                field: "pin_sha256",
                source: Box::new(e),
            })?;
        }
        match (self.client_cert, self.client_key) {
            (Some(_), None) => Err(invalid(
                "client_key",
                "missing: `client_cert` needs the PEM file of its private key".into(),
            )),
            (None, Some(_)) => Err(invalid(
                "client_cert",
                "missing: `client_key` needs the PEM file of its certificate".into(),
            )),
            _ => Ok(()),
        }
    }

    /// The rustls config for this output: reads the CA, certificate and key
    /// files, so a missing or non-PEM file is refused here, naming its field.
    /// Call after [`OutputTls::check`].
    pub fn client_config(&self, output: &str) -> Result<Arc<ClientConfig>, ActionError> {
        let options = TlsOptions {
            ca_file: self.ca_file.map(Path::to_path_buf),
            pin_sha256: self.pin_sha256.map(str::to_string),
            insecure: self.insecure,
        };
        let identity = match (self.client_cert, self.client_key) {
            (Some(cert), Some(key)) => Some(ClientIdentity {
                cert_file: cert.to_path_buf(),
                key_file: key.to_path_buf(),
            }),
            _ => None,
        };
        options
            .client_config_for(&format!("outputs.{output}"), identity.as_ref())
            .map(Arc::new)
            .map_err(|source| ActionError::Tls {
                output: output.into(),
                field: source.setting(),
                source: Box::new(source),
            })
    }
}

/// The warning an output with `insecure = true` gives at every start and
/// `check` prints: verification off must never go unnoticed.
pub(crate) fn insecure_warning(output: &str, peer: &str) -> String {
    format!(
        "outputs.{output}.insecure = true: the {peer}'s certificate is NOT verified; anyone in between can read and forge what this output sends"
    )
}
