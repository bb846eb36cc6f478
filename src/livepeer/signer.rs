//! The remote signer: an edge device holds no Ethereum key, so a
//! `livepeer -remoteSigner` (or a hosted one) signs for it. Its HTTP API:
//! `/sign-orchestrator-info` (the address and signature for
//! `OrchestratorRequest`), `/generate-live-payment` (a payment and segment
//! credentials for one orchestrator session, with an opaque `state` echoed
//! back on the next call) and `/discover-orchestrators`.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::{HeaderMap, HeaderValue, Method};
use prost::Message;
use serde_json::{Value, json};

use super::error::LivepeerError;
use super::http::{bytes_body, call};
use super::proto::{Capabilities, OrchestratorInfo};
use crate::trickle::HttpClient;

const SIGNER_DEADLINE: Duration = Duration::from_secs(5);

/// The signer's statuses that are not plain failures.
pub const REFRESH_SESSION: u16 = 480;
pub const PRICE_TOO_HIGH: u16 = 481;
pub const SKIP_CYCLE: u16 = 482;

/// The broadcaster identity the signer signs with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignerIdentity {
    pub address: Vec<u8>,
    pub sig: Vec<u8>,
}

/// One payment: the two headers, base64 as the signer wrote them.
#[derive(Debug, Clone, PartialEq)]
pub struct LivePayment {
    pub payment: String,
    pub seg_creds: String,
    /// Echoed on the next call for the same session.
    pub state: Value,
}

#[derive(Debug, Clone)]
pub struct RemoteSigner {
    url: String,
    headers: HeaderMap,
    http: HttpClient,
}

fn hex_bytes(s: &str, what: &str, url: &str) -> Result<Vec<u8>, LivepeerError> {
    let hex = s.trim().trim_start_matches("0x").trim_start_matches("0X");
    let bad = || LivepeerError::Signer {
        url: url.to_string(),
        reason: format!("{what} {s:?} is not hex"),
    };
    if !hex.len().is_multiple_of(2) {
        return Err(bad());
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad()))
        .collect()
}

impl RemoteSigner {
    /// A signer at `url`; `headers` go with every call (`Authorization`, …).
    pub fn new(url: &str, headers: HeaderMap, http: HttpClient) -> Self {
        Self {
            url: url.trim_end_matches('/').to_string(),
            headers,
            http,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    async fn post_json(&self, path: &str, body: &Value) -> Result<Value, LivepeerError> {
        let url = format!("{}{path}", self.url);
        let mut headers = self.headers.clone();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let bytes = call(
            &self.http,
            Method::POST,
            &url,
            &headers,
            bytes_body(body.to_string()),
            SIGNER_DEADLINE,
        )
        .await?;
        serde_json::from_slice(&bytes).map_err(|e| LivepeerError::Signer {
            url,
            reason: format!("the answer is not JSON: {e}"),
        })
    }

    /// `POST /sign-orchestrator-info`: the address and signature that go in
    /// every `OrchestratorRequest`.
    pub async fn sign_orchestrator_info(&self) -> Result<SignerIdentity, LivepeerError> {
        let url = format!("{}/sign-orchestrator-info", self.url);
        let v = self
            .post_json("/sign-orchestrator-info", &json!({}))
            .await?;
        let field = |name: &str| v.get(name).and_then(Value::as_str).unwrap_or("");
        let address = hex_bytes(field("address"), "address", &url)?;
        if address.len() != 20 {
            return Err(LivepeerError::Signer {
                url,
                reason: format!("address is {} bytes, not 20", address.len()),
            });
        }
        let sig = hex_bytes(field("signature"), "signature", &url)?;
        Ok(SignerIdentity { address, sig })
    }

    /// `POST /generate-live-payment` for the session `info`; `manifest_id`
    /// once the job has one, `state` from the previous payment.
    pub async fn generate_live_payment(
        &self,
        info: &OrchestratorInfo,
        capabilities: &Capabilities,
        manifest_id: Option<&str>,
        state: Option<&Value>,
    ) -> Result<LivePayment, LivepeerError> {
        let url = format!("{}/generate-live-payment", self.url);
        let mut body = json!({
            "orchestrator": BASE64.encode(info.encode_to_vec()),
            "type": "lv2v",
            "capabilities": BASE64.encode(capabilities.encode_to_vec()),
        });
        if let Some(m) = manifest_id {
            body["ManifestID"] = m.into();
        }
        if let Some(s) = state {
            body["state"] = s.clone();
        }
        let v = self.post_json("/generate-live-payment", &body).await?;
        let invalid = |reason: &str| LivepeerError::Signer {
            url: url.clone(),
            reason: reason.to_string(),
        };
        let payment = v
            .get("payment")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| invalid("the answer has no payment"))?;
        let seg_creds = v
            .get("segCreds")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| invalid("the answer has no segCreds"))?;
        let state = v
            .get("state")
            .filter(|s| s.is_object())
            .ok_or_else(|| invalid("the answer has no state object"))?;
        Ok(LivePayment {
            payment: payment.to_string(),
            seg_creds: seg_creds.to_string(),
            state: state.clone(),
        })
    }

    /// `GET /discover-orchestrators?caps=…`: addresses, as a discovery URL
    /// answers.
    pub async fn discover_orchestrators(
        &self,
        caps: Option<&str>,
    ) -> Result<Vec<String>, LivepeerError> {
        super::discovery::fetch_addresses(
            &self.http,
            &format!("{}/discover-orchestrators", self.url),
            &self.headers,
            caps,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_with_or_without_prefix() {
        assert_eq!(hex_bytes("0x0a0B", "x", "u").unwrap(), vec![10, 11]);
        assert_eq!(hex_bytes("", "x", "u").unwrap(), Vec::<u8>::new());
        assert!(hex_bytes("0xabc", "x", "u").is_err());
        assert!(hex_bytes("zz", "x", "u").is_err());
    }
}
