//! Stand-ins for a Livepeer orchestrator (live-video-to-video) and a remote
//! signer, written from the project's notes on go-livepeer
//! (`server/ai_http.go`, `server/rpc.go`, `server/remote_signer.go`) and
//! proven against Livepeer's own client in `tests/livepeer_sdk.rs`.
//!
//! The orchestrator serves gRPC `GetOrchestrator` and its HTTP API on one
//! TLS port (self-signed ECDSA P-256, as real ones are): HTTP/2 requests
//! with `content-type: application/grpc` are gRPC, the rest (HTTP/1 or 2)
//! is `/live-video-to-video` and `/payment`. Its trickle channels live on a
//! trickle server of our own (`trickle::server`) on a second loopback port:
//! the start answer carries absolute channel URLs, so a client cannot tell,
//! and the trickle server keeps its own HTTP/1 accept loop.
//!
//! For failover tests it can also close an unpaid priced job's channels
//! (`close_unpaid_after`, go-livepeer's balance running out), stall the
//! camera's ingest behind a relay (`ingest_relay`, `stall_ingest`), and run
//! a real pytrickle worker as its runner (`runner`), turning the worker's
//! data output into events on the job's events channel.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use prost::Message;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use trickle_edge::livepeer::proto::{
    AuthToken, OrchestratorInfo, OrchestratorRequest, Payment, PaymentResult, PriceInfo, SegData,
    TicketParams,
};
use trickle_edge::trickle::server::{self, RunningServer, ServerConfig};

pub type Body = BoxBody<Bytes, Infallible>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

/// Go's `http.Error`: plain text with a trailing newline.
fn text(status: u16, msg: &str) -> Response<Body> {
    let mut r = Response::new(full(format!("{msg}\n")));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json_answer(v: &Value) -> Response<Body> {
    let mut r = Response::new(full(v.to_string()));
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// What the orchestrator offers and refuses; tests change it between calls.
#[derive(Debug, Clone, Default)]
pub struct OrchOffer {
    /// Wei per pixel unit; 0 = off-chain (no price, no ticket params).
    pub price_per_unit: i64,
    /// `GetOrchestrator` answers this gRPC error message instead.
    pub refuse_grpc: Option<String>,
    /// `/live-video-to-video` answers this status and plain-text body.
    pub refuse_start: Option<(u16, String)>,
    /// `GetOrchestrator` answers this much later (to order answers).
    pub grpc_delay: Option<std::time::Duration>,
    /// A priced job that goes this long without a payment (since its start
    /// or its last one) has its four channels closed, as go-livepeer does
    /// when the sender's balance runs out.
    pub close_unpaid_after: Option<std::time::Duration>,
    /// The start answer's `publish_url` goes through a relay that
    /// [`StandInOrchestrator::stall_ingest`] can freeze: an orchestrator
    /// too slow to take the camera's segments.
    pub ingest_relay: bool,
    /// A pytrickle worker's base URL, run as this orchestrator's runner
    /// (see [`start_runner`]).
    pub runner: Option<String>,
}

/// A `/live-video-to-video` the orchestrator accepted.
#[derive(Debug, Clone)]
pub struct StartedJob {
    pub manifest_id: String,
    pub body: Value,
    pub payment: String,
    pub segment: SegData,
}

/// A `/payment` the orchestrator received.
#[derive(Debug, Clone)]
pub struct ReceivedPayment {
    pub at: Instant,
    pub payment: String,
    pub segment: SegData,
}

struct OrchState {
    offer: Mutex<OrchOffer>,
    url: String,
    session_id: String,
    trickle: RunningServer,
    grpc_requests: Mutex<Vec<OrchestratorRequest>>,
    /// When each `GetOrchestrator` arrived.
    grpc_at: Mutex<Vec<Instant>>,
    starts: Mutex<Vec<StartedJob>>,
    refused_starts: Mutex<Vec<(u16, String)>>,
    payments: Mutex<Vec<ReceivedPayment>>,
    /// Manifest IDs of jobs closed for want of payment.
    closed_unpaid: Mutex<Vec<String>>,
    /// What the runner answered to each job's start (path or error).
    runner_starts: Mutex<Vec<Result<String, String>>>,
    /// Events the runner bridge published on a job's events channel.
    bridged_events: std::sync::atomic::AtomicU64,
    /// The ingest relay's address and its freeze switch.
    relay: Mutex<Option<(SocketAddr, Arc<std::sync::atomic::AtomicBool>)>>,
}

pub struct StandInOrchestrator {
    pub url: String,
    pub addr: SocketAddr,
    /// SHA-256 of its certificate, for `pin_sha256`.
    pub fingerprint: String,
    state: Arc<OrchState>,
    task: tokio::task::JoinHandle<()>,
}

fn self_signed() -> (Vec<u8>, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap(); // ECDSA P-256
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.der().to_vec(), key.serialize_der())
}

impl StandInOrchestrator {
    /// Starts on a loopback port with TLS (`tls`) or h2c/HTTP/1 in clear.
    pub async fn start(offer: OrchOffer, tls: bool) -> StandInOrchestrator {
        let trickle = server::start(ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        })
        .await
        .expect("the orchestrator's trickle server starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("{}://{addr}", if tls { "https" } else { "http" });
        let (cert, key) = self_signed();
        let fingerprint = trickle_edge::trickle::tls::fingerprint(&cert);
        let acceptor = tls.then(|| {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let mut config = rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(
                    vec![CertificateDer::from(cert)],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
                )
                .unwrap();
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        });
        let state = Arc::new(OrchState {
            offer: Mutex::new(offer),
            url: url.clone(),
            session_id: format!("session-{}", addr.port()),
            trickle,
            grpc_requests: Mutex::new(Vec::new()),
            grpc_at: Mutex::new(Vec::new()),
            starts: Mutex::new(Vec::new()),
            refused_starts: Mutex::new(Vec::new()),
            payments: Mutex::new(Vec::new()),
            closed_unpaid: Mutex::new(Vec::new()),
            runner_starts: Mutex::new(Vec::new()),
            bridged_events: Default::default(),
            relay: Mutex::new(None),
        });
        if state.offer.lock().unwrap().ingest_relay {
            let frozen = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let relay = start_relay(state.trickle.local_addr(), frozen.clone()).await;
            *state.relay.lock().unwrap() = Some((relay, frozen));
        }
        let s = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let (s, acceptor) = (s.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, Infallible>(handle(&s, req).await) }
                    });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        Some(a) => {
                            if let Ok(tls) = a.accept(sock).await {
                                let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(sock), svc).await;
                        }
                    }
                });
            }
        });
        StandInOrchestrator {
            url,
            addr,
            fingerprint,
            state,
            task,
        }
    }

    pub fn set_offer(&self, f: impl FnOnce(&mut OrchOffer)) {
        f(&mut self.state.offer.lock().unwrap());
    }

    pub fn grpc_requests(&self) -> Vec<OrchestratorRequest> {
        self.state.grpc_requests.lock().unwrap().clone()
    }

    /// When each `GetOrchestrator` arrived.
    pub fn grpc_at(&self) -> Vec<Instant> {
        self.state.grpc_at.lock().unwrap().clone()
    }

    pub fn starts(&self) -> Vec<StartedJob> {
        self.state.starts.lock().unwrap().clone()
    }

    pub fn refused_starts(&self) -> Vec<(u16, String)> {
        self.state.refused_starts.lock().unwrap().clone()
    }

    pub fn payments(&self) -> Vec<ReceivedPayment> {
        self.state.payments.lock().unwrap().clone()
    }

    /// The auth token's session id this orchestrator hands out.
    pub fn session_id(&self) -> &str {
        &self.state.session_id
    }

    pub fn trickle(&self) -> &RunningServer {
        &self.state.trickle
    }

    /// What the runner answered to each job's start: the start path, or why not.
    pub fn runner_starts(&self) -> Vec<Result<String, String>> {
        self.state.runner_starts.lock().unwrap().clone()
    }

    /// Events the runner bridge has published so far.
    pub fn bridged_events(&self) -> u64 {
        self.state
            .bridged_events
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Manifest IDs of the jobs closed because their payments stopped.
    pub fn closed_unpaid(&self) -> Vec<String> {
        self.state.closed_unpaid.lock().unwrap().clone()
    }

    /// Freezes the ingest relay (`OrchOffer::ingest_relay`): bytes stop
    /// moving both ways, connections stay open, nothing is answered.
    pub fn stall_ingest(&self) {
        let relay = self.state.relay.lock().unwrap();
        let (_, frozen) = relay.as_ref().expect("started with ingest_relay");
        frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Closes every channel of every job (what an orchestrator does when a
    /// priced job's payments stop).
    pub fn close_channels(&self) {
        for name in self.state.trickle.state.channel_names() {
            self.state.trickle.state.close_channel(&name);
        }
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

fn info(s: &OrchState) -> OrchestratorInfo {
    let offer = s.offer.lock().unwrap().clone();
    let priced = offer.price_per_unit > 0;
    OrchestratorInfo {
        transcoder: s.url.clone(),
        address: if priced { vec![0x11; 20] } else { Vec::new() },
        auth_token: Some(AuthToken {
            token: b"stand-in-token".to_vec(),
            session_id: s.session_id.clone(),
            expiration: 1_900_000_000,
        }),
        price_info: priced.then(|| PriceInfo {
            price_per_unit: offer.price_per_unit,
            pixels_per_unit: 1,
            ..Default::default()
        }),
        ticket_params: priced.then(ticket_params),
        ..Default::default()
    }
}

/// The stand-ins' ticket parameters: a non-zero face value, so a payment
/// is worth something.
pub fn ticket_params() -> TicketParams {
    TicketParams {
        recipient: vec![0x11; 20],
        face_value: vec![1, 0],
        win_prob: vec![0xff; 4],
        recipient_rand_hash: vec![0x22; 32],
        seed: vec![3],
        expiration_block: vec![9],
        expiration_params: None,
    }
}

/// A gRPC unary answer: the message length-prefixed, `grpc-status` in the
/// trailers (or a trailers-only error).
pub fn grpc_answer(result: Result<Vec<u8>, String>) -> Response<Body> {
    let mut trailers = HeaderMap::new();
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = match result {
        Ok(msg) => {
            let mut framed = BytesMut::with_capacity(5 + msg.len());
            framed.put_u8(0);
            framed.put_u32(msg.len() as u32);
            framed.put_slice(&msg);
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            vec![
                Ok(Frame::data(framed.freeze())),
                Ok(Frame::trailers(trailers)),
            ]
        }
        Err(message) => {
            trailers.insert("grpc-status", HeaderValue::from_static("2"));
            trailers.insert("grpc-message", HeaderValue::from_str(&message).unwrap());
            vec![Ok(Frame::trailers(trailers))]
        }
    };
    let mut r = Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed());
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    r
}

fn segment_of(headers: &HeaderMap) -> Option<SegData> {
    let raw = headers.get("livepeer-segment")?.to_str().ok()?;
    SegData::decode(&*BASE64.decode(raw).ok()?).ok()
}

fn header_str(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// The orchestrator's checks of a paid request, as go-livepeer makes them:
/// segment credentials carrying our auth token (403), and a payment when
/// priced (400 "Insufficient balance" without one).
fn check_credentials(s: &OrchState, headers: &HeaderMap) -> Result<SegData, (u16, &'static str)> {
    let seg = segment_of(headers).ok_or((403, "invalid segment credentials"))?;
    let token_ok = seg
        .auth_token
        .as_ref()
        .is_some_and(|t| t.session_id == s.session_id);
    if !token_ok {
        return Err((403, "missing or expired auth token"));
    }
    let priced = s.offer.lock().unwrap().price_per_unit > 0;
    let payment = header_str(headers, "livepeer-payment");
    if priced {
        let decoded = BASE64
            .decode(&payment)
            .ok()
            .and_then(|b| Payment::decode(&*b).ok());
        match decoded {
            None if payment.is_empty() => return Err((400, "Insufficient balance")),
            None => return Err((402, "could not parse payment")),
            Some(p) if p.sender.len() != 20 => return Err((400, "invalid payment sender")),
            Some(_) => {}
        }
    }
    Ok(seg)
}

async fn handle(s: &Arc<OrchState>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let grpc = header_str(&headers, "content-type").starts_with("application/grpc");
    match (method, path.as_str()) {
        (Method::POST, "/net.Orchestrator/GetOrchestrator") if grpc => {
            if body.len() < 5 {
                return grpc_answer(Err("empty request".into()));
            }
            let Ok(request) = OrchestratorRequest::decode(&body[5..]) else {
                return grpc_answer(Err("bad request".into()));
            };
            s.grpc_requests.lock().unwrap().push(request);
            s.grpc_at.lock().unwrap().push(Instant::now());
            let delay = s.offer.lock().unwrap().grpc_delay;
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            let refusal = s.offer.lock().unwrap().refuse_grpc.clone();
            match refusal {
                Some(msg) => grpc_answer(Err(msg)),
                None => grpc_answer(Ok(info(s).encode_to_vec())),
            }
        }
        (Method::POST, "/live-video-to-video") => start(s, &headers, &body),
        (Method::POST, "/payment") => match check_credentials(s, &headers) {
            Err((status, msg)) => text(status, msg),
            Ok(segment) => {
                s.payments.lock().unwrap().push(ReceivedPayment {
                    at: Instant::now(),
                    payment: header_str(&headers, "livepeer-payment"),
                    segment,
                });
                let result = PaymentResult {
                    info: Some(info(s)),
                };
                let mut r = Response::new(full(result.encode_to_vec()));
                r.headers_mut().insert(
                    "content-type",
                    HeaderValue::from_static("application/x-protobuf"),
                );
                r
            }
        },
        _ => text(404, "404 page not found"),
    }
}

fn start(s: &Arc<OrchState>, headers: &HeaderMap, body: &[u8]) -> Response<Body> {
    let refuse = |status: u16, msg: &str| {
        s.refused_starts
            .lock()
            .unwrap()
            .push((status, msg.to_string()));
        text(status, msg)
    };
    if let Some((status, msg)) = s.offer.lock().unwrap().refuse_start.clone() {
        return refuse(status, &msg);
    }
    let segment = match check_credentials(s, headers) {
        Ok(seg) => seg,
        Err((status, msg)) => return refuse(status, msg),
    };
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return refuse(400, "could not parse the request body");
    };
    if req
        .get("model_id")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return refuse(400, "missing model_id");
    }
    let n = s.starts.lock().unwrap().len();
    let mid = format!("mid{}x{n}", s.session_id.len());
    let names = [
        (mid.clone(), "video/MP2T"),
        (format!("{mid}-out"), "video/MP2T"),
        (format!("{mid}-control"), "application/json"),
        (format!("{mid}-events"), "application/json"),
    ];
    for (name, ct) in &names {
        s.trickle
            .state
            .create_channel(name, Some(ct.to_string()))
            .unwrap();
    }
    let base = s.trickle.base_url();
    let publish_base = match &*s.relay.lock().unwrap() {
        Some((relay, _)) => base.replace(&s.trickle.local_addr().to_string(), &relay.to_string()),
        None => base.clone(),
    };
    let offer = s.offer.lock().unwrap().clone();
    if let Some(after) = offer
        .close_unpaid_after
        .filter(|_| offer.price_per_unit > 0)
    {
        tokio::spawn(close_when_unpaid(s.clone(), mid.clone(), after));
    }
    if let Some(runner) = offer.runner.clone() {
        s.trickle
            .state
            .create_channel(&format!("{mid}-data"), Some("application/jsonl".into()))
            .unwrap();
        let params = req.get("params").cloned().unwrap_or_else(|| json!({}));
        tokio::spawn(start_runner(s.clone(), runner, mid.clone(), params));
    }
    s.starts.lock().unwrap().push(StartedJob {
        manifest_id: mid.clone(),
        body: req,
        payment: header_str(headers, "livepeer-payment"),
        segment,
    });
    json_answer(&json!({
        "publish_url": format!("{publish_base}{mid}"),
        "subscribe_url": format!("{base}{mid}-out"),
        "control_url": format!("{base}{mid}-control"),
        "events_url": format!("{base}{mid}-events"),
        "manifest_id": mid,
    }))
}

/// The orchestrator's runner part (ai-runner's, in go-livepeer): the
/// worker (pytrickle) is started on the job's channels, `/stream/start`
/// with the camera's channel to read, `-out` to write and `-control`; its
/// pipeline output (`publish_data`, JSON lines on a private `-data`
/// channel, since LV2V has none) is published on the job's `-events`
/// channel as Livepeer event envelopes, one per line (the line's last
/// item), as ai-runner turns pipeline output into events.
async fn start_runner(s: Arc<OrchState>, runner: String, mid: String, params: Value) {
    use trickle_edge::trickle::{HttpClient, Publisher, PublisherOptions, Subscriber};
    let base = s.trickle.base_url();
    let body = json!({
        "subscribe_url": format!("{base}{mid}"),
        "publish_url": format!("{base}{mid}-out"),
        "control_url": format!("{base}{mid}-control"),
        "data_url": format!("{base}{mid}-data"),
        "gateway_request_id": mid,
        "params": params,
    });
    let client = trickle_edge::job::worker_client::WorkerClient::new(
        &runner,
        HttpClient::new(&Default::default()).unwrap(),
    );
    let started = client
        .post_first(&["/stream/start", "/api/stream/start"], &body)
        .await
        .map(|(path, _)| path.to_string())
        .map_err(|e| e.to_string());
    let ok = started.is_ok();
    s.runner_starts.lock().unwrap().push(started);
    if !ok {
        return;
    }
    let Ok(mut data) = Subscriber::new(&format!("{base}{mid}-data"), Default::default()) else {
        return;
    };
    let Ok(mut events) = Publisher::connect(
        &format!("{base}{mid}-events"),
        PublisherOptions {
            content_type: "application/json".into(),
            ..Default::default()
        },
    )
    .await
    else {
        return;
    };
    while let Ok(Some(mut seg)) = data.next_segment().await {
        let mut buf = Vec::new();
        while let Ok(Some(chunk)) = seg.chunk().await {
            buf.extend_from_slice(&chunk);
        }
        for line in buf.split(|b| *b == b'\n') {
            let Ok(v) = serde_json::from_slice::<Value>(line) else {
                continue;
            };
            // pytrickle writes each batch as a JSON array of JSON strings.
            let last = match v {
                Value::Array(items) => items.into_iter().last(),
                other => Some(other),
            };
            let item = match last {
                Some(Value::String(text)) => {
                    serde_json::from_str(&text).unwrap_or(Value::String(text))
                }
                Some(v) => v,
                None => continue,
            };
            let envelope = json!({"queue_event_type": "ai_stream_events", "event": item});
            let Ok(mut out) = events.next_segment().await else {
                return;
            };
            if out.write(Bytes::from(envelope.to_string())).await.is_err()
                || out.finish().await.is_err()
            {
                return;
            }
            s.bridged_events
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// go-livepeer's balance check, reduced to time: a job unpaid for `after`
/// has its channels closed (waiting requests end, later ones get 404).
async fn close_when_unpaid(s: Arc<OrchState>, mid: String, after: std::time::Duration) {
    let started = Instant::now();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let last_paid = s
            .payments
            .lock()
            .unwrap()
            .iter()
            .map(|p| p.at)
            .filter(|t| *t > started)
            .max()
            .unwrap_or(started);
        if last_paid.elapsed() >= after {
            for name in [
                mid.clone(),
                format!("{mid}-out"),
                format!("{mid}-control"),
                format!("{mid}-events"),
            ] {
                s.trickle.state.close_channel(&name);
            }
            s.closed_unpaid.lock().unwrap().push(mid);
            return;
        }
    }
}

/// A TCP relay to `target` whose traffic stops both ways while `frozen`.
async fn start_relay(target: SocketAddr, frozen: Arc<std::sync::atomic::AtomicBool>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((inbound, _)) = listener.accept().await else {
                continue;
            };
            let Ok(outbound) = tokio::net::TcpStream::connect(target).await else {
                continue;
            };
            let (ri, wi) = inbound.into_split();
            let (ro, wo) = outbound.into_split();
            tokio::spawn(pump(ri, wo, frozen.clone()));
            tokio::spawn(pump(ro, wi, frozen.clone()));
        }
    });
    addr
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hold = || async {
        while frozen.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        hold().await;
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Bytes read just before a freeze are held too.
        hold().await;
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A `/generate-live-payment` the signer answered.
#[derive(Debug, Clone)]
pub struct SignerCall {
    pub body: Value,
    pub status: u16,
    pub headers: HeaderMap,
}

#[derive(Default)]
struct SignerState {
    /// Statuses to answer next, before answering normally again.
    inject: Mutex<VecDeque<u16>>,
    /// Paths answered with this status until told otherwise.
    failing: Mutex<std::collections::HashMap<String, u16>>,
    /// `/generate-live-payment` answers 481 above this price per unit.
    price_limit: Mutex<Option<i64>>,
    /// The bodies `/sign-byoc-job` signed.
    byoc_signs: Mutex<Vec<Value>>,
    calls: Mutex<Vec<SignerCall>>,
    info_calls: Mutex<Vec<HeaderMap>>,
    discover_queries: Mutex<Vec<String>>,
    orchestrators: Mutex<Vec<String>>,
}

/// A remote signer (`livepeer -remoteSigner`) stand-in, plain HTTP/1.
pub struct StandInSigner {
    pub url: String,
    state: Arc<SignerState>,
    task: tokio::task::JoinHandle<()>,
}

pub const SIGNER_ADDRESS: &str = "0x00112233445566778899aabbccddeeff00112233";

impl StandInSigner {
    pub async fn start(orchestrators: Vec<String>) -> StandInSigner {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(SignerState::default());
        *state.orchestrators.lock().unwrap() = orchestrators;
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
                        async move { Ok::<_, Infallible>(signer_handle(&s, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(sock), svc)
                        .await;
                });
            }
        });
        StandInSigner { url, state, task }
    }

    /// The next payment calls answer these statuses, in order.
    pub fn inject(&self, statuses: &[u16]) {
        self.state.inject.lock().unwrap().extend(statuses);
    }

    pub fn calls(&self) -> Vec<SignerCall> {
        self.state.calls.lock().unwrap().clone()
    }

    /// `path` answers `status` (plain text) until set to `None`.
    pub fn fail(&self, path: &str, status: Option<u16>) {
        let mut f = self.state.failing.lock().unwrap();
        match status {
            Some(code) => f.insert(path.to_string(), code),
            None => f.remove(path),
        };
    }

    /// Payments for orchestrators priced above `limit` answer 481.
    pub fn set_price_limit(&self, limit: Option<i64>) {
        *self.state.price_limit.lock().unwrap() = limit;
    }

    /// What `/sign-byoc-job` was asked to sign, in order.
    pub fn byoc_signs(&self) -> Vec<Value> {
        self.state.byoc_signs.lock().unwrap().clone()
    }

    pub fn info_calls(&self) -> Vec<HeaderMap> {
        self.state.info_calls.lock().unwrap().clone()
    }

    pub fn discover_queries(&self) -> Vec<String> {
        self.state.discover_queries.lock().unwrap().clone()
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

/// The stand-in's signature of a BYOC job request: deterministic (65
/// bytes derived from what was signed), so a test can recompute it, and
/// hex as a real one is.
pub fn byoc_signature(job: &Value) -> String {
    let text = format!(
        "{}|{}|{}|{}|{}",
        job["id"].as_str().unwrap_or(""),
        job["capability"].as_str().unwrap_or(""),
        job["request"].as_str().unwrap_or(""),
        job["parameters"].as_str().unwrap_or(""),
        job["timeout_seconds"]
    );
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes: String = (0..65)
        .map(|i| {
            for b in text.bytes().chain([i as u8]) {
                h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
            format!("{:02x}", h as u8)
        })
        .collect();
    format!("0x{bytes}")
}

async fn signer_handle(s: &SignerState, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let method = req.method().clone();
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let failing = s.failing.lock().unwrap().get(&path).copied();
    if let Some(code) = failing {
        if path == "/generate-live-payment" {
            s.calls.lock().unwrap().push(SignerCall {
                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                status: code,
                headers,
            });
        }
        return text(
            code,
            &format!("stand-in signer: {path} is failing ({code})"),
        );
    }
    match (method, path.as_str()) {
        (Method::POST, "/sign-byoc-job") => {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            s.byoc_signs.lock().unwrap().push(v.clone());
            json_answer(&json!({
                "sender": SIGNER_ADDRESS,
                "signature": byoc_signature(&v),
            }))
        }
        (Method::POST, "/sign-orchestrator-info") => {
            s.info_calls.lock().unwrap().push(headers);
            json_answer(&json!({
                "address": SIGNER_ADDRESS,
                "signature": format!("0x{}", "ab".repeat(65)),
            }))
        }
        (Method::GET, "/discover-orchestrators") => {
            s.discover_queries.lock().unwrap().push(query);
            let list: Vec<Value> = s
                .orchestrators
                .lock()
                .unwrap()
                .iter()
                .map(|a| json!({"address": a, "score": 1.0, "capabilities": []}))
                .collect();
            json_answer(&Value::Array(list))
        }
        (Method::POST, "/generate-live-payment") => {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let injected = s.inject.lock().unwrap().pop_front();
            let status = injected.unwrap_or(200);
            s.calls.lock().unwrap().push(SignerCall {
                body: v.clone(),
                status,
                headers,
            });
            if let Some(code) = injected {
                // Error bodies are plain text even when labelled JSON.
                let mut r = text(code, &format!("stand-in signer status {code}"));
                r.headers_mut()
                    .insert("content-type", HeaderValue::from_static("application/json"));
                return r;
            }
            let info = v
                .get("orchestrator")
                .and_then(Value::as_str)
                .and_then(|o| BASE64.decode(o).ok())
                .and_then(|b| OrchestratorInfo::decode(&*b).ok());
            let Some(info) = info else {
                return text(400, "missing or invalid orchestrator info");
            };
            let Some(price) = info.price_info.clone().filter(|p| p.price_per_unit > 0) else {
                return text(400, "missing or zero priceInfo");
            };
            let limit = *s.price_limit.lock().unwrap();
            if let Some(limit) = limit.filter(|l| price.price_per_unit > *l) {
                s.calls.lock().unwrap().last_mut().unwrap().status = 481;
                return text(
                    481,
                    &format!(
                        "Orchestrator price {} wei per {} pixels exceeds the max price {limit} wei",
                        price.price_per_unit, price.pixels_per_unit
                    ),
                );
            }
            let n = v.pointer("/state/n").and_then(Value::as_u64).unwrap_or(0) + 1;
            // The signer invents a manifest ID on the first call.
            let manifest = v
                .get("ManifestID")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("signer-manifest-{n}"));
            let payment = Payment {
                ticket_params: info.ticket_params.clone(),
                sender: vec![
                    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc,
                    0xdd, 0xee, 0xff, 0x00, 0x11, 0x22, 0x33,
                ],
                expected_price: Some(price),
                ..Default::default()
            };
            let seg = SegData {
                manifest_id: manifest.clone().into_bytes(),
                auth_token: info.auth_token.clone(),
                ..Default::default()
            };
            json_answer(&json!({
                "payment": BASE64.encode(payment.encode_to_vec()),
                "segCreds": BASE64.encode(seg.encode_to_vec()),
                "state": {"n": n, "manifest": manifest},
            }))
        }
        _ => text(404, "404 page not found"),
    }
}
