//! The trickle server: Livepeer's segmented HTTP pub/sub, on hyper 1.x.
//!
//! Requests and answers follow `trickle-protocol.md` row by row. The server
//! owns a map of [`Channel`]s; each request resolves its channel and segment
//! under a short lock and then streams without holding any lock, so one slow
//! peer never blocks another. Connections come from the crate's one accept
//! loop ([`crate::http_serve`]), each socket wrapped for interim responses;
//! idle channels are swept by a task of their own beside it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::Service;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::channel::{Channel, Missing, ReadSlot, WriteSlot};
use super::headers::{HDR_CLOSED, HDR_LATEST, HDR_RESET, HDR_SEQ};
use super::interim::{InterimHandle, InterimIo};
use super::segment::ReadEvent;
use crate::http_serve::{Connections, Refusal, ServeLimits, serve_connections};
use crate::shutdown::{Shutdown, ShutdownTrigger};
use crate::sync::LockIgnoringPoison;

type Body = BoxBody<Bytes, std::io::Error>;

/// Everything a user can set on a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Path prefix ending in `/`, e.g. `/ai/trickle/`.
    pub base_path: String,
    /// Whether `POST <channel>` may create channels (otherwise only `channels`
    /// and in-process callers create them).
    pub allow_create: bool,
    /// Channels created at start-up, with their content type.
    pub channels: Vec<(String, Option<String>)>,
    pub max_segment_bytes: usize,
    pub max_channels: usize,
    pub max_readers_per_segment: usize,
    pub max_connections: usize,
    /// Open connections from one remote IP at once, so one client cannot
    /// take every connection: more are answered 429 and closed.
    pub max_connections_per_ip: usize,
    /// POSTs open on one channel at once (a publisher needs two: the segment
    /// streaming and its preconnected successor); more are answered 429.
    pub max_posts_per_channel: usize,
    /// How long a POST may hold its seq without a body byte once it is the
    /// channel's current write (a preconnected POST waits unbounded while
    /// the segment before it streams), and how long a body may stall between
    /// bytes. Past it the POST is answered 408 and its seq released.
    pub post_idle_timeout: Duration,
    /// When set, every request must carry `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
    /// Channels without a new segment for this long are closed.
    pub idle_timeout: Duration,
    pub sweep_interval: Duration,
    /// Interval of interim `100 Continue` on a POST that sent no byte yet.
    pub interim_interval: Duration,
    /// Connections that do not complete their request headers in time are closed.
    pub header_read_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 2939)),
            base_path: "/ai/trickle/".into(),
            allow_create: false,
            channels: Vec::new(),
            max_segment_bytes: 64 * 1024 * 1024,
            max_channels: 1024,
            max_readers_per_segment: 256,
            max_connections: 4096,
            max_connections_per_ip: 1024,
            max_posts_per_channel: 8,
            post_idle_timeout: Duration::from_secs(30),
            bearer_token: None,
            idle_timeout: Duration::from_secs(300),
            sweep_interval: Duration::from_secs(60),
            interim_interval: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid channel name {0:?}: use 1-128 characters of A-Z a-z 0-9 . _ -")]
    BadChannelName(String),
    #[error("too many channels (limit {0})")]
    TooManyChannels(usize),
}

/// Counters the server keeps for `/metrics` and tests.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub segments_written: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub interim_sent: AtomicU64,
    pub rejected_oversize: AtomicU64,
    /// Refused at the server's connection limit or one IP's.
    pub connections_refused: AtomicU64,
    /// Of those, refused at one remote IP's limit.
    pub connections_refused_per_ip: AtomicU64,
    /// POSTs answered 429 at a channel's open-POST limit.
    pub posts_refused: AtomicU64,
    /// POSTs ended for sending no byte within the POST idle timeout.
    pub posts_timed_out: AtomicU64,
}

/// State shared by every connection of one server.
#[derive(Debug)]
pub struct ServerState {
    config: ServerConfig,
    channels: Mutex<HashMap<String, Arc<Channel>>>,
    pub stats: ServerStats,
    /// Timed-out POSTs not yet told in a warning: one warning per
    /// [`WARN_EVERY`] at most, with the count since the last.
    timeouts_unwarned: Mutex<(u64, Option<tokio::time::Instant>)>,
}

/// At most one warning per this long for each kind of refusal.
const WARN_EVERY: Duration = Duration::from_secs(10);

pub fn valid_channel_name(name: &str) -> bool {
    // `.` and `..` are path segments, not names: a proxy or a URL library
    // normalises them away, so such a channel is not reliably addressable.
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl ServerState {
    pub fn new(config: ServerConfig) -> Result<Arc<Self>, ServerError> {
        let state = Arc::new(Self {
            config,
            channels: Mutex::new(HashMap::new()),
            stats: ServerStats::default(),
            timeouts_unwarned: Mutex::new((0, None)),
        });
        for (name, ct) in state.config.channels.clone() {
            state.create_channel(&name, ct)?;
        }
        Ok(state)
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Channel>>> {
        self.channels.lock_ignoring_poison()
    }

    /// Creates a channel (idempotent: an existing channel is kept as is).
    pub fn create_channel(
        &self,
        name: &str,
        content_type: Option<String>,
    ) -> Result<Arc<Channel>, ServerError> {
        if !valid_channel_name(name) {
            return Err(ServerError::BadChannelName(name.to_string()));
        }
        let mut map = self.map();
        if let Some(ch) = map.get(name) {
            return Ok(ch.clone());
        }
        if map.len() >= self.config.max_channels {
            return Err(ServerError::TooManyChannels(self.config.max_channels));
        }
        let ch = Arc::new(Channel::new(name.to_string(), content_type));
        map.insert(name.to_string(), ch.clone());
        info!(channel = name, "channel created");
        Ok(ch)
    }

    pub fn channel(&self, name: &str) -> Option<Arc<Channel>> {
        self.map().get(name).cloned()
    }

    /// Closes and forgets a channel; false when it did not exist.
    pub fn close_channel(&self, name: &str) -> bool {
        let removed = self.map().remove(name);
        match removed {
            Some(ch) => {
                ch.close();
                info!(channel = name, "channel closed");
                true
            }
            None => false,
        }
    }

    pub fn channel_names(&self) -> Vec<String> {
        self.map().keys().cloned().collect()
    }

    /// Bytes held by all rings: bounded by channels x 5 x max segment size.
    pub fn held_bytes(&self) -> usize {
        self.map().values().map(|c| c.held_bytes()).sum()
    }

    /// Counts a POST ended by the POST idle timeout, warns (at most once per
    /// [`WARN_EVERY`], with the count since the last warning) and answers it.
    fn post_timed_out(&self, channel: &str, seq: i64, bytes: usize) -> Response<Body> {
        self.stats.posts_timed_out.fetch_add(1, Ordering::Relaxed);
        let timeout = self.config.post_idle_timeout;
        {
            let mut unwarned = self.timeouts_unwarned.lock_ignoring_poison();
            unwarned.0 += 1;
            let now = tokio::time::Instant::now();
            if unwarned
                .1
                .is_none_or(|t| now.duration_since(t) >= WARN_EVERY)
            {
                warn!(
                    channel,
                    seq,
                    bytes,
                    ?timeout,
                    since_last_warning = unwarned.0,
                    "POST sent no byte within the POST idle timeout; ended it and released its seq"
                );
                *unwarned = (0, Some(now));
            }
        }
        let mut r = text(
            StatusCode::REQUEST_TIMEOUT,
            &format!(
                "No body byte for {} ms (post idle timeout) on segment {seq}: ended, seq released",
                timeout.as_millis()
            ),
        );
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        r
    }

    /// Closes channels with no new segment within the idle timeout.
    pub fn sweep_idle(&self) -> usize {
        let now = tokio::time::Instant::now();
        let idle: Vec<String> = self
            .map()
            .values()
            .filter(|c| now.duration_since(c.last_write()) > self.config.idle_timeout)
            .map(|c| c.name().to_string())
            .collect();
        for name in &idle {
            info!(channel = %name, "closing idle channel");
            self.close_channel(name);
        }
        idle.len()
    }
}

/// A server accepting connections in the background.
#[derive(Debug)]
pub struct RunningServer {
    pub state: Arc<ServerState>,
    local_addr: SocketAddr,
    /// Stops the accept loop and the idle sweep; dropping it does too.
    stop: ShutdownTrigger,
    serve_task: JoinHandle<()>,
    sweep_task: JoinHandle<()>,
}

impl RunningServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://addr/ai/trickle/` for building channel URLs.
    pub fn base_url(&self) -> String {
        format!("http://{}{}", self.local_addr, self.state.config.base_path)
    }

    /// Stops accepting, closes every channel (readers see end of stream) and
    /// drops open connections.
    pub async fn shutdown(self) {
        for name in self.state.channel_names() {
            self.state.close_channel(&name);
        }
        self.stop.trigger();
        let _ = self.serve_task.await;
        let _ = self.sweep_task.await;
    }

    /// Stops at once, like a crash: connections are dropped mid-stream,
    /// channels are not closed. Returns once every socket is closed, so a
    /// peer's next move meets a dead server, not one still dying.
    pub async fn kill(self) {
        self.stop.trigger();
        self.sweep_task.abort();
        let _ = self.serve_task.await;
        let _ = self.sweep_task.await;
    }
}

impl ServerConfig {
    /// The accept loop's limits for this server. Shutdown keeps no grace
    /// period: its channels were closed first, so readers already saw their
    /// streams end, and what is left open is dropped at once.
    pub fn serve_limits(&self) -> ServeLimits {
        ServeLimits {
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            header_read_timeout: self.header_read_timeout,
            shutdown_grace: Duration::ZERO,
            accept_error_pause: Duration::from_millis(50),
        }
    }
}

/// Binds and starts serving; returns once the socket is listening.
pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.listen,
        source,
    })?;
    let state = ServerState::new(config)?;
    let (stop, shutdown) = ShutdownTrigger::new();
    let limits = state.config.serve_limits();
    let serve_task = tokio::spawn(serve_connections(
        listener,
        TrickleConnections {
            state: state.clone(),
        },
        limits,
        shutdown.clone(),
    ));
    let sweep_task = tokio::spawn(sweep_idle_channels(state.clone(), shutdown));
    info!(%local_addr, base = %state.config.base_path, "trickle server listening");
    Ok(RunningServer {
        state,
        local_addr,
        stop,
        serve_task,
        sweep_task,
    })
}

/// Serves the HTTP/1 requests of one connection on any byte stream, exactly
/// as a connection accepted by [`start`] is served (interim responses, the
/// header timeout), until the peer closes it or it fails. For in-memory
/// streams: the fuzz target `server_requests` drives it over a duplex pipe.
pub async fn serve_one_connection<T>(state: Arc<ServerState>, io: T) -> Result<(), hyper::Error>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (io, interim) = InterimIo::new(io);
    let service = TrickleService {
        state: state.clone(),
        interim,
    };
    hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(state.config.header_read_timeout)
        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
        .await
}

/// Closes idle channels every `sweep_interval` until `shutdown` fires.
async fn sweep_idle_channels(state: Arc<ServerState>, mut shutdown: Shutdown) {
    let mut sweep = tokio::time::interval(state.config.sweep_interval);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.recv() => break,
            _ = sweep.tick() => { state.sweep_idle(); }
        }
    }
}

/// Sets up each connection of one server: the socket is wrapped so an idle
/// POST's handler can send interim responses on it, and refusals are counted.
struct TrickleConnections {
    state: Arc<ServerState>,
}

impl Connections for TrickleConnections {
    type Io = InterimIo<TcpStream>;
    type Body = Body;
    type Service = TrickleService;

    fn open(&self, stream: TcpStream, _peer: SocketAddr) -> (Self::Io, TrickleService) {
        let _ = stream.set_nodelay(true);
        let (io, interim) = InterimIo::new(stream);
        let service = TrickleService {
            state: self.state.clone(),
            interim,
        };
        (io, service)
    }

    fn refused(&self, _peer: SocketAddr, why: Refusal) {
        let stats = &self.state.stats;
        stats.connections_refused.fetch_add(1, Ordering::Relaxed);
        if why == Refusal::PerIpLimit {
            stats
                .connections_refused_per_ip
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Answers the requests of one connection, with that connection's interim
/// handle. A named type (not `service_fn`) so [`TrickleConnections`] can say
/// what it returns.
struct TrickleService {
    state: Arc<ServerState>,
    interim: InterimHandle,
}

type Answer = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl Service<Request<Incoming>> for TrickleService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, req: Request<Incoming>) -> Answer {
        let state = self.state.clone();
        let interim = self.interim.clone();
        Box::pin(async move { Ok(handle(state, interim, req).await) })
    }
}

fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let mut r = Response::new(full(Bytes::copy_from_slice(msg.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn full(b: Bytes) -> Body {
    Full::new(b).map_err(|never| match never {}).boxed()
}

fn set_num(r: &mut Response<Body>, name: &'static str, n: i64) {
    r.headers_mut().insert(name, HeaderValue::from(n));
}

fn status_470() -> StatusCode {
    StatusCode::from_u16(470).expect("470 is a valid status code")
}

/// What a request path names below the base path.
#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    Channel(&'a str),
    Segment(&'a str, i64),
    Next(&'a str),
}

/// Why a request path names no [`Target`], with the status it is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum RouteError {
    /// Outside the base path, or deeper than `<channel>/<seq>`.
    #[error("Not found")]
    NotFound,
    #[error("Invalid channel name")]
    BadChannelName,
    /// A seq that is not a number, below -2, or not one a POST may name.
    #[error("Invalid idx")]
    BadIndex,
}

impl RouteError {
    fn status(self) -> StatusCode {
        match self {
            RouteError::NotFound => StatusCode::NOT_FOUND,
            RouteError::BadChannelName | RouteError::BadIndex => StatusCode::BAD_REQUEST,
        }
    }

    fn response(self) -> Response<Body> {
        text(self.status(), &self.to_string())
    }
}

fn parse_target<'a>(base: &str, path: &'a str) -> Result<Target<'a>, RouteError> {
    let rest = path.strip_prefix(base).ok_or(RouteError::NotFound)?;
    let mut parts = rest.split('/');
    let name = parts
        .next()
        .filter(|n| !n.is_empty())
        .ok_or(RouteError::NotFound)?;
    if !valid_channel_name(name) {
        return Err(RouteError::BadChannelName);
    }
    match (parts.next(), parts.next()) {
        (None, _) | (Some(""), None) => Ok(Target::Channel(name)),
        (Some("next"), None) => Ok(Target::Next(name)),
        (Some(seq), None) => seq
            .parse::<i64>()
            .ok()
            .filter(|s| super::headers::valid_seq(*s))
            .map(|s| Target::Segment(name, s))
            .ok_or(RouteError::BadIndex),
        _ => Err(RouteError::NotFound),
    }
}

fn authorized(state: &ServerState, req: &Request<Incoming>) -> bool {
    let Some(token) = &state.config.bearer_token else {
        return true;
    };
    let Some(given) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    // Constant-time comparison: the token must not leak through timing.
    let (a, b) = (given.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn handle(
    state: Arc<ServerState>,
    interim: InterimHandle,
    req: Request<Incoming>,
) -> Response<Body> {
    if !authorized(&state, &req) {
        let mut r = text(StatusCode::UNAUTHORIZED, "Unauthorized");
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let path = req.uri().path().to_string();
    let target = match parse_target(&state.config.base_path, &path) {
        Ok(t) => t,
        Err(e) => return e.response(),
    };
    match (req.method().clone(), target) {
        (Method::POST, Target::Channel(name)) => create(&state, name, &req),
        (Method::POST, Target::Segment(name, seq)) if seq >= -1 => {
            let name = name.to_string();
            post_segment(&state, &interim, &name, seq, req).await
        }
        (Method::GET, Target::Segment(name, seq)) => get_segment(&state, name, seq).await,
        (Method::GET, Target::Next(name)) => next_seq(&state, name),
        (Method::DELETE, Target::Segment(name, seq)) => delete_segment(&state, name, seq),
        (Method::DELETE, Target::Channel(name)) => {
            if state.close_channel(name) {
                text(StatusCode::OK, "")
            } else {
                text(StatusCode::BAD_REQUEST, "Invalid stream")
            }
        }
        (Method::POST, Target::Segment(..)) => RouteError::BadIndex.response(),
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"),
    }
}

fn create(state: &ServerState, name: &str, req: &Request<Incoming>) -> Response<Body> {
    if !state.config.allow_create && state.channel(name).is_none() {
        return text(StatusCode::NOT_FOUND, "Stream not found");
    }
    let content_type = req
        .headers()
        .get("Expect-Content")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match state.create_channel(name, content_type) {
        Ok(_) => text(StatusCode::OK, ""),
        Err(ServerError::TooManyChannels(n)) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("Too many channels (limit {n})"),
        ),
        Err(e) => text(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

fn next_seq(state: &ServerState, name: &str) -> Response<Body> {
    let Some(ch) = state.channel(name) else {
        return text(StatusCode::NOT_FOUND, "Stream not found");
    };
    let next = ch.next_write();
    let mut r = text(StatusCode::OK, &next.to_string());
    set_num(&mut r, HDR_LATEST, next);
    if ch.is_closed() {
        r.headers_mut()
            .insert(HDR_CLOSED, HeaderValue::from_static("terminated"));
    }
    r
}

fn delete_segment(state: &ServerState, name: &str, seq: i64) -> Response<Body> {
    let Some(ch) = state.channel(name) else {
        return text(StatusCode::NOT_FOUND, "Stream not found");
    };
    if ch.close_segment(seq) {
        text(StatusCode::OK, "")
    } else {
        text(StatusCode::BAD_REQUEST, "Nonexistent segment")
    }
}

fn closed_response(seq: i64) -> Response<Body> {
    let mut r = text(StatusCode::OK, "Entry not found");
    set_num(&mut r, HDR_SEQ, seq);
    r.headers_mut()
        .insert(HDR_CLOSED, HeaderValue::from_static("terminated"));
    r
}

/// The 470 answer. A seq that was the live edge before the publisher
/// restarted below it also carries `Lp-Trickle-Reset: 1`, our own hint that
/// `latest` is behind because the run began again, not because the reader
/// is early.
fn missing_response(m: Missing) -> Response<Body> {
    let mut r = text(status_470(), "Entry not found");
    set_num(&mut r, HDR_SEQ, m.seq);
    set_num(&mut r, HDR_LATEST, m.latest);
    if m.rewound {
        r.headers_mut()
            .insert(HDR_RESET, HeaderValue::from_static("1"));
    }
    r
}

async fn get_segment(state: &Arc<ServerState>, name: &str, seq: i64) -> Response<Body> {
    let Some(ch) = state.channel(name) else {
        return text(StatusCode::NOT_FOUND, "Stream not found");
    };
    let latest_at_request = ch.next_write();
    debug!(channel = name, seq, latest = latest_at_request, "GET");
    let seg = match ch.for_read(seq) {
        ReadSlot::Found(seg) => seg,
        ReadSlot::Missing(m) => return missing_response(m),
        ReadSlot::Closed { seq, .. } => return closed_response(seq),
    };
    let Some(mut reader) = seg.add_reader(state.config.max_readers_per_segment) else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "Too many readers");
    };
    // Headers go out with the first byte, as Livepeer's server does: a
    // preconnected reader learns nothing until the segment really begins.
    let first = match reader.next().await {
        ReadEvent::Data(b) => b,
        _ if ch.is_closed() => return closed_response(seg.seq()),
        ReadEvent::End => return ended_empty_response(seg.seq(), ch.next_write()),
        ReadEvent::Evicted => return missing_response(ch.missing(seg.seq())),
    };
    let stats_state = state.clone();
    let first_len = first.len() as u64;
    state
        .stats
        .bytes_out
        .fetch_add(first_len, Ordering::Relaxed);
    let stream = futures_util::stream::unfold(
        (Some(first), reader, stats_state),
        |(pending, mut reader, st)| async move {
            if let Some(b) = pending {
                return Some((Ok(Frame::data(b)), (None, reader, st)));
            }
            match reader.next().await {
                ReadEvent::Data(b) => {
                    st.stats
                        .bytes_out
                        .fetch_add(b.len() as u64, Ordering::Relaxed);
                    Some((Ok(Frame::data(b)), (None, reader, st)))
                }
                ReadEvent::End => None,
                ReadEvent::Evicted => Some((
                    Err(std::io::Error::other(format!(
                        "segment {} left the ring before this reader finished",
                        reader.segment().seq()
                    ))),
                    (None, reader, st),
                )),
            }
        },
    );
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    set_num(&mut r, HDR_SEQ, seg.seq());
    if seg.seq() != latest_at_request {
        set_num(&mut r, HDR_LATEST, latest_at_request);
    }
    r.headers_mut()
        .insert(header::CONTENT_TYPE, channel_content_type(&ch));
    r
}

/// The channel's type, whatever the POST said (Go's publisher sends
/// `video/MP2T` on JSON channels too); empty for a channel made without one,
/// as Livepeer's server answers, so readers sniff rather than trust a POST.
fn channel_content_type(ch: &Channel) -> HeaderValue {
    ch.content_type()
        .and_then(|t| HeaderValue::from_str(t).ok())
        .unwrap_or(HeaderValue::from_static(""))
}

/// A segment whose POST ended without a byte, on an open channel: 200 with
/// an empty body, so readers go on to the next seq without an error.
fn ended_empty_response(seq: i64, latest: i64) -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    set_num(&mut r, HDR_SEQ, seq);
    set_num(&mut r, HDR_LATEST, latest);
    r
}

async fn post_segment(
    state: &Arc<ServerState>,
    interim: &InterimHandle,
    name: &str,
    seq: i64,
    req: Request<Incoming>,
) -> Response<Body> {
    let Some(ch) = state.channel(name) else {
        let mut r = text(StatusCode::NOT_FOUND, "Stream not found");
        // Wakes preconnected publishers that would otherwise wait on this socket.
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    };
    let reset = req
        .headers()
        .get(HDR_RESET)
        .is_some_and(|v| v.as_bytes() == b"1" || v.as_bytes().eq_ignore_ascii_case(b"true"));
    let Some(_open) = ch.open_post(state.config.max_posts_per_channel) else {
        state.stats.posts_refused.fetch_add(1, Ordering::Relaxed);
        let limit = state.config.max_posts_per_channel;
        debug!(channel = name, limit, "open POST limit reached, refusing");
        let mut r = text(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Too many open POSTs on channel {name} (limit {limit})"),
        );
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    };
    debug!(channel = name, seq, reset, "POST");
    let seg = match ch.for_write(seq, reset) {
        WriteSlot::Claimed(seg) => seg,
        WriteSlot::Taken { seq } => {
            let mut r = text(
                StatusCode::CONFLICT,
                &format!("Segment {seq} is held by another POST"),
            );
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
        WriteSlot::Closed => {
            let mut r = text(StatusCode::OK, "");
            r.headers_mut()
                .insert(HDR_CLOSED, HeaderValue::from_static("terminated"));
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
    };
    let seq = seg.seq();
    let mut body = req.into_body();
    let mut total: usize = 0;
    let mut seg_changed = seg.watch();
    seg_changed.borrow_and_update();
    let interval = state.config.interim_interval;
    let idle_timeout = state.config.post_idle_timeout;
    let mut interim_due =
        tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    // How often a waiting POST looks whether the segment before it ended.
    let mut look = tokio::time::interval(
        (idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1)),
    );
    // When this POST became the channel's current write without a byte.
    let mut current_since: Option<tokio::time::Instant> = None;

    // Before the first byte: wait for data, answer closure, keep the socket
    // alive with interim responses, and give the seq up once this POST has
    // been the current write for `idle_timeout` without a byte.
    let first = loop {
        tokio::select! {
            frame = body.frame() => break frame,
            _ = seg_changed.changed() => {
                if seg.is_closed() {
                    seg.detach_writer();
                    ch.advance_past(seq);
                    let mut r = text(StatusCode::OK, "");
                    set_num(&mut r, HDR_SEQ, seq);
                    if ch.is_closed() {
                        r.headers_mut().insert(HDR_CLOSED, HeaderValue::from_static("terminated"));
                    }
                    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                    return r;
                }
            }
            _ = interim_due.tick() => {
                debug!(channel = name, seq, "idle POST: sending 100 Continue");
                state.stats.interim_sent.fetch_add(1, Ordering::Relaxed);
                interim.send_continue();
            }
            _ = look.tick() => {
                if ch.waits_behind(seq) {
                    current_since = None;
                } else if current_since
                    .get_or_insert_with(tokio::time::Instant::now)
                    .elapsed()
                    >= idle_timeout
                {
                    ch.writer_failed(&seg);
                    return state.post_timed_out(name, seq, 0);
                }
            }
        }
    };

    let mut next = first;
    loop {
        match next {
            None => break,
            Some(Err(e)) => {
                debug!(channel = name, seq, error = %e, bytes = total, "POST body failed");
                if total == 0 {
                    ch.writer_failed(&seg);
                } else {
                    seg.close();
                }
                // The client's body broke (bad chunked framing, or the
                // client went away mid-body): its fault, not the server's.
                let mut r = text(
                    StatusCode::BAD_REQUEST,
                    &format!("Malformed request body: {e}"),
                );
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return r;
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data()
                    && !data.is_empty()
                {
                    if total == 0 {
                        ch.advance_past(seq);
                    }
                    total += data.len();
                    if total > state.config.max_segment_bytes {
                        seg.close();
                        state
                            .stats
                            .rejected_oversize
                            .fetch_add(1, Ordering::Relaxed);
                        warn!(
                            channel = name,
                            seq,
                            limit = state.config.max_segment_bytes,
                            "segment over size limit, closed"
                        );
                        let mut r = text(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            &format!("Segment exceeds {} bytes", state.config.max_segment_bytes),
                        );
                        r.headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                        return r;
                    }
                    state
                        .stats
                        .bytes_in
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                    // A closed segment (deleted, evicted, channel closed) drops
                    // the rest; the POST is still drained and answered.
                    seg.append(data);
                }
            }
        }
        next = match tokio::time::timeout(idle_timeout, body.frame()).await {
            Ok(frame) => frame,
            Err(_) => {
                // Readers keep what arrived; the seq is not wedged.
                if total == 0 {
                    ch.writer_failed(&seg);
                } else {
                    seg.close();
                }
                return state.post_timed_out(name, seq, total);
            }
        };
    }

    if total == 0 {
        // Nothing was written: a later POST may still fill this seq.
        seg.detach_writer();
    }
    seg.close();
    if total == 0 {
        ch.advance_past(seq);
        let mut r = text(StatusCode::OK, "");
        set_num(&mut r, HDR_SEQ, seq);
        if ch.is_closed() {
            r.headers_mut()
                .insert(HDR_CLOSED, HeaderValue::from_static("terminated"));
        }
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    state.stats.segments_written.fetch_add(1, Ordering::Relaxed);
    debug!(channel = name, seq, bytes = total, "segment written");
    let mut r = text(StatusCode::OK, "");
    set_num(&mut r, HDR_SEQ, seq);
    if ch.is_closed() {
        r.headers_mut()
            .insert(HDR_CLOSED, HeaderValue::from_static("terminated"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let b = "/ai/trickle/";
        assert_eq!(
            parse_target(b, "/ai/trickle/abc"),
            Ok(Target::Channel("abc"))
        );
        assert_eq!(
            parse_target(b, "/ai/trickle/abc/"),
            Ok(Target::Channel("abc"))
        );
        assert_eq!(
            parse_target(b, "/ai/trickle/abc/7"),
            Ok(Target::Segment("abc", 7))
        );
        assert_eq!(
            parse_target(b, "/ai/trickle/abc/-2"),
            Ok(Target::Segment("abc", -2))
        );
        assert_eq!(
            parse_target(b, "/ai/trickle/abc/next"),
            Ok(Target::Next("abc"))
        );
        assert_eq!(
            parse_target(b, "/ai/trickle/abc/-3"),
            Err(RouteError::BadIndex)
        );
        assert_eq!(
            parse_target(b, "/ai/trickle/abc/x"),
            Err(RouteError::BadIndex)
        );
        assert_eq!(parse_target(b, "/other/abc"), Err(RouteError::NotFound));
        assert_eq!(parse_target(b, "/ai/trickle/"), Err(RouteError::NotFound));
        assert_eq!(
            parse_target(b, "/ai/trickle/a%20b"),
            Err(RouteError::BadChannelName)
        );
        assert_eq!(
            parse_target(b, "/ai/trickle/a/1/2"),
            Err(RouteError::NotFound)
        );
    }

    #[test]
    fn route_errors_answer_with_their_status_and_text() {
        let answers = [
            (RouteError::NotFound, 404, "Not found"),
            (RouteError::BadChannelName, 400, "Invalid channel name"),
            (RouteError::BadIndex, 400, "Invalid idx"),
        ];
        for (e, status, msg) in answers {
            assert_eq!(e.status().as_u16(), status, "{e:?}");
            assert_eq!(e.to_string(), msg);
        }
    }
}
