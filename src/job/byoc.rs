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
//! Off-chain (no `job.signer_url`) job requests go unsigned, and a priced
//! capability is refused here with its price, instead of streaming into the
//! orchestrator's `402 Insufficient balance` a minute later. With a remote
//! signer, every job request (start, update, payment, stop) carries the
//! sender and signature `/sign-byoc-job` made, `Livepeer-Eth-Address` the
//! `/sign-orchestrator-info` identity, and a priced stream is paid at start
//! and every `payment_interval` (see `byoc_payment`).

use std::sync::Arc;
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
use super::byoc_payment::{self, ByocCounters, Payer};
use super::error::JobError;
use super::watch::JobWatch;
use crate::config::ByocJob;
use crate::livepeer::LivepeerError;
use crate::livepeer::signer::{ByocJobFields, PRICE_TOO_HIGH, RemoteSigner, SignerIdentity};
use crate::trickle::client::RequestBody;
use crate::trickle::{ClientOptions, HttpClient};

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

/// Who signs this agent's job requests: the remote signer, with the
/// identity `/sign-orchestrator-info` gave it (asked once per start).
#[derive(Debug, Clone)]
pub struct Signing {
    pub signer: RemoteSigner,
    pub identity: SignerIdentity,
}

/// A signer failure as the user sees it: what was asked, of which signer,
/// and its answer (status and body when it gave one).
pub fn signer_error(url: &str, what: &str, e: LivepeerError) -> JobError {
    JobError::Signer {
        url: url.to_string(),
        status: e.status(),
        reason: format!("{what}: {e}"),
    }
}

/// What every request of one stream needs: where it goes, and how its
/// `Livepeer` header is signed. Shared by the stream and its payment loop.
#[derive(Debug, Clone)]
pub struct Caller {
    pub http: HttpClient,
    pub service_addr: String,
    pub capability: String,
    pub stream_id: String,
    pub timeout_seconds: u32,
    pub signing: Option<Signing>,
}

/// A started BYOC stream: where to send its update and stop calls, and its
/// payment loop when the capability is priced.
#[derive(Debug)]
pub struct ByocStream {
    caller: Caller,
    watch: Arc<JobWatch>,
    counters: Arc<ByocCounters>,
    payments: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for ByocStream {
    fn drop(&mut self) {
        if let Some(p) = self.payments.take() {
            p.abort();
        }
    }
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
    let (request, parameters) = (request.to_string(), parameters.to_string());
    let fields = ByocJobFields {
        id: stream_id,
        capability,
        request: &request,
        parameters: &parameters,
        timeout_seconds,
    };
    signed_job_request_header(&fields, "", "")
}

/// The `Livepeer` header for `fields` signed by `sender` with `sig` (the
/// strings exactly as `/sign-byoc-job` signed them).
pub fn signed_job_request_header(fields: &ByocJobFields<'_>, sender: &str, sig: &str) -> String {
    let job = json!({
        "id": fields.id,
        "request": fields.request,
        "parameters": fields.parameters,
        "capability": fields.capability,
        "sender": sender,
        "sig": sig,
        "timeout_seconds": fields.timeout_seconds,
    });
    BASE64.encode(job.to_string())
}

/// `Livepeer-Eth-Address`: base64 of `{"addr","sig"}`, the signer's
/// address and its signature over that address text; empty off-chain.
fn eth_address_header(identity: Option<&SignerIdentity>) -> String {
    let (addr, sig) = identity
        .map(|i| (i.address_text.as_str(), i.sig_text.as_str()))
        .unwrap_or_default();
    BASE64.encode(json!({"addr": addr, "sig": sig}).to_string())
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

/// The headers of `GET /process/token` for `capability`, signed by
/// `identity` (off-chain when `None`).
pub fn token_headers(
    capability: &str,
    identity: Option<&SignerIdentity>,
) -> Result<Vec<(&'static str, HeaderValue)>, String> {
    let cap = HeaderValue::from_str(capability)
        .map_err(|_| format!("capability {capability:?} cannot be sent as an HTTP header"))?;
    let eth = HeaderValue::from_str(&eth_address_header(identity)).map_err(|e| e.to_string())?;
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
    identity: Option<&SignerIdentity>,
) -> Result<JobToken, JobError> {
    let url = format!("{}/process/token", orchestrator.trim_end_matches('/'));
    let headers = token_headers(capability, identity).map_err(|reason| JobError::Orchestrator {
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

/// `Livepeer-Balance` of an answer: the sender's balance for the
/// capability at the orchestrator, as it wrote it.
pub fn balance_of(resp: &Response<()>) -> Option<String> {
    resp.headers()
        .get("livepeer-balance")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
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

impl Caller {
    /// The signed (or, off-chain, unsigned) `Livepeer` header for one call.
    async fn job_header(
        &self,
        request: &Value,
        parameters: &Value,
        timeout_seconds: u32,
    ) -> Result<String, JobError> {
        let (request, parameters) = (request.to_string(), parameters.to_string());
        let fields = ByocJobFields {
            id: &self.stream_id,
            capability: &self.capability,
            request: &request,
            parameters: &parameters,
            timeout_seconds,
        };
        let Some(s) = &self.signing else {
            return Ok(signed_job_request_header(&fields, "", ""));
        };
        let signed = s.signer.sign_byoc_job(fields).await.map_err(|e| {
            signer_error(
                s.signer.url(),
                "signing the job request (/sign-byoc-job)",
                e,
            )
        })?;
        Ok(signed_job_request_header(
            &fields,
            &signed.sender,
            &signed.signature,
        ))
    }

    /// POSTs `body` to `{service_addr}{path}` with the job request in the
    /// `Livepeer` header, plus `extra` headers (a payment).
    pub async fn send(
        &self,
        path: &str,
        request: &Value,
        parameters: &Value,
        body: &Value,
        extra: &[(&'static str, HeaderValue)],
        timeout_seconds: u32,
    ) -> Result<(Response<()>, Bytes), JobError> {
        let url = format!("{}{path}", self.service_addr);
        let job = self
            .job_header(request, parameters, timeout_seconds)
            .await?;
        let mut headers = vec![
            ("livepeer", header(&job, "the job request", &url)?),
            ("content-type", HeaderValue::from_static("application/json")),
        ];
        headers.extend(extra.iter().cloned());
        // The orchestrator waits up to `timeout_seconds` for the worker.
        let deadline = Duration::from_secs(u64::from(self.timeout_seconds) + 5);
        call(
            &self.http,
            Method::POST,
            &url,
            &headers,
            json_body(body),
            deadline,
        )
        .await
    }

    /// `{"stream_id": …}`: how update, payment and stop name the stream.
    pub fn stream_request(&self) -> Value {
        json!({ "stream_id": self.stream_id })
    }
}

impl ByocStream {
    /// Starts a stream named `stream_id` on `job`'s orchestrator; a priced
    /// capability is paid at start and then every `payment_interval`.
    pub async fn start(
        job: &ByocJob,
        params: &serde_json::Map<String, Value>,
        client: &ClientOptions,
        stream_id: &str,
        counters: &Arc<ByocCounters>,
    ) -> Result<(Self, JobUrls), JobError> {
        let http = HttpClient::new(client)?;
        let signing = match super::signer_config::remote_signer(&job.signer(), &http)? {
            Some(signer) => {
                let identity = signer.sign_orchestrator_info().await.map_err(|e| {
                    signer_error(
                        signer.url(),
                        "signing the sender address (/sign-orchestrator-info)",
                        e,
                    )
                })?;
                Some(Signing { signer, identity })
            }
            None => None,
        };
        let identity = signing.as_ref().map(|s| &s.identity);
        let token = fetch_token(&http, &job.orchestrator_url, &job.capability, identity).await?;
        let mut payer = None;
        let mut extra = Vec::new();
        if let Some(price) = token.price.filter(JobPrice::is_priced) {
            let priced = format!(
                "capability {:?} is priced ({} wei per {} units)",
                job.capability,
                price.price_per_unit,
                price.pixels_per_unit.max(1)
            );
            let Some(signing) = &signing else {
                return Err(JobError::Orchestrator {
                    url: job.orchestrator_url.clone(),
                    reason: format!(
                        "{priced} and no remote signer is configured to pay it: set \
                         `job.signer_url` (a signer holding the sender's key), or use an \
                         off-chain orchestrator or capability"
                    ),
                });
            };
            let mut p = Payer::new(signing.clone(), job, client.tls.clone());
            match p.next().await {
                Ok(Some(h)) => extra = byoc_payment::payment_headers(&h, &job.orchestrator_url)?,
                Ok(None) => {}
                Err(JobError::Signer {
                    status,
                    reason,
                    url,
                }) if status == Some(PRICE_TOO_HIGH) => {
                    return Err(JobError::Signer {
                        url,
                        status,
                        reason: format!(
                            "{priced}, above the price limit the remote signer pays (481); \
                             raise the signer's limit or use a cheaper orchestrator: {reason}"
                        ),
                    });
                }
                Err(e) => return Err(e),
            }
            payer = Some(p);
        }
        counters.start();
        let service_addr = token
            .service_addr
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| job.orchestrator_url.clone())
            .trim_end_matches('/')
            .to_string();
        let caller = Caller {
            http,
            service_addr,
            capability: job.capability.clone(),
            stream_id: stream_id.to_string(),
            timeout_seconds: job.timeout_seconds,
            signing,
        };
        let parameters = json!({
            "enable_video_ingress": true,
            "enable_video_egress": job.video_egress,
            "enable_data_output": true,
        });
        let (resp, _) = caller
            .send(
                "/ai/stream/start",
                &json!({}),
                &parameters,
                &json!({ "params": params }),
                &extra,
                job.timeout_seconds,
            )
            .await?;
        let urls = urls_from(&resp, &format!("{}/ai/stream/start", caller.service_addr))?;
        if !extra.is_empty() {
            counters.paid(balance_of(&resp));
        } else if let Some(b) = balance_of(&resp) {
            counters.set_balance(b);
        }
        let watch = Arc::new(JobWatch::default());
        let payments = payer.map(|payer| {
            tokio::spawn(byoc_payment::pay_loop(byoc_payment::PayLoop {
                caller: caller.clone(),
                payer,
                orchestrator_url: job.orchestrator_url.clone(),
                interval: job.payment_interval,
                counters: counters.clone(),
                watch: watch.clone(),
            }))
        });
        tracing::info!(
            stream_id,
            service_addr = %caller.service_addr,
            signed = caller.signing.is_some(),
            priced = payments.is_some(),
            "byoc stream started"
        );
        Ok((
            Self {
                caller,
                watch,
                counters: counters.clone(),
                payments,
            },
            urls,
        ))
    }

    /// New parameters for the running stream (the worker's `/stream/params`).
    pub async fn update_params(
        &self,
        params: &serde_json::Map<String, Value>,
    ) -> Result<(), JobError> {
        let c = &self.caller;
        c.send(
            "/ai/stream/update",
            &c.stream_request(),
            &json!({}),
            &Value::Object(params.clone()),
            &[],
            c.timeout_seconds,
        )
        .await
        .map(drop)
    }

    /// Ends the stream (payments first); the orchestrator stops the worker
    /// and its channels.
    pub async fn stop(&self) -> Result<(), JobError> {
        if let Some(p) = &self.payments {
            p.abort();
        }
        let c = &self.caller;
        c.send(
            "/ai/stream/stop",
            &c.stream_request(),
            &json!({}),
            &json!({}),
            &[],
            c.timeout_seconds,
        )
        .await
        .map(drop)
    }

    /// Why the stream cannot go on (a channel the orchestrator closed, a
    /// price the signer refuses), with the last failed payment when
    /// payments were failing: the likely reason the orchestrator closed it.
    pub fn failed(&self) -> Option<String> {
        let fault = self.watch.fault()?;
        Some(match self.counters.last_payment_error() {
            Some(e) if self.payments.is_some() => {
                format!("{fault}; payments were failing, so its balance likely ran out (last: {e})")
            }
            _ => fault,
        })
    }

    /// Where the agent's stages report a closed channel.
    pub fn watch(&self) -> Arc<JobWatch> {
        self.watch.clone()
    }

    pub fn stream_id(&self) -> &str {
        &self.caller.stream_id
    }

    pub fn service_addr(&self) -> &str {
        &self.caller.service_addr
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
