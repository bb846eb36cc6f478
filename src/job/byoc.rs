//! `mode = "byoc"`: a stream on a Livepeer orchestrator's bring-your-own-
//! container capability, as Livepeer's gateway starts one.
//!
//! 1. `GET {orchestrator}/process/token` (headers `Livepeer-Eth-Address`,
//!    `Livepeer-Capability`) answers the capability's price, capacity and the
//!    `service_addr` the stream goes to.
//! 2. `POST {service_addr}/ai/stream/start` with the job request in the
//!    `Livepeer` header and `{"params": …}` as the body. The orchestrator
//!    creates the channels, forwards the start to the container's
//!    `/stream/start`, and answers 200 with an empty body and the channel
//!    URLs in `X-Publish-Url`, `X-Subscribe-Url`, `X-Control-Url`,
//!    `X-Events-Url` and `X-Data-Url`.
//! 3. Parameter updates go to `/ai/stream/update` (forwarded to the
//!    container's `/stream/params`), stop to `/ai/stream/stop`; both name the
//!    stream in the request's `{"stream_id": …}`.
//!
//! Off-chain orchestrators (no price) need no payment. A priced capability
//! needs tickets and a job-request signature made with the sender's own
//! Ethereum key: Livepeer's gateway signs both itself (go-livepeer
//! `byoc/payment.go`), and Livepeer's remote signer, which the `livepeer`
//! mode uses, signs `live`, `lv2v` and `fixed` payments but neither BYOC
//! job requests nor their tickets. An edge agent holds no key, so such a
//! start is refused here with the price, instead of streaming into the
//! orchestrator's `402 Insufficient balance` a minute later.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::{HeaderValue, Method, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{Value, json};

use super::JobUrls;
use super::error::JobError;
use crate::config::ByocJob;
use crate::trickle::HttpClient;
use crate::trickle::client::RequestBody;

/// The most of an answer body kept for an error message.
const BODY_IN_ERRORS: usize = 512;

/// `GET /process/token`'s answer (go-livepeer's `JobToken`), as much as this
/// client uses. Every field is optional there (`omitempty`).
#[derive(Debug, Default, Deserialize)]
pub struct JobToken {
    #[serde(default)]
    pub service_addr: Option<String>,
    #[serde(default)]
    pub price: Option<JobPrice>,
    #[serde(default)]
    pub available_capacity: i64,
    #[serde(default)]
    pub balance: i64,
}

/// A capability's price: `price_per_unit` wei per `pixels_per_unit` units.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct JobPrice {
    #[serde(default, rename = "pricePerUnit")]
    pub price_per_unit: i64,
    #[serde(default, rename = "pixelsPerUnit")]
    pub pixels_per_unit: i64,
}

impl JobPrice {
    /// Whether the orchestrator charges for this capability.
    pub fn is_priced(&self) -> bool {
        self.price_per_unit > 0
    }
}

/// A started BYOC stream: where to send its update and stop calls.
#[derive(Debug, Clone)]
pub struct ByocStream {
    http: HttpClient,
    service_addr: String,
    capability: String,
    stream_id: String,
    timeout_seconds: u32,
}

/// The `Livepeer` header: base64 of go-livepeer's `JobRequest` JSON, where
/// `request` and `parameters` are JSON documents carried as *strings*.
/// Off-chain, `sender` and `sig` are empty (a `sig` must hex-decode, so
/// not even `0x`).
pub fn job_request_header(
    stream_id: &str,
    capability: &str,
    request: &Value,
    parameters: &Value,
    timeout_seconds: u32,
) -> String {
    let job = json!({
        "id": stream_id,
        "request": request.to_string(),
        "parameters": parameters.to_string(),
        "capability": capability,
        "sender": "",
        "sig": "",
        "timeout_seconds": timeout_seconds,
    });
    BASE64.encode(job.to_string())
}

/// `Livepeer-Eth-Address` off-chain: base64 of `{"addr":"","sig":""}`.
fn eth_address_header() -> String {
    BASE64.encode(json!({"addr": "", "sig": ""}).to_string())
}

fn json_body(v: &Value) -> RequestBody {
    Full::new(Bytes::from(v.to_string()))
        .map_err(|never| match never {})
        .boxed()
}

fn header(value: &str, what: &str, url: &str) -> Result<HeaderValue, JobError> {
    HeaderValue::from_str(value).map_err(|_| JobError::Orchestrator {
        url: url.to_string(),
        reason: format!("{what} cannot be sent as an HTTP header"),
    })
}

/// A refusal's body as text, trimmed and cut to a readable length.
fn body_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    match text.char_indices().nth(BODY_IN_ERRORS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// One call with a deadline; a non-2xx answer becomes [`JobError::Refused`]
/// carrying its status and body, as the orchestrator wrote them.
async fn call(
    http: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(&'static str, HeaderValue)],
    body: RequestBody,
    deadline: Duration,
) -> Result<(Response<()>, Bytes), JobError> {
    let fut = async {
        let resp: Response<Incoming> = http.send(method.clone(), url, headers, body).await?;
        let (parts, body) = resp.into_parts();
        let bytes = body
            .collect()
            .await
            .map_err(|e| JobError::Orchestrator {
                url: url.to_string(),
                reason: format!("{method}: reading the answer: {e}"),
            })?
            .to_bytes();
        if !parts.status.is_success() {
            return Err(JobError::Refused {
                method: method.to_string(),
                url: url.to_string(),
                status: parts.status.as_u16(),
                body: body_text(&bytes),
            });
        }
        Ok((Response::from_parts(parts, ()), bytes))
    };
    tokio::time::timeout(deadline, fut)
        .await
        .map_err(|_| JobError::Orchestrator {
            url: url.to_string(),
            reason: format!("{method}: no answer within {deadline:?}"),
        })?
}

/// The headers of `GET /process/token` for `capability`, off-chain.
pub fn token_headers(capability: &str) -> Result<Vec<(&'static str, HeaderValue)>, String> {
    let cap = HeaderValue::from_str(capability)
        .map_err(|_| format!("capability {capability:?} cannot be sent as an HTTP header"))?;
    let eth = HeaderValue::from_str(&eth_address_header()).map_err(|e| e.to_string())?;
    Ok(vec![
        ("livepeer-eth-address", eth),
        ("livepeer-capability", cap),
    ])
}

/// Asks the orchestrator about `capability`: price, capacity, service address.
pub async fn fetch_token(
    http: &HttpClient,
    orchestrator: &str,
    capability: &str,
) -> Result<JobToken, JobError> {
    let url = format!("{}/process/token", orchestrator.trim_end_matches('/'));
    let headers = token_headers(capability).map_err(|reason| JobError::Orchestrator {
        url: url.clone(),
        reason,
    })?;
    let (_, bytes) = call(
        http,
        Method::GET,
        &url,
        &headers,
        crate::trickle::client::empty_body(),
        Duration::from_secs(5),
    )
    .await?;
    serde_json::from_slice(&bytes).map_err(|e| JobError::Orchestrator {
        url,
        reason: format!("the token is not the expected JSON: {e}"),
    })
}

/// The channel URLs from a start's `X-*-Url` headers.
fn urls_from(resp: &Response<()>, url: &str) -> Result<JobUrls, JobError> {
    let get = |name: &str| -> Option<String> {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let publish = get("x-publish-url").ok_or_else(|| JobError::Orchestrator {
        url: url.to_string(),
        reason:
            "the start answered no X-Publish-Url: the orchestrator gave nowhere to send the camera"
                .into(),
    })?;
    Ok(JobUrls {
        publish,
        subscribe: get("x-subscribe-url"),
        control: get("x-control-url"),
        events: get("x-events-url"),
        data: get("x-data-url"),
    })
}

impl ByocStream {
    /// Starts a stream named `stream_id` on `job`'s orchestrator.
    pub async fn start(
        job: &ByocJob,
        params: &serde_json::Map<String, Value>,
        http: HttpClient,
        stream_id: &str,
    ) -> Result<(Self, JobUrls), JobError> {
        let token = fetch_token(&http, &job.orchestrator_url, &job.capability).await?;
        if let Some(price) = token.price.filter(JobPrice::is_priced) {
            return Err(JobError::Orchestrator {
                url: job.orchestrator_url.clone(),
                reason: format!(
                    "capability {:?} is priced ({} wei per {} units); paying for it needs the \
                     sender's own Ethereum key (Livepeer's remote signer signs no BYOC job \
                     requests or tickets): use an off-chain orchestrator or capability",
                    job.capability,
                    price.price_per_unit,
                    price.pixels_per_unit.max(1)
                ),
            });
        }
        let service_addr = token
            .service_addr
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| job.orchestrator_url.clone())
            .trim_end_matches('/')
            .to_string();
        let stream = Self {
            http,
            service_addr,
            capability: job.capability.clone(),
            stream_id: stream_id.to_string(),
            timeout_seconds: job.timeout_seconds,
        };
        let parameters = json!({
            "enable_video_ingress": true,
            "enable_video_egress": job.video_egress,
            "enable_data_output": true,
        });
        let url = format!("{}/ai/stream/start", stream.service_addr);
        let (resp, _) = stream
            .send(&url, &json!({}), &parameters, &json!({ "params": params }))
            .await?;
        let urls = urls_from(&resp, &url)?;
        Ok((stream, urls))
    }

    async fn send(
        &self,
        url: &str,
        request: &Value,
        parameters: &Value,
        body: &Value,
    ) -> Result<(Response<()>, Bytes), JobError> {
        let job = job_request_header(
            &self.stream_id,
            &self.capability,
            request,
            parameters,
            self.timeout_seconds,
        );
        let headers = [
            ("livepeer", header(&job, "the job request", url)?),
            ("content-type", HeaderValue::from_static("application/json")),
        ];
        // The orchestrator waits up to `timeout_seconds` for the worker.
        let deadline = Duration::from_secs(u64::from(self.timeout_seconds) + 5);
        call(
            &self.http,
            Method::POST,
            url,
            &headers,
            json_body(body),
            deadline,
        )
        .await
    }

    fn stream_request(&self) -> Value {
        json!({ "stream_id": self.stream_id })
    }

    /// New parameters for the running stream (the worker's `/stream/params`).
    pub async fn update_params(
        &self,
        params: &serde_json::Map<String, Value>,
    ) -> Result<(), JobError> {
        let url = format!("{}/ai/stream/update", self.service_addr);
        self.send(
            &url,
            &self.stream_request(),
            &json!({}),
            &Value::Object(params.clone()),
        )
        .await
        .map(drop)
    }

    /// Ends the stream; the orchestrator stops the worker and its channels.
    pub async fn stop(&self) -> Result<(), JobError> {
        let url = format!("{}/ai/stream/stop", self.service_addr);
        self.send(&url, &self.stream_request(), &json!({}), &json!({}))
            .await
            .map(drop)
    }

    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    pub fn service_addr(&self) -> &str {
        &self.service_addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_request_carries_request_and_parameters_as_strings() {
        let h = job_request_header("s-1", "det", &json!({}), &json!({"a": true}), 30);
        let v: Value = serde_json::from_slice(&BASE64.decode(h).unwrap()).unwrap();
        assert_eq!(v["id"], "s-1");
        assert_eq!(v["capability"], "det");
        assert_eq!(v["request"], "{}");
        assert_eq!(v["parameters"], r#"{"a":true}"#);
        assert_eq!(v["timeout_seconds"], 30);
        assert_eq!(v["sig"], "");
    }

    #[test]
    fn token_without_price_is_off_chain() {
        let t: JobToken = serde_json::from_str(r#"{"service_addr":"https://o:8935"}"#).unwrap();
        assert!(t.price.is_none());
        let t: JobToken =
            serde_json::from_str(r#"{"price":{"pricePerUnit":3,"pixelsPerUnit":1}}"#).unwrap();
        assert!(t.price.unwrap().is_priced());
        let t: JobToken = serde_json::from_str(r#"{"price":{}}"#).unwrap();
        assert!(!t.price.unwrap().is_priced());
    }

    #[test]
    fn long_refusal_bodies_are_cut() {
        let long = "x".repeat(2000);
        let t = body_text(long.as_bytes());
        assert!(t.chars().count() <= BODY_IN_ERRORS + 1);
        assert_eq!(
            body_text(b"  No capacity available for capability\n"),
            "No capacity available for capability"
        );
    }
}
