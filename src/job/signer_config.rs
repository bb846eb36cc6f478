//! The remote-signer settings both Livepeer modes take (`signer_url`,
//! `signer_headers`, `signer_headers_file`), resolved at each job start so
//! a rotated headers file is picked up without a reload.

use std::collections::HashMap;

use super::error::JobError;
use crate::config::SignerSettings;
use crate::livepeer::discovery::header_map;
use crate::livepeer::signer::RemoteSigner;
use crate::trickle::HttpClient;

fn bad(reason: String) -> JobError {
    JobError::Orchestrator {
        url: "remote signer".into(),
        reason,
    }
}

/// `signer_headers`, then those of `signer_headers_file` (a JSON object of
/// strings) over them.
pub fn signer_headers(s: &SignerSettings<'_>) -> Result<HashMap<String, String>, JobError> {
    let mut headers: HashMap<String, String> = s
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    if let Some(path) = s.headers_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            bad(format!(
                "cannot read signer headers file {}: {e}",
                path.display()
            ))
        })?;
        let extra: HashMap<String, String> = serde_json::from_str(&text).map_err(|e| {
            bad(format!(
                "signer headers file {}: expected a JSON object of strings: {e}",
                path.display()
            ))
        })?;
        headers.extend(extra);
    }
    Ok(headers)
}

/// The configured signer, if any, with its headers.
pub fn remote_signer(
    s: &SignerSettings<'_>,
    http: &HttpClient,
) -> Result<Option<RemoteSigner>, JobError> {
    let Some(url) = s.url else { return Ok(None) };
    let headers = header_map(&signer_headers(s)?).map_err(bad)?;
    Ok(Some(RemoteSigner::new(url, headers, http.clone())))
}
