//! Publishing segments to a trickle channel, the way Livepeer's clients do.
//!
//! While segment N streams, the POST for N+1 is already open with no body, so
//! switching segments costs no round trip. A POST that failed before the
//! server took any of its body is retried on the same seq every
//! `unsent_retry_interval`, up to `unsent_retries` times, with the bytes it
//! never sent: as go-livepeer's publisher does, this rides out a server
//! restart of a second or two. 404 is terminal (the channel does not exist);
//! so are `max_consecutive_failures` failed segments in a row (a segment
//! counts once, however often it was retried). A write that cannot hand its bytes to the HTTP body
//! within `write_timeout` fails the segment rather than blocking the caller.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::client::{ClientError, ClientOptions, HttpClient, RequestBody, empty_body, header_i64};
use super::headers::{HDR_CLOSED, HDR_LATEST, HDR_RESET, HDR_SEQ};
use crate::backoff::{Backoff, BackoffConfig};
use crate::sync::LockIgnoringPoison;

#[derive(Debug, Clone)]
pub struct PublisherOptions {
    pub client: ClientOptions,
    /// `Content-Type` of every segment, e.g. `video/MP2T`.
    pub content_type: String,
    /// First seq to write. `None` asks the server (`GET <channel>/next`) and
    /// sends `Lp-Trickle-Reset` on the first POST, as a restarted publisher must.
    /// `Some(-1)` posts at `-1` and learns the seq from the server's answer.
    pub start_seq: Option<i64>,
    pub write_timeout: Duration,
    pub max_consecutive_failures: u32,
    /// Pause between a failed segment and the next attempt.
    pub retry: BackoffConfig,
    /// Pause before posting a segment again whose POST failed before the
    /// server took a byte (refused while the server restarts, say).
    pub unsent_retry_interval: Duration,
    /// How often one such segment is posted again before it fails.
    pub unsent_retries: u32,
    /// How long to wait for the server's answer once a body has ended.
    pub response_timeout: Duration,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        Self {
            client: ClientOptions::default(),
            content_type: "video/MP2T".into(),
            start_seq: None,
            write_timeout: Duration::from_secs(5),
            max_consecutive_failures: 3,
            retry: BackoffConfig::new(Duration::from_millis(100), Duration::from_secs(2))
                .expect("static backoff bounds are valid"),
            unsent_retry_interval: Duration::from_millis(250),
            unsent_retries: 8,
            response_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("channel {url} does not exist (404)")]
    ChannelNotFound { url: String },
    #[error("channel {url} was closed by the server")]
    ChannelClosed { url: String },
    #[error("{failures} consecutive segment failures on {url}; last: {last}")]
    TooManyFailures {
        url: String,
        failures: u32,
        last: String,
    },
    #[error("segment {seq} of {url} failed: {reason}")]
    Segment {
        url: String,
        seq: i64,
        reason: String,
    },
    #[error("segment {seq} of {url}: no room in the HTTP body for {timeout:?}")]
    WriteTimeout {
        url: String,
        seq: i64,
        timeout: Duration,
    },
}

impl PublishError {
    /// Errors after which this publisher will not write again.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            PublishError::ChannelNotFound { .. }
                | PublishError::ChannelClosed { .. }
                | PublishError::TooManyFailures { .. }
                | PublishError::Client(ClientError::BadUrl { .. } | ClientError::Tls(_))
        )
    }
}

/// Counters a publisher keeps; cheap to read at any time.
#[derive(Debug, Default)]
pub struct PublisherStats {
    pub segments_ok: AtomicU64,
    pub segments_failed: AtomicU64,
    pub bytes: AtomicU64,
    pub retries: AtomicU64,
}

#[derive(Debug, Default)]
struct Shared {
    consecutive_failures: AtomicU32,
    last_failure: Mutex<String>,
    terminal: Mutex<Option<String>>,
    /// seq the server assigned to a `-1` POST, when we could not ask `/next`.
    learned_seq: Mutex<Option<i64>>,
    stats: PublisherStats,
}

impl Shared {
    fn failed(&self, reason: &str) {
        self.consecutive_failures.fetch_add(1, Ordering::AcqRel);
        self.stats.segments_failed.fetch_add(1, Ordering::Relaxed);
        *self.last_failure.lock_ignoring_poison() = reason.to_string();
    }

    fn set_terminal(&self, reason: String) {
        *self.terminal.lock_ignoring_poison() = Some(reason);
    }
}

/// The answer to one POST, read after its body ended.
#[derive(Debug)]
struct PostOutcome {
    status: StatusCode,
    seq: Option<i64>,
    closed: bool,
    message: String,
}

/// Why a POST produced no answer to read. A segment failing for one of
/// these counts towards `max_consecutive_failures`, like a non-200 answer.
#[derive(Debug, thiserror::Error)]
enum PostError {
    /// Connecting, sending or reading the response head failed.
    #[error("{0}")]
    Client(#[source] ClientError),
    /// The task awaiting the answer panicked or was cancelled.
    #[error("request task ended: {0}")]
    TaskEnded(#[source] tokio::task::JoinError),
    /// The body ended but the server did not answer within `response_timeout`.
    #[error("no answer within {0:?}")]
    NoAnswer(Duration),
}

/// Request body fed from a bounded channel; records whether hyper took any
/// bytes (only then may the server have seen some of the segment).
struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, io::Error>>,
    consumed: Arc<AtomicBool>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(b))) => {
                self.consumed.store(true, Ordering::Release);
                Poll::Ready(Some(Ok(Frame::data(b))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A POST in flight: its body sender and the task awaiting its answer.
struct PendingPost {
    seq: i64,
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    consumed: Arc<AtomicBool>,
    /// The body was ended on purpose to read the answer.
    finishing: bool,
    response: JoinHandle<Result<PostOutcome, ClientError>>,
}

impl PendingPost {
    fn is_dead(&self) -> bool {
        self.response.is_finished() || self.tx.is_closed()
    }
}

impl Drop for PendingPost {
    fn drop(&mut self) {
        // An unused preconnect is abandoned, not completed: completing it
        // would publish an empty segment and move the server's position.
        // The body gets an error, not a clean end: hyper then resets the
        // request rather than sending the terminating chunk.
        if !self.finishing && !self.consumed.load(Ordering::Acquire) {
            let _ = self
                .tx
                .try_send(Err(io::Error::other("preconnect abandoned")));
            self.response.abort();
        }
    }
}

#[derive(Clone)]
struct Poster {
    client: HttpClient,
    url: Arc<str>,
    content_type: HeaderValue,
}

impl Poster {
    fn open(&self, seq: i64, reset: bool) -> PendingPost {
        let (tx, rx) = mpsc::channel(8);
        let consumed = Arc::new(AtomicBool::new(false));
        let body: RequestBody = ChannelBody {
            rx,
            consumed: consumed.clone(),
        }
        .boxed();
        let client = self.client.clone();
        let url = format!("{}/{}", self.url, seq);
        let mut headers = vec![("content-type", self.content_type.clone())];
        if reset {
            headers.push((HDR_RESET, HeaderValue::from_static("1")));
        }
        let response = tokio::spawn(async move {
            let resp = client.send(Method::POST, &url, &headers, body).await?;
            let status = resp.status();
            let seq = header_i64(&resp, HDR_SEQ);
            let closed = resp.headers().contains_key(HDR_CLOSED);
            let message = match resp.into_body().collect().await {
                Ok(b) => String::from_utf8_lossy(&b.to_bytes()).trim().to_string(),
                Err(_) => String::new(),
            };
            Ok(PostOutcome {
                status,
                seq,
                closed,
                message,
            })
        });
        PendingPost {
            seq,
            tx,
            consumed,
            finishing: false,
            response,
        }
    }
}

/// Publishes consecutive segments to one channel.
pub struct Publisher {
    poster: Poster,
    opts: PublisherOptions,
    /// Next seq to write; `None` while the server's position is unknown.
    next_seq: Option<i64>,
    send_reset: bool,
    preconnected: Option<PendingPost>,
    shared: Arc<Shared>,
    backoff: Backoff,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("url", &self.poster.url)
            .field("next_seq", &self.next_seq)
            .finish()
    }
}

/// Creates a channel (`POST <channel>` with `Expect-Content`).
pub async fn create_channel(
    client: &HttpClient,
    url: &str,
    content_type: &str,
) -> Result<(), PublishError> {
    let ct = HeaderValue::from_str(content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let resp = client
        .send(Method::POST, url, &[("expect-content", ct)], empty_body())
        .await?;
    match resp.status() {
        StatusCode::OK => Ok(()),
        StatusCode::NOT_FOUND => Err(PublishError::ChannelNotFound { url: url.into() }),
        s => Err(PublishError::Segment {
            url: url.into(),
            seq: -1,
            reason: format!("create answered {s}"),
        }),
    }
}

impl Publisher {
    /// Connects to `url` (a channel URL such as `http://host/ai/trickle/abc`)
    /// and opens the first POST right away.
    pub async fn connect(url: &str, opts: PublisherOptions) -> Result<Self, PublishError> {
        let client = HttpClient::new(&opts.client)?;
        super::client::parse_url(url)?;
        let url: Arc<str> = Arc::from(url.trim_end_matches('/'));
        let content_type =
            HeaderValue::from_str(&opts.content_type).map_err(|_| ClientError::BadUrl {
                url: url.to_string(),
                reason: format!("content type {:?} is not a valid header", opts.content_type),
            })?;
        if let Some(seq) = opts.start_seq.filter(|s| !super::headers::valid_seq(*s)) {
            return Err(ClientError::BadUrl {
                url: url.to_string(),
                reason: format!(
                    "start seq {seq} is out of range (-2 to {})",
                    super::headers::MAX_SEQ
                ),
            }
            .into());
        }
        let (next_seq, send_reset) = match opts.start_seq {
            // -1: let the server place each segment until it tells us where.
            Some(seq) if seq < 0 => (None, false),
            Some(seq) => (Some(seq), false),
            None => (Self::resolve_next(&client, &url).await?, true),
        };
        let mut publisher = Self {
            poster: Poster {
                client,
                url,
                content_type,
            },
            backoff: opts.retry.start(),
            opts,
            next_seq,
            send_reset,
            preconnected: None,
            shared: Arc::new(Shared::default()),
        };
        if let Some(seq) = publisher.next_seq {
            publisher.preconnected = Some(publisher.poster.open(seq, publisher.send_reset));
        }
        Ok(publisher)
    }

    /// Asks the server where to write. `Ok(None)` when it answers but cannot
    /// say (an older server without `/next`): the first POST then goes to `-1`.
    /// An unreachable server is an error, for the caller to retry.
    async fn resolve_next(client: &HttpClient, url: &str) -> Result<Option<i64>, PublishError> {
        let next_url = format!("{url}/next");
        // A server that accepts but never answers must not hang us forever.
        let asked = tokio::time::timeout(
            Duration::from_secs(10),
            client.send(Method::GET, &next_url, &[], empty_body()),
        )
        .await;
        let resp = match asked {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {
                return Err(PublishError::Segment {
                    url: url.into(),
                    seq: -1,
                    reason: "no answer to GET /next within 10 s".into(),
                });
            }
        };
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(PublishError::ChannelNotFound { url: url.into() });
        }
        if resp.headers().contains_key(HDR_CLOSED) {
            return Err(PublishError::ChannelClosed { url: url.into() });
        }
        let header = header_i64(&resp, HDR_LATEST);
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let seq = header.or_else(|| {
            std::str::from_utf8(&body)
                .ok()?
                .trim()
                .parse()
                .ok()
                .filter(|s| super::headers::valid_seq(*s))
        });
        match (status, seq) {
            (StatusCode::OK, Some(seq)) => {
                info!(url, seq, "resuming at the server's position");
                Ok(Some(seq))
            }
            _ => Ok(None),
        }
    }

    pub fn url(&self) -> &str {
        &self.poster.url
    }

    pub fn stats(&self) -> &PublisherStats {
        &self.shared.stats
    }

    /// The seq the next segment will get, when known.
    pub fn next_seq(&self) -> Option<i64> {
        self.next_seq.or_else(|| {
            self.shared
                .learned_seq
                .lock()
                .ok()
                .and_then(|s| s.map(|v| v + 1))
        })
    }

    /// Whether the POST for the next segment is open and not known to have
    /// failed. One that died with its server is noticed only once its
    /// socket reports it; a segment started on it before then may fail.
    pub fn preconnect_alive(&self) -> bool {
        self.preconnected.as_ref().is_some_and(|p| !p.is_dead())
    }

    fn check_terminal(&self) -> Result<(), PublishError> {
        if let Some(reason) = self.shared.terminal.lock_ignoring_poison().clone() {
            return Err(PublishError::Segment {
                url: self.poster.url.to_string(),
                seq: self.next_seq.unwrap_or(-1),
                reason,
            });
        }
        let failures = self.shared.consecutive_failures.load(Ordering::Acquire);
        if failures >= self.opts.max_consecutive_failures {
            let last = self.shared.last_failure.lock_ignoring_poison().clone();
            let err = PublishError::TooManyFailures {
                url: self.poster.url.to_string(),
                failures,
                last,
            };
            self.shared.set_terminal(err.to_string());
            return Err(err);
        }
        Ok(())
    }

    /// Starts the next segment. Its POST is usually already open; the one after
    /// it is opened before this returns.
    pub async fn next_segment(&mut self) -> Result<SegmentUpload, PublishError> {
        self.check_terminal()?;
        if self.shared.consecutive_failures.load(Ordering::Acquire) > 0 {
            self.backoff.wait().await;
        } else {
            self.backoff.reset();
        }
        if self.next_seq.is_none() {
            let learned = *self.shared.learned_seq.lock_ignoring_poison();
            self.next_seq = learned.map(|s| s + 1);
        }
        let reset = std::mem::take(&mut self.send_reset);
        let post = match (self.next_seq, self.preconnected.take()) {
            (Some(seq), Some(p)) if p.seq == seq && !p.is_dead() => p,
            (Some(seq), stale) => {
                if let Some(p) = stale
                    && p.is_dead()
                {
                    warn!(url = %self.poster.url, seq, finished = p.response.is_finished(), closed = p.tx.is_closed(), "preconnected POST died before use; reopening");
                    self.shared.stats.retries.fetch_add(1, Ordering::Relaxed);
                }
                self.poster.open(seq, reset)
            }
            (None, _) => self.poster.open(-1, reset),
        };
        let seq = post.seq;
        if let Some(s) = self.next_seq.as_mut() {
            *s += 1;
            self.preconnected = Some(self.poster.open(*s, false));
        }
        Ok(SegmentUpload {
            poster: self.poster.clone(),
            post: Some(post),
            seq,
            reset,
            unsent: Vec::new(),
            retries_left: self.opts.unsent_retries,
            retry_interval: self.opts.unsent_retry_interval,
            bytes: 0,
            write_timeout: self.opts.write_timeout,
            response_timeout: self.opts.response_timeout,
            shared: self.shared.clone(),
            failed: false,
        })
    }

    /// Closes the channel for everyone (`DELETE <channel>`).
    pub async fn close(mut self) -> Result<(), PublishError> {
        self.preconnected = None;
        let url = self.poster.url.to_string();
        let resp = self
            .poster
            .client
            .send(Method::DELETE, &url, &[], empty_body())
            .await?;
        match resp.status() {
            StatusCode::OK | StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND => Ok(()),
            s => Err(PublishError::Segment {
                url,
                seq: -1,
                reason: format!("DELETE answered {s}"),
            }),
        }
    }
}

/// Report of a completed segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentReport {
    pub seq: i64,
    pub bytes: u64,
}

/// One segment on its way to the server: its bytes stream into the body of
/// one POST (`write`); `finish` ends the body and waits for the answer.
pub struct SegmentUpload {
    poster: Poster,
    post: Option<PendingPost>,
    seq: i64,
    reset: bool,
    /// Bytes handed to a POST that has not taken any yet: what a retry of
    /// the same seq must send. Emptied once the POST takes a byte.
    unsent: Vec<Bytes>,
    retries_left: u32,
    retry_interval: Duration,
    bytes: u64,
    write_timeout: Duration,
    response_timeout: Duration,
    shared: Arc<Shared>,
    failed: bool,
}

impl std::fmt::Debug for SegmentUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentUpload")
            .field("seq", &self.seq)
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl SegmentUpload {
    /// The seq being written (`-1` until the server names it, on old servers).
    pub fn seq(&self) -> i64 {
        self.seq
    }

    fn fail(&mut self, reason: String) -> PublishError {
        if !self.failed {
            self.failed = true;
            warn!(url = %self.poster.url, seq = self.seq, %reason, "segment failed");
            self.shared.failed(&reason);
        }
        self.post = None;
        PublishError::Segment {
            url: self.poster.url.to_string(),
            seq: self.seq,
            reason,
        }
    }

    /// Hands bytes to the HTTP body, waiting at most `write_timeout` for room.
    pub async fn write(&mut self, data: Bytes) -> Result<(), PublishError> {
        if data.is_empty() {
            return Ok(());
        }
        loop {
            let Some(post) = self.post.as_ref() else {
                return Err(self.fail("segment already failed".into()));
            };
            match tokio::time::timeout(self.write_timeout, post.tx.send(Ok(data.clone()))).await {
                Ok(Ok(())) => {
                    if post.consumed.load(Ordering::Acquire) {
                        self.unsent.clear();
                    } else {
                        self.unsent.push(data.clone());
                    }
                    self.bytes += data.len() as u64;
                    self.shared
                        .stats
                        .bytes
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                    return Ok(());
                }
                Ok(Err(_)) => {
                    // The POST ended under us. If the server never saw a byte,
                    // the same seq can safely be tried again.
                    let post = self.post.take().expect("checked above");
                    let consumed = post.consumed.clone();
                    let outcome = post_outcome(post).await;
                    if let Some(err) = self.terminal_from(&outcome) {
                        return Err(err);
                    }
                    if !consumed.load(Ordering::Acquire) && self.post_again(&outcome).await {
                        continue;
                    }
                    return Err(self.fail(describe(&outcome)));
                }
                Err(_) => {
                    // Abort the body so the server closes the segment for readers.
                    let _ = post.tx.try_send(Err(io::Error::other("write timeout")));
                    let _ = self.fail(format!(
                        "no room in the HTTP body for {:?}",
                        self.write_timeout
                    ));
                    return Err(PublishError::WriteTimeout {
                        url: self.poster.url.to_string(),
                        seq: self.seq,
                        timeout: self.write_timeout,
                    });
                }
            }
        }
    }

    /// After a POST that failed before the server took a byte: waits
    /// `retry_interval`, opens the same seq again and hands it the bytes the
    /// failed one never sent. False once this segment's retries are spent.
    async fn post_again(&mut self, outcome: &Result<PostOutcome, PostError>) -> bool {
        if self.retries_left == 0 {
            return false;
        }
        self.retries_left -= 1;
        self.shared.stats.retries.fetch_add(1, Ordering::Relaxed);
        debug!(url = %self.poster.url, seq = self.seq, reason = %describe(outcome), left = self.retries_left, "POST failed before its body; posting it again");
        tokio::time::sleep(self.retry_interval).await;
        let post = self.poster.open(self.seq, self.reset);
        // No more chunks than the failed POST's queue held, so there is room;
        // should this POST die too, the next send or `finish` finds out.
        for chunk in &self.unsent {
            let _ = post.tx.try_send(Ok(chunk.clone()));
        }
        self.post = Some(post);
        true
    }

    fn terminal_from(&mut self, outcome: &Result<PostOutcome, PostError>) -> Option<PublishError> {
        let url = self.poster.url.to_string();
        match outcome {
            Ok(o) if o.status == StatusCode::NOT_FOUND => {
                let err = PublishError::ChannelNotFound { url };
                self.shared.set_terminal(err.to_string());
                Some(err)
            }
            Ok(o) if o.closed => {
                let err = PublishError::ChannelClosed { url };
                self.shared.set_terminal(err.to_string());
                Some(err)
            }
            _ => None,
        }
    }

    /// Ends the segment and waits for the server to confirm it.
    pub async fn finish(mut self) -> Result<SegmentReport, PublishError> {
        loop {
            let Some(post) = self.post.take() else {
                return Err(self.fail("segment already failed".into()));
            };
            let consumed = post.consumed.clone();
            let outcome =
                match tokio::time::timeout(self.response_timeout, post_outcome(post)).await {
                    Ok(o) => o,
                    Err(_) => Err(PostError::NoAnswer(self.response_timeout)),
                };
            if let Some(err) = self.terminal_from(&outcome) {
                return Err(err);
            }
            let answered = matches!(&outcome, Ok(o) if o.status == StatusCode::OK);
            if !answered && !consumed.load(Ordering::Acquire) && self.post_again(&outcome).await {
                continue;
            }
            return self.report(outcome);
        }
    }

    /// The segment's result from its POST's final answer.
    fn report(
        &mut self,
        outcome: Result<PostOutcome, PostError>,
    ) -> Result<SegmentReport, PublishError> {
        match outcome {
            Ok(o) if o.status == StatusCode::OK => {
                if let Some(server_seq) = o.seq {
                    if self.seq == -1 {
                        self.seq = server_seq;
                        *self.shared.learned_seq.lock_ignoring_poison() = Some(server_seq);
                    } else if server_seq != self.seq {
                        warn!(url = %self.poster.url, ours = self.seq, server = server_seq, "server wrote a different seq");
                    }
                }
                self.shared.consecutive_failures.store(0, Ordering::Release);
                self.shared
                    .stats
                    .segments_ok
                    .fetch_add(1, Ordering::Relaxed);
                Ok(SegmentReport {
                    seq: self.seq,
                    bytes: self.bytes,
                })
            }
            other => Err(self.fail(describe(&other))),
        }
    }

    /// Abandons the segment: the server closes it for readers with the bytes
    /// already sent, and it does not count as a publisher failure.
    pub fn abort(mut self) {
        if let Some(post) = self.post.take() {
            // The error is queued before the sender drops, so hyper sees it
            // and aborts the request instead of ending the body cleanly.
            let _ = post.tx.try_send(Err(io::Error::other("segment aborted")));
        }
    }
}

/// Ends the body (if still open) and waits for the server's answer.
async fn post_outcome(mut post: PendingPost) -> Result<PostOutcome, PostError> {
    post.finishing = true;
    // Replace the sender with a closed one so the body ends.
    let (closed_tx, _) = mpsc::channel(1);
    drop(std::mem::replace(&mut post.tx, closed_tx));
    match (&mut post.response).await {
        Ok(Ok(o)) => Ok(o),
        Ok(Err(e)) => Err(PostError::Client(e)),
        Err(e) => Err(PostError::TaskEnded(e)),
    }
}

/// The failure text a segment records (and `PublishError::Segment` carries)
/// when the POST did not end in a 200.
fn describe(outcome: &Result<PostOutcome, PostError>) -> String {
    match outcome {
        Ok(o) if o.message.is_empty() => format!("server answered {}", o.status),
        Ok(o) => format!("server answered {}: {}", o.status, o.message),
        Err(e) => e.to_string(),
    }
}
