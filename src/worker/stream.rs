//! One running stream: the start request, its tasks, counters and params.
//!
//! A stream is four independent tasks sharing one cancellation signal:
//! `ingest` (subscribe, pass through, feed the decoder), `media` (decode and
//! detect), `data` and `events` (write back), plus `control` (read param
//! updates). None waits on another except through bounded queues, so a slow
//! output channel never stalls decoding and vice versa.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{Instrument, info, info_span, warn};

use super::WorkerConfig;
use super::{control, ingest, output};
use crate::sync::LockIgnoringPoison;

/// `POST /api/stream/start`, from the worker's point of view: it reads
/// `subscribe_url` (the edge's video) and `control_url`, and writes
/// `publish_url` (video out), `events_url` and `data_url`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StartRequest {
    pub subscribe_url: String,
    pub publish_url: Option<String>,
    pub control_url: Option<String>,
    pub events_url: Option<String>,
    pub data_url: Option<String>,
    pub gateway_request_id: Option<String>,
    pub params: Map<String, Value>,
}

/// A request body the API refuses, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RequestError {
    pub field: String,
    pub message: String,
}

fn bad(field: &str, message: impl Into<String>) -> RequestError {
    RequestError {
        field: field.into(),
        message: message.into(),
    }
}

impl StartRequest {
    /// Parses a start body. Checked by hand rather than by derive so that
    /// every refusal names its field (serde's type errors name only a column).
    /// Empty URL strings count as absent: some gateways send `""`.
    pub fn from_json(body: &[u8]) -> Result<StartRequest, RequestError> {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| bad("body", format!("not JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| bad("body", "must be a JSON object"))?;
        let url = |field: &str| -> Result<Option<String>, RequestError> {
            match obj.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(Value::String(s)) if s.starts_with("http://") || s.starts_with("https://") => {
                    Ok(Some(s.clone()))
                }
                Some(Value::String(s)) => Err(bad(field, format!("{s:?} is not an http(s) URL"))),
                Some(_) => Err(bad(field, "must be a string URL")),
            }
        };
        let gateway_request_id = match obj.get("gateway_request_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(bad("gateway_request_id", "must be a string")),
        };
        Ok(StartRequest {
            subscribe_url: url("subscribe_url")?
                .ok_or_else(|| bad("subscribe_url", "is required"))?,
            publish_url: url("publish_url")?,
            control_url: url("control_url")?,
            events_url: url("events_url")?,
            data_url: url("data_url")?,
            gateway_request_id,
            params: params_object(obj.get("params"), "params")?,
        })
    }
}

/// Reads a params object; absent or `null` is empty.
pub(crate) fn params_object(
    v: Option<&Value>,
    field: &str,
) -> Result<Map<String, Value>, RequestError> {
    match v {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(bad(field, "must be a JSON object")),
    }
}

/// Reads a params update, bare (`{"threshold": 200}`) or wrapped
/// (`{"params": {...}}`); both shapes are in use by pytrickle clients.
pub(crate) fn params_update(v: &Value) -> Result<Map<String, Value>, RequestError> {
    let obj = v
        .as_object()
        .ok_or_else(|| bad("body", "must be a JSON object"))?;
    match obj.get("params") {
        Some(p) => params_object(Some(p), "params"),
        None => Ok(obj.clone()),
    }
}

/// Counters and last-known values of one stream, shared by its tasks.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub frames_decoded: AtomicU64,
    pub detections: AtomicU64,
    pub segments_in: AtomicU64,
    pub segments_out: AtomicU64,
    pub restart_count: AtomicU64,
    pub control_updates: AtomicU64,
    pub control_rejected: AtomicU64,
    pub dropped_items: AtomicU64,
    live: Mutex<Live>,
}

#[derive(Debug, Default, Clone)]
struct Live {
    last_error: Option<String>,
    fps: f64,
    /// Start of the current fps window and frames counted in it.
    fps_window: Option<(Instant, u64)>,
    last_frame: Option<Instant>,
    last_input_ms: Option<u64>,
}

/// Frames are counted over windows this long to give `fps`.
const FPS_WINDOW: Duration = Duration::from_secs(1);

impl Stats {
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock_ignoring_poison()
    }

    /// Records an error for `/api/stream/status` and the status events.
    pub fn error(&self, what: impl std::fmt::Display) {
        warn!(error = %what, "stream error");
        self.live().last_error = Some(what.to_string());
    }

    pub fn last_error(&self) -> Option<String> {
        self.live().last_error.clone()
    }

    /// Counts an analysed frame and refreshes `fps` once per window.
    pub fn frame_analysed(&self) {
        self.frames_decoded.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut live = self.live();
        live.last_frame = Some(now);
        let (start, frames) = live.fps_window.get_or_insert((now, 0));
        *frames += 1;
        let elapsed = now.duration_since(*start);
        if elapsed >= FPS_WINDOW {
            let fps = *frames as f64 / elapsed.as_secs_f64();
            live.fps = (fps * 10.0).round() / 10.0;
            live.fps_window = Some((now, 0));
        }
    }

    /// Frames analysed per second; 0 once frames have stopped coming.
    pub fn fps(&self) -> f64 {
        let live = self.live();
        match live.last_frame {
            Some(t) if t.elapsed() < 2 * FPS_WINDOW => live.fps,
            _ => 0.0,
        }
    }

    pub fn input_seen(&self) {
        self.live().last_input_ms = Some(now_ms());
    }

    pub fn last_input_ms(&self) -> Option<u64> {
        self.live().last_input_ms
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Everything a stream's tasks share.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub config: WorkerConfig,
    pub stats: Arc<Stats>,
    /// Current params; `send_modify` merges updates, readers `borrow()`.
    pub params: Arc<watch::Sender<Map<String, Value>>>,
    /// `true` once the stream must end. Tasks also set it when the stream
    /// cannot go on (the ingest channel closed).
    pub cancel: Arc<watch::Sender<bool>>,
}

impl Ctx {
    /// Resolves once the stream is cancelled. Cancel-safe.
    pub async fn cancelled(&self) {
        let mut rx = self.cancel.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    pub fn is_cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Shallow merge: each top-level key of `update` replaces the old value.
    pub fn merge_params(&self, update: Map<String, Value>) {
        self.params.send_modify(|p| p.extend(update));
    }
}

/// A started stream: its request, shared context and task handles.
#[derive(Debug)]
pub(crate) struct Stream {
    pub request: StartRequest,
    pub ctx: Ctx,
    started: Instant,
    tasks: Vec<JoinHandle<()>>,
}

type TaskFuture = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Queue between detection and the data writer; full means the data channel
/// is stalled, and detections are dropped (and counted) rather than stored.
const ITEM_QUEUE: usize = 256;
/// Queue of ingest chunks waiting for the decoder.
const CHUNK_QUEUE: usize = 256;

impl Stream {
    /// Spawns the tasks for `request`. Never fails: unreachable channels are
    /// retried with backoff and reported through `last_error`.
    pub fn start(config: &WorkerConfig, request: StartRequest) -> Stream {
        let (cancel, _) = watch::channel(false);
        let (params, _) = watch::channel(request.params.clone());
        let ctx = Ctx {
            config: config.clone(),
            stats: Arc::new(Stats::default()),
            params: Arc::new(params),
            cancel: Arc::new(cancel),
        };
        let id = request.gateway_request_id.clone().unwrap_or_default();
        let (chunks_tx, chunks_rx) = mpsc::channel(CHUNK_QUEUE);
        let (items_tx, items_rx) = mpsc::channel(ITEM_QUEUE);
        let r = &request;
        // Each task runs in a span naming its channel, so every log line
        // says which of the five URLs it is about.
        let spawn = |task: &str, url: &str, fut: TaskFuture| {
            let span = info_span!("worker", task, channel = url, request = %id);
            tokio::spawn(fut.instrument(span))
        };
        let mut tasks = vec![
            spawn(
                "ingest",
                &r.subscribe_url,
                Box::pin(ingest::ingest_task(
                    ctx.clone(),
                    r.subscribe_url.clone(),
                    r.publish_url.clone(),
                    chunks_tx,
                )),
            ),
            spawn(
                "media",
                "",
                Box::pin(ingest::media_task(
                    ctx.clone(),
                    chunks_rx,
                    r.data_url.as_ref().map(|_| items_tx),
                )),
            ),
        ];
        if let Some(url) = &r.data_url {
            let fut = output::data_task(ctx.clone(), url.clone(), items_rx);
            tasks.push(spawn("data", url, Box::pin(fut)));
        }
        if let Some(url) = &r.events_url {
            let fut = output::events_task(ctx.clone(), url.clone());
            tasks.push(spawn("events", url, Box::pin(fut)));
        }
        if let Some(url) = &r.control_url {
            let fut = control::control_task(ctx.clone(), url.clone());
            tasks.push(spawn("control", url, Box::pin(fut)));
        }
        info!(subscribe = %r.subscribe_url, request = %id, "stream started");
        Stream {
            request,
            ctx,
            started: Instant::now(),
            tasks,
        }
    }

    /// Signals every task and waits for them, at most `deadline`; a task
    /// still running then (stuck on a dead connection) is aborted. Output
    /// channels are left open: they belong to the edge, not to the worker.
    /// `true` when every task ended by itself in time.
    pub async fn stop(mut self, deadline: Duration) -> bool {
        let _ = self.ctx.cancel.send(true);
        let tasks = std::mem::take(&mut self.tasks);
        let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
        let clean = tokio::time::timeout(deadline, futures_util::future::join_all(tasks))
            .await
            .is_ok();
        if !clean {
            warn!(?deadline, "stream tasks did not end in time; aborting them");
            aborts.iter().for_each(|a| a.abort());
        }
        info!(request = ?self.request.gateway_request_id, clean, "stream stopped");
        clean
    }

    pub fn status(&self) -> Status {
        let s = &self.ctx.stats;
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Status {
            state: if self.ctx.is_cancelled() {
                State::Ended
            } else {
                State::Running
            },
            gateway_request_id: self.request.gateway_request_id.clone(),
            frames_decoded: n(&s.frames_decoded),
            detections: n(&s.detections),
            segments_in: n(&s.segments_in),
            segments_out: n(&s.segments_out),
            restart_count: n(&s.restart_count),
            control_updates: n(&s.control_updates),
            control_rejected: n(&s.control_rejected),
            dropped_items: n(&s.dropped_items),
            fps: s.fps(),
            last_error: s.last_error(),
            params: self.ctx.params.borrow().clone(),
            uptime_s: (self.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        }
    }
}

/// Lifecycle state reported by `/api/stream/status` and `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// No stream: never started, or stopped.
    Idle,
    Running,
    /// The stream ended by itself (its ingest channel closed); `last_error` says why.
    Ended,
}

/// `GET /api/stream/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub state: State,
    pub gateway_request_id: Option<String>,
    pub frames_decoded: u64,
    pub detections: u64,
    pub segments_in: u64,
    pub segments_out: u64,
    pub restart_count: u64,
    pub control_updates: u64,
    /// Control payloads refused (not JSON, not an object).
    pub control_rejected: u64,
    /// Detections dropped because the data channel could not keep up.
    pub dropped_items: u64,
    /// Frames analysed per second (over the last second with frames).
    pub fps: f64,
    pub last_error: Option<String>,
    pub params: Map<String, Value>,
    pub uptime_s: f64,
}

impl Status {
    pub fn idle() -> Status {
        Status {
            state: State::Idle,
            gateway_request_id: None,
            frames_decoded: 0,
            detections: 0,
            segments_in: 0,
            segments_out: 0,
            restart_count: 0,
            control_updates: 0,
            control_rejected: 0,
            dropped_items: 0,
            fps: 0.0,
            last_error: None,
            params: Map::new(),
            uptime_s: 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_request_names_the_bad_field() {
        let err = StartRequest::from_json(br#"{"publish_url":"http://x/a"}"#).unwrap_err();
        assert_eq!(err.field, "subscribe_url");
        let err =
            StartRequest::from_json(br#"{"subscribe_url":"http://x/a","data_url":5}"#).unwrap_err();
        assert_eq!(err.field, "data_url");
        let err = StartRequest::from_json(br#"{"subscribe_url":"ftp://x"}"#).unwrap_err();
        assert_eq!(err.field, "subscribe_url");
        let err =
            StartRequest::from_json(br#"{"subscribe_url":"http://x","params":[1]}"#).unwrap_err();
        assert_eq!(err.field, "params");
        assert_eq!(StartRequest::from_json(b"{").unwrap_err().field, "body");
    }

    #[test]
    fn start_request_treats_empty_urls_as_absent() {
        let r = StartRequest::from_json(
            br#"{"subscribe_url":"http://h/ai/trickle/s","publish_url":"","gateway_request_id":"g","params":{"a":1}}"#,
        )
        .unwrap();
        assert_eq!(r.publish_url, None);
        assert_eq!(r.gateway_request_id.as_deref(), Some("g"));
        assert_eq!(r.params["a"], 1);
    }

    #[test]
    fn params_update_accepts_bare_and_wrapped() {
        let bare = params_update(&serde_json::json!({"threshold": 1})).unwrap();
        let wrapped = params_update(&serde_json::json!({"params": {"threshold": 1}})).unwrap();
        assert_eq!(bare, wrapped);
        assert!(params_update(&serde_json::json!([1])).is_err());
    }
}
