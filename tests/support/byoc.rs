//! A stand-in for a Livepeer orchestrator's BYOC stream endpoints, written
//! from the project's notes on go-livepeer (`byoc/stream_orchestrator.go`):
//! it hosts the stream's trickle channels on a real trickle server and
//! forwards start, params and stop to a real worker's `/stream/*` API, as
//! the orchestrator forwards to the container it registered. Capacity is
//! counted; a signed job request must come from the stand-in signer
//! (`support::livepeer::SIGNER_ADDRESS`) with the signature it makes for
//! exactly those fields, an unsigned one only needs a `sig` that
//! hex-decodes.
//!
//! A priced capability (`price_per_unit > 0`) works as go-livepeer's BYOC
//! orchestrator does (`byoc/stream_orchestrator.go`), on a clock the test
//! sets: the token carries the price and ticket parameters, gRPC
//! `GetOrchestrator` on the same port answers `OrchestratorInfo` with them,
//! the start needs a payment leaving `MIN_BALANCE_SECONDS` of balance (402
//! `Insufficient balance for request` otherwise), `/ai/stream/payment`
//! credits the sender, and every `check_every` the stream is debited
//! `debit_seconds_per_check` seconds; a negative balance closes its
//! channels.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use prost::Message;
use serde::Deserialize;
use serde_json::{Value, json};
use trickle_edge::livepeer::proto::{
    AuthToken, OrchestratorInfo, OrchestratorRequest, Payment, PriceInfo,
};
use trickle_edge::trickle::client::{ClientOptions, HttpClient};
use trickle_edge::trickle::server::{self, RunningServer, ServerConfig};

use super::livepeer::{Body, SIGNER_ADDRESS, byoc_signature, grpc_answer, ticket_params};

/// Seconds of balance a priced start must leave (go-livepeer: 60).
pub const MIN_BALANCE_SECONDS: i64 = 60;

/// go-livepeer's `JobRequest`, strictly typed as the Go side decodes it:
/// `request` and `parameters` must be strings, or decoding fails.
#[derive(Debug, Clone, Deserialize)]
pub struct JobRequest {
    pub id: String,
    pub request: String,
    pub parameters: String,
    pub capability: String,
    #[serde(default)]
    pub sender: String,
    #[serde(default)]
    pub sig: String,
    #[serde(default)]
    pub timeout_seconds: i64,
}

/// One call the stand-in answered.
#[derive(Debug, Clone)]
pub struct Call {
    pub path: String,
    pub job: Option<JobRequest>,
    pub body: Value,
    pub status: u16,
}

/// What the orchestrator offers; tests change it between calls.
#[derive(Debug, Clone)]
pub struct Offer {
    pub capability: String,
    /// Wei per second of stream; 0: off-chain.
    pub price_per_unit: i64,
    pub capacity: i64,
    /// The registered container's base URL (its `/stream/*` API).
    pub worker_url: String,
    /// Seconds of stream each payment buys.
    pub credit_seconds: i64,
    /// How often a priced stream's balance is debited and checked
    /// (go-livepeer: 23 s).
    pub check_every: Duration,
    /// Seconds of stream each check debits (go-livepeer: the time passed).
    pub debit_seconds_per_check: i64,
}

impl Offer {
    /// An off-chain offer of `capability`, served by `worker_url`.
    pub fn new(capability: &str, worker_url: &str) -> Self {
        Offer {
            capability: capability.into(),
            price_per_unit: 0,
            capacity: 1,
            worker_url: worker_url.into(),
            credit_seconds: 120,
            check_every: Duration::from_secs(23),
            debit_seconds_per_check: 23,
        }
    }
}

/// A `/ai/stream/payment` (or a start's payment) the stand-in credited.
#[derive(Debug, Clone)]
pub struct ReceivedPayment {
    pub path: String,
    pub stream_id: String,
    /// The balance after crediting, in wei.
    pub balance: i64,
    /// What `Livepeer-Segment` carried.
    pub segment: String,
}

struct State {
    offer: Mutex<Offer>,
    calls: Mutex<Vec<Call>>,
    /// The sender's balance for the capability, in wei.
    balances: Mutex<HashMap<String, i64>>,
    payments: Mutex<Vec<ReceivedPayment>>,
    /// Streams closed because their sender's balance went negative.
    closed_for_balance: Mutex<Vec<String>>,
    grpc_requests: Mutex<Vec<OrchestratorRequest>>,
    /// Headers of each `GET /process/token`.
    token_headers: Mutex<Vec<http::HeaderMap>>,
    trickle: RunningServer,
    http: HttpClient,
    self_url: String,
}

pub struct ByocOrchestrator {
    pub url: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

type Answer = Response<Body>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

fn text(status: StatusCode, msg: &str) -> Answer {
    // Go's http.Error: text/plain with a trailing newline.
    let mut r = Response::new(full(format!("{msg}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Decodes and checks the `Livepeer` header; a refusal is its status and text.
fn decode_job(req_headers: &http::HeaderMap) -> Result<JobRequest, (StatusCode, &'static str)> {
    let refuse = || (StatusCode::BAD_REQUEST, "Could not verify job creds");
    let raw = req_headers
        .get("livepeer")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(refuse)?;
    let bytes = BASE64.decode(raw).map_err(|_| refuse())?;
    let job: JobRequest = serde_json::from_slice(&bytes).map_err(|_| refuse())?;
    if job.timeout_seconds == 0 {
        return Err((
            StatusCode::BAD_REQUEST,
            "no timeout_seconds set with request, timeout_seconds is required",
        ));
    }
    let sig = job.sig.strip_prefix("0x").filter(|_| job.sig.len() > 130);
    let sig = sig.unwrap_or(&job.sig);
    if !sig.len().is_multiple_of(2) || !sig.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(refuse());
    }
    if !job.sender.is_empty() {
        // Signed: by the stand-in signer, over exactly these fields.
        let signed = json!({
            "id": job.id,
            "capability": job.capability,
            "request": job.request,
            "parameters": job.parameters,
            "timeout_seconds": job.timeout_seconds,
        });
        if !job.sender.eq_ignore_ascii_case(SIGNER_ADDRESS) || job.sig != byoc_signature(&signed) {
            return Err(refuse());
        }
    }
    Ok(job)
}

/// A `Livepeer-Payment` that decodes, from a 20-byte sender.
fn payment_of(headers: &http::HeaderMap) -> Option<Payment> {
    let raw = headers.get("livepeer-payment")?.to_str().ok()?;
    let p = Payment::decode(&*BASE64.decode(raw).ok()?).ok()?;
    (p.sender.len() == 20 && p.ticket_params.is_some()).then_some(p)
}

impl ByocOrchestrator {
    pub async fn start(offer: Offer) -> ByocOrchestrator {
        let trickle = server::start(ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        })
        .await
        .expect("the orchestrator's trickle server starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let url = format!("http://{addr}");
        let state = Arc::new(State {
            offer: Mutex::new(offer),
            calls: Mutex::new(Vec::new()),
            balances: Default::default(),
            payments: Default::default(),
            closed_for_balance: Default::default(),
            grpc_requests: Default::default(),
            token_headers: Default::default(),
            trickle,
            http: HttpClient::new(&ClientOptions::default()).unwrap(),
            self_url: url.clone(),
        });
        let s = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, Infallible>(handle(&s, req).await) }
                    });
                    // HTTP/1 and h2c on one port: gRPC is served beside the
                    // HTTP API, as go-livepeer serves it.
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(sock), svc)
                        .await;
                });
            }
        });
        ByocOrchestrator { url, state, task }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    /// The calls made to `path`.
    pub fn calls_to(&self, path: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.path == path)
            .collect()
    }

    /// Payments credited, in order.
    pub fn payments(&self) -> Vec<ReceivedPayment> {
        self.state.payments.lock().unwrap().clone()
    }

    /// Streams closed for want of balance.
    pub fn closed_for_balance(&self) -> Vec<String> {
        self.state.closed_for_balance.lock().unwrap().clone()
    }

    pub fn grpc_requests(&self) -> Vec<OrchestratorRequest> {
        self.state.grpc_requests.lock().unwrap().clone()
    }

    pub fn token_headers(&self) -> Vec<http::HeaderMap> {
        self.state.token_headers.lock().unwrap().clone()
    }

    pub fn set_offer(&self, f: impl FnOnce(&mut Offer)) {
        f(&mut self.state.offer.lock().unwrap());
    }

    /// The orchestrator's trickle server, where the stream's channels live.
    pub fn trickle(&self) -> &RunningServer {
        &self.state.trickle
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

async fn handle(s: &Arc<State>, req: Request<Incoming>) -> Answer {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let grpc = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc && path == "/net.Orchestrator/GetOrchestrator" {
        return get_orchestrator(s, &body);
    }
    let (answer, job, body_json) = match (method, path.as_str()) {
        (Method::GET, "/process/token") => {
            s.token_headers.lock().unwrap().push(headers.clone());
            (token(s, &headers), None, Value::Null)
        }
        (Method::POST, "/ai/stream/payment") => match decode_job(&headers) {
            Err((status, msg)) => (text(status, msg), None, Value::Null),
            Ok(job) => (pay(s, &job, &headers), Some(job), Value::Null),
        },
        (Method::POST, "/ai/stream/start" | "/ai/stream/stop" | "/ai/stream/update") => {
            match decode_job(&headers) {
                Err((status, msg)) => (text(status, msg), None, Value::Null),
                Ok(job) => {
                    let body_json = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let a = match path.as_str() {
                        "/ai/stream/start" => start(s, &job, &headers, &body).await,
                        "/ai/stream/stop" => stop(s, &job, &body).await,
                        _ => update(s, &job, &body).await,
                    };
                    (a, Some(job), body_json)
                }
            }
        }
        _ => (
            text(StatusCode::NOT_FOUND, "404 page not found"),
            None,
            Value::Null,
        ),
    };
    s.calls.lock().unwrap().push(Call {
        path,
        job,
        body: body_json,
        status: answer.status().as_u16(),
    });
    answer
}

/// `GetOrchestrator`: the price and, when priced, ticket parameters.
fn get_orchestrator(s: &State, body: &[u8]) -> Answer {
    let Some(request) = body
        .get(5..)
        .and_then(|b| OrchestratorRequest::decode(b).ok())
    else {
        return grpc_answer(Err("bad request".into()));
    };
    s.grpc_requests.lock().unwrap().push(request);
    let offer = s.offer.lock().unwrap().clone();
    let priced = offer.price_per_unit > 0;
    let info = OrchestratorInfo {
        transcoder: s.self_url.clone(),
        address: vec![0x11; 20],
        auth_token: Some(AuthToken {
            token: b"stand-in-byoc-token".to_vec(),
            session_id: "byoc".into(),
            expiration: 1_900_000_000,
        }),
        price_info: priced.then(|| PriceInfo {
            price_per_unit: offer.price_per_unit,
            pixels_per_unit: 1,
            ..Default::default()
        }),
        ticket_params: priced.then(ticket_params),
        ..Default::default()
    };
    grpc_answer(Ok(info.encode_to_vec()))
}

/// Credits the sender for a payment that decodes; the balance after.
fn credit(s: &State, job: &JobRequest, headers: &http::HeaderMap, path: &str) -> Option<i64> {
    payment_of(headers)?;
    let offer = s.offer.lock().unwrap().clone();
    let mut balances = s.balances.lock().unwrap();
    let balance = balances.entry(job.sender.to_lowercase()).or_insert(0);
    *balance += offer.credit_seconds * offer.price_per_unit;
    let segment = headers
        .get("livepeer-segment")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    s.payments.lock().unwrap().push(ReceivedPayment {
        path: path.into(),
        stream_id: stream_id(job).unwrap_or_else(|| job.id.clone()),
        balance: *balance,
        segment,
    });
    Some(*balance)
}

fn balance_of(s: &State, sender: &str) -> i64 {
    *s.balances
        .lock()
        .unwrap()
        .get(&sender.to_lowercase())
        .unwrap_or(&0)
}

/// `/ai/stream/payment`: credit, answer the balance.
fn pay(s: &State, job: &JobRequest, headers: &http::HeaderMap) -> Answer {
    if job.sender.is_empty() {
        return text(StatusCode::BAD_REQUEST, "Could not verify job creds");
    }
    let Some(balance) = credit(s, job, headers, "/ai/stream/payment") else {
        return text(
            StatusCode::BAD_REQUEST,
            "Failed to process payment, request not valid err=Could not parse payment",
        );
    };
    let mut r = Response::new(full(Bytes::new()));
    r.headers_mut()
        .insert("livepeer-balance", HeaderValue::from(balance));
    r
}

/// Debits `id`'s sender every `check_every`; a negative balance closes the
/// stream's channels. Ends when the stream's ingest channel is gone.
fn monitor(s: Arc<State>, id: String, sender: String) {
    tokio::spawn(async move {
        loop {
            let offer = s.offer.lock().unwrap().clone();
            tokio::time::sleep(offer.check_every).await;
            if s.trickle.state.channel(&id).is_none() {
                return;
            }
            let balance = {
                let mut balances = s.balances.lock().unwrap();
                let b = balances.entry(sender.clone()).or_insert(0);
                *b -= offer.debit_seconds_per_check * offer.price_per_unit;
                *b
            };
            if balance < 0 {
                for suffix in ["", "-out", "-control", "-events", "-data"] {
                    s.trickle.state.close_channel(&format!("{id}{suffix}"));
                }
                s.closed_for_balance.lock().unwrap().push(id);
                return;
            }
        }
    });
}

fn token(s: &State, headers: &http::HeaderMap) -> Answer {
    let Some(eth) = headers
        .get("livepeer-eth-address")
        .and_then(|v| v.to_str().ok())
    else {
        return text(
            StatusCode::BAD_REQUEST,
            "Must have eth address and signature on address in Livepeer-Eth-Address header",
        );
    };
    let sender = BASE64
        .decode(eth)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .filter(|v| v["addr"].is_string() && v["sig"].is_string());
    let Some(sender) = sender else {
        return text(StatusCode::BAD_REQUEST, "Invalid eth address header ");
    };
    let Some(cap) = headers
        .get("livepeer-capability")
        .and_then(|v| v.to_str().ok())
    else {
        return text(
            StatusCode::BAD_REQUEST,
            "Job capabilities not provided, must provide comma separated capabilities in Livepeer-Capability header",
        );
    };
    let offer = s.offer.lock().unwrap().clone();
    if cap != offer.capability {
        return text(
            StatusCode::BAD_REQUEST,
            "Could not get price err=capability not found",
        );
    }
    // Go's encoder leaves out zero fields (`omitempty`).
    let mut price = serde_json::Map::new();
    if offer.price_per_unit > 0 {
        price.insert("pricePerUnit".into(), json!(offer.price_per_unit));
        price.insert("pixelsPerUnit".into(), json!(1));
    }
    let mut token = json!({
        "sender_address": sender,
        "price": price,
        "service_addr": s.self_url,
    });
    if offer.price_per_unit > 0 {
        token["ticket_params"] = json!({"recipient": BASE64.encode([0x11u8; 20])});
        let balance = balance_of(s, sender["addr"].as_str().unwrap_or(""));
        if balance != 0 {
            token["balance"] = json!(balance);
        }
    }
    if offer.capacity > 0 {
        token["available_capacity"] = json!(offer.capacity);
    }
    let mut r = Response::new(full(format!("{token}\n")));
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

async fn forward(s: &State, route: &str, body: Value) -> Result<(u16, Bytes), String> {
    let worker = s.offer.lock().unwrap().worker_url.clone();
    let url = format!("{}{route}", worker.trim_end_matches('/'));
    let headers = [("content-type", HeaderValue::from_static("application/json"))];
    let b = Full::new(Bytes::from(body.to_string()))
        .map_err(|never| match never {})
        .boxed();
    let resp = s
        .http
        .send(Method::POST, &url, &headers, b)
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Ok((status, bytes))
}

fn stream_id(job: &JobRequest) -> Option<String> {
    serde_json::from_str::<Value>(&job.request).ok()?["stream_id"]
        .as_str()
        .map(str::to_string)
}

async fn start(s: &Arc<State>, job: &JobRequest, headers: &http::HeaderMap, body: &[u8]) -> Answer {
    let offer = s.offer.lock().unwrap().clone();
    if job.capability != offer.capability || offer.capacity <= 0 {
        return text(
            StatusCode::BAD_REQUEST,
            "No capacity available for capability",
        );
    }
    let priced = offer.price_per_unit > 0;
    if priced {
        if !job.sender.is_empty() {
            credit(s, job, headers, "/ai/stream/start");
        }
        if job.sender.is_empty()
            || balance_of(s, &job.sender) < MIN_BALANCE_SECONDS * offer.price_per_unit
        {
            return text(
                StatusCode::PAYMENT_REQUIRED,
                "Insufficient balance for request",
            );
        }
    }
    let Ok(params) = serde_json::from_str::<Value>(&job.parameters) else {
        return text(StatusCode::BAD_REQUEST, "invalid parameters");
    };
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(body) else {
        return text(StatusCode::BAD_REQUEST, "Invalid JSON body");
    };
    let id = &job.id;
    let base = s.trickle.base_url();
    let mut runner = serde_json::Map::new();
    let mut answer_headers = Vec::new();
    runner.insert("gateway_request_id".into(), json!(id));
    let mut channel = |name: String, ct: &str, runner_key: &str, header: &'static str| {
        s.trickle
            .state
            .create_channel(&name, Some(ct.to_string()))
            .unwrap();
        let url = format!("{base}{name}");
        runner.insert(runner_key.into(), json!(url));
        answer_headers.push((header, url));
    };
    channel(
        format!("{id}-control"),
        "application/json",
        "control_url",
        "x-control-url",
    );
    channel(
        format!("{id}-events"),
        "application/json",
        "events_url",
        "x-events-url",
    );
    if params["enable_video_ingress"] == true {
        channel(id.clone(), "video/MP2T", "subscribe_url", "x-publish-url");
    }
    if params["enable_video_egress"] == true {
        channel(
            format!("{id}-out"),
            "video/MP2T",
            "publish_url",
            "x-subscribe-url",
        );
    }
    if params["enable_data_output"] == true {
        channel(
            format!("{id}-data"),
            "application/jsonl",
            "data_url",
            "x-data-url",
        );
    }
    for (k, v) in body {
        runner.insert(k, v);
    }
    match forward(s, "/stream/start", Value::Object(runner)).await {
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("Error sending request to worker: {e}"),
        ),
        Ok((status, body)) if status > 399 => {
            let mut r = Response::new(full(body));
            *r.status_mut() = StatusCode::from_u16(status).unwrap();
            r
        }
        Ok(_) => {
            let mut r = Response::new(full(Bytes::new()));
            for (h, url) in answer_headers {
                r.headers_mut()
                    .insert(h, HeaderValue::from_str(&url).unwrap());
            }
            if priced {
                let sender = job.sender.to_lowercase();
                r.headers_mut().insert(
                    "livepeer-balance",
                    HeaderValue::from(balance_of(s, &sender)),
                );
                monitor(s.clone(), id.clone(), sender);
            }
            r
        }
    }
}

async fn stop(s: &State, job: &JobRequest, body: &[u8]) -> Answer {
    let Some(id) = stream_id(job) else {
        return text(
            StatusCode::BAD_REQUEST,
            "Failed to stop stream, request not valid, failed to parse stream id",
        );
    };
    let body = serde_json::from_slice(body).unwrap_or(json!({}));
    let answer = match forward(s, "/stream/stop", body).await {
        Ok((status, body)) => {
            let mut r = Response::new(full(body));
            *r.status_mut() = StatusCode::from_u16(status).unwrap();
            r
        }
        Err(_) => Response::new(full(Bytes::new())),
    };
    for suffix in ["", "-out", "-control", "-events", "-data"] {
        s.trickle.state.close_channel(&format!("{id}{suffix}"));
    }
    answer
}

async fn update(s: &State, job: &JobRequest, body: &[u8]) -> Answer {
    if stream_id(job).is_none() {
        return text(
            StatusCode::BAD_REQUEST,
            "request not valid, failed to parse stream id",
        );
    }
    let body = serde_json::from_slice(body).unwrap_or(Value::Null);
    match forward(s, "/stream/params", body).await {
        Ok((status, body)) => {
            let mut r = Response::new(full(body));
            *r.status_mut() = StatusCode::from_u16(status).unwrap();
            r
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("Error sending request to worker: {e}"),
        ),
    }
}
