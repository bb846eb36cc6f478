//! The live-video-to-video job calls: `POST {transcoder}/live-video-to-video`
//! (the channels come back in the JSON answer) and `POST {transcoder}/payment`
//! while streaming. Refusals are plain text, shown with their status.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method};
use prost::Message;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::error::LivepeerError;
use super::http::{bytes_body, call};
use super::payment::PaymentHeaders;
use super::proto::{OrchestratorInfo, PaymentResult};
use crate::trickle::HttpClient;

/// How long a start may take (the orchestrator starts the runner first).
pub const START_DEADLINE: Duration = Duration::from_secs(30);
pub const PAYMENT_DEADLINE: Duration = Duration::from_secs(5);

/// The start request's body.
#[derive(Debug, Clone, PartialEq)]
pub struct StartRequest {
    /// The pipeline to run; a real orchestrator fails the start without it.
    pub model_id: String,
    pub params: Map<String, Value>,
    pub gateway_request_id: String,
    pub stream_id: String,
}

/// A 200's JSON: absolute channel URLs under `/ai/trickle/`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StartAnswer {
    pub publish_url: String,
    #[serde(default)]
    pub subscribe_url: Option<String>,
    #[serde(default)]
    pub control_url: Option<String>,
    #[serde(default)]
    pub events_url: Option<String>,
    pub manifest_id: String,
}

fn payment_headers(p: &PaymentHeaders, url: &str) -> Result<HeaderMap, LivepeerError> {
    let value = |v: &str, what: &str| {
        HeaderValue::from_str(v).map_err(|_| LivepeerError::Orchestrator {
            url: url.to_string(),
            reason: format!("{what} cannot be sent as an HTTP header"),
        })
    };
    let mut h = HeaderMap::new();
    h.insert("livepeer-payment", value(&p.payment, "the payment")?);
    h.insert(
        "livepeer-segment",
        value(&p.segment, "the segment credentials")?,
    );
    Ok(h)
}

fn base(transcoder: &str) -> &str {
    transcoder.trim_end_matches('/')
}

/// Starts the job; a refusal keeps its status and text.
pub async fn start(
    http: &HttpClient,
    transcoder: &str,
    payment: &PaymentHeaders,
    req: &StartRequest,
) -> Result<StartAnswer, LivepeerError> {
    let url = format!("{}/live-video-to-video", base(transcoder));
    let mut headers = payment_headers(payment, &url)?;
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = json!({
        "model_id": req.model_id,
        "params": req.params,
        "gateway_request_id": req.gateway_request_id,
        "stream_id": req.stream_id,
    });
    let bytes = call(
        http,
        Method::POST,
        &url,
        &headers,
        bytes_body(body.to_string()),
        START_DEADLINE,
    )
    .await?;
    serde_json::from_slice(&bytes).map_err(|e| LivepeerError::Orchestrator {
        url,
        reason: format!(
            "the start answer is not the expected JSON (publish_url and manifest_id are required): {e}"
        ),
    })
}

/// One payment; the answer's refreshed `OrchestratorInfo`, when it has one.
pub async fn pay(
    http: &HttpClient,
    transcoder: &str,
    payment: &PaymentHeaders,
) -> Result<Option<OrchestratorInfo>, LivepeerError> {
    let url = format!("{}/payment", base(transcoder));
    let headers = payment_headers(payment, &url)?;
    let bytes = call(
        http,
        Method::POST,
        &url,
        &headers,
        bytes_body(Vec::new()),
        PAYMENT_DEADLINE,
    )
    .await?;
    Ok(PaymentResult::decode(bytes).ok().and_then(|r| r.info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_answer_needs_a_manifest_id() {
        let ok: StartAnswer =
            serde_json::from_str(r#"{"publish_url":"p","manifest_id":"m","events_url":"e"}"#)
                .unwrap();
        assert_eq!(ok.events_url.as_deref(), Some("e"));
        assert!(serde_json::from_str::<StartAnswer>(r#"{"publish_url":"p"}"#).is_err());
    }
}
