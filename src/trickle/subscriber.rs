//! Reading a trickle channel segment by segment, as Livepeer's clients do.
//!
//! As soon as segment N's headers arrive, the GET for N+1 is opened, so the
//! next segment starts streaming the moment the publisher begins it. A 470
//! jumps to the server's live edge (or waits, when we are ahead of it, unless
//! the server says with `Lp-Trickle-Reset` that the publisher restarted
//! below us: then back to its live edge); 404
//! and `Lp-Trickle-Closed` end the stream; 401 and 403 end it with an error
//! (the same credentials again cannot help); anything else is retried with
//! exponential backoff and full jitter. A preconnect that has waited
//! `idle_reissue` without an answer is re-issued, so an idle channel never
//! hangs on a connection that silently died.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::client::{ClientError, ClientOptions, HttpClient, empty_body, header_i64};
use super::headers::{HDR_CLOSED, HDR_LATEST, HDR_RESET, HDR_SEQ};
use crate::backoff::BackoffConfig;

/// How long a reader waits before asking again for a seq that later seqs
/// overtook, once, before skipping it.
const HOLE_WAIT: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
pub struct SubscriberOptions {
    pub client: ClientOptions,
    /// `-1`: the next segment to be written; `-2`: the one being written now;
    /// or an explicit seq.
    pub start_seq: i64,
    pub idle_reissue: Duration,
    /// Wait before asking again when we are ahead of the live edge.
    pub ahead_retry: Duration,
    pub retry: BackoffConfig,
    /// Consecutive failed attempts before giving up; `None` retries forever
    /// (an agent outlives server restarts).
    pub max_retries: Option<u32>,
}

impl Default for SubscriberOptions {
    fn default() -> Self {
        Self {
            client: ClientOptions::default(),
            start_seq: -1,
            idle_reissue: Duration::from_secs(20),
            ahead_retry: Duration::from_millis(250),
            // Capped at 3 s: after an outage the next try comes within 3 s
            // of the link healing, so data resumes within ~5 s of it.
            retry: BackoffConfig::new(Duration::from_millis(500), Duration::from_secs(3))
                .expect("static backoff bounds are valid"),
            max_retries: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("GET {url} failed {attempts} times; last: {last}")]
    GaveUp {
        url: String,
        attempts: u32,
        last: String,
    },
    /// The server refused our credentials: terminal, since a retry sends
    /// the same ones.
    #[error(
        "GET {url} answered {status}: {body} (check the bearer token: `[auth]` in the config, \
         or --token-file)"
    )]
    Unauthorized {
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("segment {seq} of {url} broke off after {bytes} bytes: {reason}")]
    Body {
        url: String,
        seq: i64,
        bytes: usize,
        reason: String,
    },
}

/// One segment being received: its seq, content type and a byte stream that
/// yields data as the publisher writes it.
#[derive(Debug)]
pub struct IncomingSegment {
    pub seq: i64,
    pub content_type: Option<String>,
    url: String,
    body: Incoming,
    received: usize,
}

impl IncomingSegment {
    /// The next bytes of the segment; `Ok(None)` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, SubscribeError> {
        loop {
            match self.body.frame().await {
                None => return Ok(None),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        self.received += data.len();
                        return Ok(Some(data));
                    }
                }
                Some(Err(e)) => {
                    return Err(SubscribeError::Body {
                        url: self.url.clone(),
                        seq: self.seq,
                        bytes: self.received,
                        reason: e.to_string(),
                    });
                }
            }
        }
    }

    /// Reads the rest of the segment into memory, refusing more than `limit` bytes.
    pub async fn collect(mut self, limit: usize) -> Result<Bytes, SubscribeError> {
        let mut buf = BytesMut::new();
        while let Some(chunk) = self.chunk().await? {
            if buf.len() + chunk.len() > limit {
                return Err(SubscribeError::Body {
                    url: self.url,
                    seq: self.seq,
                    bytes: buf.len() + chunk.len(),
                    reason: format!("segment larger than {limit} bytes"),
                });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }

    /// Bytes received so far.
    pub fn received(&self) -> usize {
        self.received
    }
}

/// What one GET attempt produced.
enum Attempt {
    Segment(IncomingSegment),
    /// 470: not held; `latest` is the server's next write seq; `restarted`
    /// when the server says the publisher began again below the seq asked.
    Missing {
        latest: Option<i64>,
        restarted: bool,
    },
    EndOfStream,
    /// 401/403: asking again with the same credentials cannot help.
    Refused {
        status: StatusCode,
        body: String,
    },
    Failed(String),
}

/// Follows one channel from a start position, segment after segment.
pub struct Subscriber {
    client: HttpClient,
    url: String,
    opts: SubscriberOptions,
    /// Seq the next GET asks for (may be -1 / -2 before the first answer).
    next_seq: i64,
    pending: Option<(i64, JoinHandle<Attempt>)>,
    ended: bool,
    /// Segments skipped by jumping to the live edge.
    pub skipped: u64,
    /// Reconnect attempts after failures.
    pub reconnects: u64,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("url", &self.url)
            .field("next_seq", &self.next_seq)
            .finish()
    }
}

async fn get(client: HttpClient, url: String, seq: i64) -> Attempt {
    let seg_url = format!("{url}/{seq}");
    let resp = match client.send(Method::GET, &seg_url, &[], empty_body()).await {
        Ok(r) => r,
        Err(e) => return Attempt::Failed(e.to_string()),
    };
    let status = resp.status();
    if status == StatusCode::NOT_FOUND || resp.headers().contains_key(HDR_CLOSED) {
        return Attempt::EndOfStream;
    }
    if status.as_u16() == 470 {
        return Attempt::Missing {
            latest: header_i64(&resp, HDR_LATEST),
            restarted: resp.headers().contains_key(HDR_RESET),
        };
    }
    if status != StatusCode::OK {
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return Attempt::Refused {
                status,
                body: String::from_utf8_lossy(&body).trim().to_string(),
            };
        }
        return Attempt::Failed(format!(
            "GET {seg_url} answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    let got_seq = header_i64(&resp, HDR_SEQ).unwrap_or(seq);
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Attempt::Segment(IncomingSegment {
        seq: got_seq,
        content_type,
        url,
        body: resp.into_body(),
        received: 0,
    })
}

impl Subscriber {
    pub fn new(url: &str, opts: SubscriberOptions) -> Result<Self, SubscribeError> {
        super::client::parse_url(url)?;
        if !super::headers::valid_seq(opts.start_seq) {
            return Err(ClientError::BadUrl {
                url: url.to_string(),
                reason: format!(
                    "start seq {} is out of range (-2 to {})",
                    opts.start_seq,
                    super::headers::MAX_SEQ
                ),
            }
            .into());
        }
        Ok(Self {
            client: HttpClient::new(&opts.client)?,
            url: url.trim_end_matches('/').to_string(),
            next_seq: opts.start_seq,
            opts,
            pending: None,
            ended: false,
            skipped: 0,
            reconnects: 0,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn spawn_get(&self, seq: i64) -> (i64, JoinHandle<Attempt>) {
        (
            seq,
            tokio::spawn(get(self.client.clone(), self.url.clone(), seq)),
        )
    }

    /// Whether the preconnected GET for the segment after the one last
    /// returned has been answered: the server sends headers only with a
    /// segment's first byte, so an answer means the publisher has begun a
    /// newer segment (or the server said why not: 470, an error), and the
    /// one being read will get no more company from its writer soon.
    pub fn newer_segment_began(&self) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|(seq, task)| *seq == self.next_seq && task.is_finished())
    }

    /// The next segment, or `Ok(None)` once the channel has ended.
    pub async fn next_segment(&mut self) -> Result<Option<IncomingSegment>, SubscribeError> {
        if self.ended {
            return Ok(None);
        }
        let mut backoff = self.opts.retry.start();
        let mut failures: u32 = 0;
        // 470s answered in a row by this call: after one jump to the live
        // edge the next GET should be held there, so a second miss means a
        // server that cannot serve its own edge (broken, hostile, or a
        // stand-in answering 470 to everything). Those are asked again no
        // faster than `ahead_retry`, never in a tight loop.
        let mut misses: u32 = 0;
        loop {
            let (seq, mut task) = match self.pending.take() {
                Some(p) if p.0 == self.next_seq => p,
                Some((_, stale)) => {
                    stale.abort();
                    self.spawn_get(self.next_seq)
                }
                None => self.spawn_get(self.next_seq),
            };
            let attempt = tokio::select! {
                r = &mut task => match r {
                    Ok(a) => a,
                    Err(e) => Attempt::Failed(format!("GET task ended: {e}")),
                },
                _ = tokio::time::sleep(self.opts.idle_reissue) => {
                    // Nothing for a long while: the connection may be dead
                    // without anyone noticing. Ask again on a fresh one.
                    debug!(url = %self.url, seq, "idle preconnect re-issued");
                    task.abort();
                    continue;
                }
            };
            match attempt {
                Attempt::Segment(seg) => {
                    if seq >= 0 && seg.seq != seq {
                        warn!(url = %self.url, asked = seq, got = seg.seq, "server answered another seq");
                    }
                    self.next_seq = seg.seq + 1;
                    self.pending = Some(self.spawn_get(self.next_seq));
                    return Ok(Some(seg));
                }
                Attempt::EndOfStream => {
                    info!(url = %self.url, seq, "end of stream");
                    self.ended = true;
                    return Ok(None);
                }
                Attempt::Missing { latest, restarted } => {
                    // The server answered: it is back. Failures before this
                    // must not keep the next one waiting up to the backoff's
                    // cap (a reader that reached a restarted server once
                    // would otherwise fall seconds behind at the next blip).
                    failures = 0;
                    backoff.reset();
                    misses += 1;
                    if misses > 1 {
                        debug!(url = %self.url, seq, misses, "470 again; pausing before the next GET");
                        tokio::time::sleep(self.opts.ahead_retry).await;
                    }
                    match latest {
                        Some(latest) if restarted => {
                            // The publisher began again below us: follow it back.
                            info!(url = %self.url, asked = seq, latest, "publisher restarted; following it back");
                            self.next_seq = latest;
                        }
                        Some(latest) if seq >= 0 && latest < seq => {
                            // Ahead of the live edge (e.g. the server restarted):
                            // the seq will exist soon; ask again shortly.
                            if misses == 1 {
                                tokio::time::sleep(self.opts.ahead_retry).await;
                            }
                        }
                        Some(latest)
                            if seq >= 0
                                && latest > seq
                                && latest - seq < super::channel::RING_SIZE as i64
                                && misses == 1 =>
                        {
                            // Later seqs began but this one never did, and
                            // the ring would still hold it: its POST may be
                            // on its way (the Python SDK's preconnects can
                            // reach a server out of order, and Livepeer's
                            // server and ours then still write it). Ask once
                            // more before skipping it.
                            debug!(url = %self.url, seq, latest, "segment not begun though later ones are; asking again before skipping it");
                            tokio::time::sleep(HOLE_WAIT).await;
                        }
                        Some(latest) => {
                            if seq >= 0 {
                                self.skipped += (latest - seq).max(0) as u64;
                            }
                            info!(url = %self.url, asked = seq, latest, "segment gone; jumping to the live edge");
                            self.next_seq = latest;
                        }
                        None if misses > 1 => {}
                        None => {
                            tokio::time::sleep(self.opts.ahead_retry).await;
                        }
                    }
                }
                Attempt::Refused { status, body } => {
                    self.ended = true;
                    return Err(SubscribeError::Unauthorized {
                        url: format!("{}/{}", self.url, seq),
                        status,
                        body,
                    });
                }
                Attempt::Failed(reason) => {
                    failures += 1;
                    self.reconnects += 1;
                    if let Some(max) = self.opts.max_retries
                        && failures > max
                    {
                        return Err(SubscribeError::GaveUp {
                            url: format!("{}/{}", self.url, seq),
                            attempts: failures,
                            last: reason,
                        });
                    }
                    if failures == 1 {
                        warn!(url = %self.url, seq, %reason, "GET failed; retrying with backoff");
                    } else {
                        debug!(url = %self.url, seq, %reason, failures, "GET failed again");
                    }
                    backoff.wait().await;
                }
            }
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if let Some((_, task)) = self.pending.take() {
            task.abort();
        }
    }
}
