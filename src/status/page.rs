//! The status page's routes on the supervisor address:
//!
//! | path | what |
//! |---|---|
//! | `/`, `/status` | the page (HTML, CSS and JS embedded in the binary) |
//! | `/status/stream` | `text/event-stream`: one `state` event every 500 ms; while it is open the camera encodes snapshots |
//! | `/status/snapshot.jpg` | the latest JPEG (404 before the first) |
//! | `/status/state.json` | one state, as the stream sends it |
//!
//! Each open stream holds a [`crate::media::snapshot::Viewer`] and a
//! [`super::feed::Watching`], so snapshot encoding and box copying run only
//! while someone looks, and stop when the browser goes (the next write
//! fails within 500 ms and drops the stream).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};

use super::feed::unix_ms;
use crate::agent::stats::AgentStats;
use crate::config::{AgentConfig, JobMode};
use crate::job::JobUrls;
use crate::media::redact_url;
use crate::rules::ZoneConfig;
use crate::sync::LockIgnoringPoison;

pub type Body = BoxBody<Bytes, Infallible>;

const PAGE_HTML: &str = include_str!("assets/page.html");
const PAGE_CSS: &str = include_str!("assets/page.css");
const PAGE_JS: &str = include_str!("assets/page.js");

/// How often the stream sends a state.
pub const STATE_EVERY: Duration = Duration::from_millis(500);
/// How often a new viewer's stream looks for its first fresh snapshot.
const FIRST_FRAME_POLL: Duration = Duration::from_millis(20);

/// What the page shows about the config: the job and the rules' zones.
/// Set at start, on a reload and on a job restart.
#[derive(Debug, Default)]
pub struct PageInfo {
    job: std::sync::Mutex<Value>,
    zones: std::sync::Mutex<Vec<Value>>,
}

impl PageInfo {
    pub fn set(&self, cfg: &AgentConfig, urls: &JobUrls) {
        let (peer_kind, peer) = match &cfg.job {
            JobMode::Static(_) => ("static", None),
            JobMode::Worker(w) => ("worker", Some(w.worker_url.clone())),
            JobMode::Byoc(b) => ("orchestrator", Some(b.orchestrator_url.clone())),
            // The orchestrator in use changes on failover: its address is
            // the host of the channel URLs below; here, where they came from.
            JobMode::Livepeer(l) => (
                "orchestrators",
                Some(if !l.orchestrators.is_empty() {
                    l.orchestrators.join(", ")
                } else if let Some(url) = &l.discovery_url {
                    redact_url(url)
                } else {
                    "discovered through the remote signer".to_string()
                }),
            ),
        };
        *self.job.lock_ignoring_poison() = json!({
            "mode": cfg.job.name(),
            "camera": {
                "source": redact_url(&cfg.camera.source),
                "width": cfg.camera.width,
                "height": cfg.camera.height,
                "fps": cfg.camera.fps,
            },
            "peer_kind": peer_kind,
            "peer": peer,
            "channels": {
                "publish": urls.publish,
                "subscribe": urls.subscribe,
                "control": urls.control,
                "events": urls.events,
                "data": urls.data,
            },
        });
        *self.zones.lock_ignoring_poison() = cfg
            .rules
            .iter()
            .filter_map(|r| {
                let zone = r.match_.as_ref()?.zone.as_ref()?;
                Some(match zone {
                    ZoneConfig::Rect(rect) => json!({"rule": r.name, "rect": rect}),
                    ZoneConfig::Polygon(p) => json!({"rule": r.name, "polygon": p}),
                })
            })
            .collect();
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

/// The page's static files: they hold no data, so they are served without
/// the token (the page then asks for it and sends it with each request).
pub fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/" | "/status" | "/status/" | "/status/page.css" | "/status/page.js"
    )
}

/// Answers the page's paths; `None` for any other path.
pub fn route(stats: &Arc<AgentStats>, path: &str) -> Option<Response<Body>> {
    Some(match path {
        "/" | "/status" | "/status/" => {
            reply(StatusCode::OK, "text/html; charset=utf-8", PAGE_HTML)
        }
        "/status/page.css" => reply(StatusCode::OK, "text/css; charset=utf-8", PAGE_CSS),
        "/status/page.js" => reply(StatusCode::OK, "text/javascript; charset=utf-8", PAGE_JS),
        "/status/state.json" => reply(StatusCode::OK, "application/json", state(stats).to_string()),
        "/status/snapshot.jpg" => match stats.media.snapshot.latest() {
            Some(s) => reply(StatusCode::OK, "image/jpeg", s.jpeg),
            None => reply(StatusCode::NOT_FOUND, "text/plain", "no snapshot yet\n"),
        },
        "/status/stream" => stream(stats.clone()),
        _ => return None,
    })
}

/// The SSE response: a state at once, then every [`STATE_EVERY`], and one
/// more as soon as the first snapshot taken for this viewer is encoded.
fn stream(stats: Arc<AgentStats>) -> Response<Body> {
    let viewer = stats.media.snapshot.viewer();
    let watching = stats.data.live.watch();
    let ticks = tokio::time::interval(STATE_EVERY);
    // Snapshots are taken only while someone watches, so what is there at
    // connect time is stale: until a fresh one is encoded, look for it every
    // FIRST_FRAME_POLL and send it at once, rather than up to a whole
    // STATE_EVERY later (that wait was almost all of "page load to first
    // frame" in docs/benchmarks.md).
    let waiting_from = Some(stats.media.snapshot.encoded());
    let events = futures_util::stream::unfold(
        (stats, ticks, viewer, watching, waiting_from),
        |(stats, mut ticks, viewer, watching, mut waiting_from)| async move {
            match waiting_from {
                Some(before) => loop {
                    tokio::select! {
                        _ = ticks.tick() => break,
                        _ = tokio::time::sleep(FIRST_FRAME_POLL) => {
                            if stats.media.snapshot.encoded() != before {
                                waiting_from = None;
                                break;
                            }
                        }
                    }
                },
                None => {
                    ticks.tick().await;
                }
            }
            let event = format!("event: state\ndata: {}\n\n", state(&stats));
            let frame = Ok::<_, Infallible>(Frame::data(Bytes::from(event)));
            Some((frame, (stats, ticks, viewer, watching, waiting_from)))
        },
    );
    let mut r = Response::new(StreamBody::new(events).boxed());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

/// Everything the page draws, as one JSON value.
pub fn state(stats: &AgentStats) -> Value {
    let (healthy, health) = crate::agent::http::healthz(stats);
    let now = unix_ms();
    let tap = &stats.media.snapshot;
    let snapshot = tap.latest();
    let live = &stats.data.live;
    let outputs = stats.outputs();
    let counters = outputs.counters();
    let states = live.output_states();
    let outputs: Vec<Value> = outputs
        .kinds()
        .map(|(name, kind)| {
            let c = counters.get(name).copied().unwrap_or_default();
            let s = states.get(name).cloned().unwrap_or_default();
            json!({
                "name": name,
                "kind": kind,
                "level": s.level,
                "last_action": s.last_action,
                "last_unix_ms": s.last_unix_ms,
                "sent": c.sent,
                "errors": c.failed,
                "dropped": c.dropped,
            })
        })
        .collect();
    let m = &stats.media;
    let d = &stats.data;
    json!({
        "unix_ms": now,
        "healthy": healthy,
        "health": health,
        "snapshot": {
            "available": tap.available(),
            "viewers": tap.viewers(),
            "encoded": tap.encoded(),
            "seq": snapshot.as_ref().map(|s| s.seq),
            "width": snapshot.as_ref().map(|s| s.width),
            "height": snapshot.as_ref().map(|s| s.height),
            "age_ms": snapshot.as_ref().map(|s| now.saturating_sub(s.taken_unix_ms)),
        },
        "detections": live.latest_detections(),
        "zones": *stats.page.zones.lock_ignoring_poison(),
        "outputs": outputs,
        "rules_on": live.rules_on(),
        "fires": live.fires(),
        "counters": {
            "segments": m.segments_published.load(Ordering::Relaxed),
            "upload_count": m.segment_upload.count(),
            "upload_sum_s": m.segment_upload.sum_seconds(),
            "dropped_gops": stats.dropped_gops(),
            "latency_count": d.item_to_effect.count(),
            "latency_sum_s": d.item_to_effect.sum_seconds(),
            "items": d.items.load(Ordering::Relaxed),
            "rule_fires": d.rule_fires.load(Ordering::Relaxed),
        },
        "job": *stats.page.job.lock_ignoring_poison(),
    })
}
