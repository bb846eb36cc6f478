//! A stand-in for a Livepeer orchestrator's BYOC stream endpoints, written
//! from the project's notes on go-livepeer (`byoc/stream_orchestrator.go`):
//! it hosts the stream's trickle channels on a real trickle server and
//! forwards start, params and stop to a real worker's `/stream/*` API, as
//! the orchestrator forwards to the container it registered. Off-chain
//! rules: no signature check beyond "the signature hex-decodes", capacity
//! counted, a priced capability refused with 402 for want of a balance.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value, json};
use trickle_edge::trickle::client::{ClientOptions, HttpClient};
use trickle_edge::trickle::server::{self, RunningServer, ServerConfig};

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
    pub price_per_unit: i64,
    pub capacity: i64,
    /// The registered container's base URL (its `/stream/*` API).
    pub worker_url: String,
}

struct State {
    offer: Mutex<Offer>,
    calls: Mutex<Vec<Call>>,
    trickle: RunningServer,
    http: HttpClient,
    self_url: String,
}

pub struct ByocOrchestrator {
    pub url: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

type Answer = Response<Full<Bytes>>;

fn text(status: StatusCode, msg: &str) -> Answer {
    // Go's http.Error: text/plain with a trailing newline.
    let mut r = Response::new(Full::new(Bytes::from(format!("{msg}\n"))));
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
    Ok(job)
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
                    let _ = hyper::server::conn::http1::Builder::new()
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

async fn handle(s: &State, req: Request<Incoming>) -> Answer {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let (answer, job, body_json) = match (method, path.as_str()) {
        (Method::GET, "/process/token") => (token(s, &headers), None, Value::Null),
        (Method::POST, "/ai/stream/start" | "/ai/stream/stop" | "/ai/stream/update") => {
            match decode_job(&headers) {
                Err((status, msg)) => (text(status, msg), None, Value::Null),
                Ok(job) => {
                    let body_json = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let a = match path.as_str() {
                        "/ai/stream/start" => start(s, &job, &body).await,
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
    if offer.capacity > 0 {
        token["available_capacity"] = json!(offer.capacity);
    }
    let mut r = Response::new(Full::new(Bytes::from(format!("{token}\n"))));
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

async fn start(s: &State, job: &JobRequest, body: &[u8]) -> Answer {
    let offer = s.offer.lock().unwrap().clone();
    if job.capability != offer.capability || offer.capacity <= 0 {
        return text(
            StatusCode::BAD_REQUEST,
            "No capacity available for capability",
        );
    }
    if offer.price_per_unit > 0 {
        return text(
            StatusCode::PAYMENT_REQUIRED,
            "Insufficient balance for request",
        );
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
            let mut r = Response::new(Full::new(body));
            *r.status_mut() = StatusCode::from_u16(status).unwrap();
            r
        }
        Ok(_) => {
            let mut r = Response::new(Full::new(Bytes::new()));
            for (h, url) in answer_headers {
                r.headers_mut()
                    .insert(h, HeaderValue::from_str(&url).unwrap());
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
            let mut r = Response::new(Full::new(body));
            *r.status_mut() = StatusCode::from_u16(status).unwrap();
            r
        }
        Err(_) => Response::new(Full::new(Bytes::new())),
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
            let mut r = Response::new(Full::new(body));
            *r.status_mut() = StatusCode::from_u16(status).unwrap();
            r
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("Error sending request to worker: {e}"),
        ),
    }
}
