//! The remote signer: an edge device holds no Ethereum key, so a
//! `livepeer -remoteSigner` (or a hosted one) signs for it. Its HTTP API:
//! `/sign-orchestrator-info` (the address and signature for
//! `OrchestratorRequest`), `/generate-live-payment` (a payment and segment
//! credentials for one orchestrator session, with an opaque `state` echoed
//! back on the next call), `/sign-byoc-job` (the sender and signature of a
//! BYOC job request, as Livepeer's Python SDK asks for them) and
//! `/discover-orchestrators`.

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
    /// The address as the signer wrote it: a BYOC orchestrator verifies the
    /// signature over this very text (`Livepeer-Eth-Address`), so it is
    /// passed on unchanged, checksum case included.
    pub address_text: String,
    /// The signature as the signer wrote it (`0x` + hex).
    pub sig_text: String,
}

/// A BYOC job request's sender and signature (`/sign-byoc-job`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByocSignature {
    pub sender: String,
    pub signature: String,
}

/// The fields of a BYOC job request that `/sign-byoc-job` signs: `request`
/// and `parameters` are the JSON strings exactly as they go in the
/// `Livepeer` header.
#[derive(Debug, Clone, Copy)]
pub struct ByocJobFields<'a> {
    pub id: &'a str,
    pub capability: &'a str,
    pub request: &'a str,
    pub parameters: &'a str,
    pub timeout_seconds: u32,
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

/// A non-empty string field of a signer's answer, trimmed.
fn required_str(v: &Value, name: &str, url: &str) -> Result<String, LivepeerError> {
    v.get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| LivepeerError::Signer {
            url: url.to_string(),
            reason: format!("the answer has no {name}"),
        })
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
        self.post_json_with(path, body, &[]).await
    }

    async fn post_json_with(
        &self,
        path: &str,
        body: &Value,
        extra: &[(&'static str, HeaderValue)],
    ) -> Result<Value, LivepeerError> {
        let url = format!("{}{path}", self.url);
        let mut headers = self.headers.clone();
        for (name, value) in extra {
            headers.insert(*name, value.clone());
        }
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
        Ok(SignerIdentity {
            address,
            sig,
            address_text: field("address").trim().to_string(),
            sig_text: field("signature").trim().to_string(),
        })
    }

    /// `POST /sign-byoc-job`: the sender and signature that go in a BYOC
    /// job request's `Livepeer` header.
    pub async fn sign_byoc_job(
        &self,
        job: ByocJobFields<'_>,
    ) -> Result<ByocSignature, LivepeerError> {
        let url = format!("{}/sign-byoc-job", self.url);
        let body = json!({
            "id": job.id,
            "capability": job.capability,
            "request": job.request,
            "parameters": job.parameters,
            "timeout_seconds": job.timeout_seconds,
        });
        let v = self.post_json("/sign-byoc-job", &body).await?;
        let field = |name: &str| required_str(&v, name, &url);
        let signature = field("signature")?;
        hex_bytes(&signature, "signature", &url)?;
        Ok(ByocSignature {
            sender: field("sender")?,
            signature,
        })
    }

    /// `POST /generate-live-payment` for a BYOC capability, as Livepeer's
    /// Python SDK asks: the orchestrator's info, `type = "lv2v"`, the
    /// capability in the body and in `Livepeer-Capability`; `state` from
    /// the previous payment when there is one.
    pub async fn generate_byoc_payment(
        &self,
        info: &OrchestratorInfo,
        capability: &str,
        state: Option<&Value>,
    ) -> Result<LivePayment, LivepeerError> {
        let url = format!("{}/generate-live-payment", self.url);
        let mut body = json!({
            "orchestrator": BASE64.encode(info.encode_to_vec()),
            "type": "lv2v",
            "capability": capability,
        });
        if let Some(s) = state {
            body["state"] = s.clone();
        }
        let cap = HeaderValue::from_str(capability).map_err(|_| LivepeerError::Signer {
            url: url.clone(),
            reason: format!("capability {capability:?} cannot be sent as an HTTP header"),
        })?;
        let v = self
            .post_json_with(
                "/generate-live-payment",
                &body,
                &[("livepeer-capability", cap)],
            )
            .await?;
        payment_from(&v, &url)
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
        let payment = payment_from(&v, &url)?;
        if !payment.state.is_object() {
            return Err(LivepeerError::Signer {
                url,
                reason: "the answer has no state object".into(),
            });
        }
        Ok(payment)
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

/// A payment answer's `payment` and `segCreds` (both required: a priced
/// orchestrator refuses a request without them) and `state` (null if none).
fn payment_from(v: &Value, url: &str) -> Result<LivePayment, LivepeerError> {
    let field = |name: &str| required_str(v, name, url);
    Ok(LivePayment {
        payment: field("payment")?,
        seg_creds: field("segCreds")?,
        state: v.get("state").cloned().unwrap_or(Value::Null),
    })
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
