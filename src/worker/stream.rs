//! One running stream: starting its tasks, stopping them, and its status.
//!
//! A stream is four independent tasks sharing one cancellation signal:
//! `ingest` (subscribe, pass through, feed the decoder), `media` (decode and
//! detect), `data` and `events` (write back), plus `control` (read param
//! updates). None waits on another except through bounded queues, so a slow
//! output channel never stalls decoding and vice versa.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{Instrument, info, info_span, warn};

use super::config::WorkerConfig;
use super::request::StartRequest;
use super::session::Ctx;
use super::{control, ingest, output};

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
        let ctx = Ctx::new(config, request.params.clone());
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
        self.ctx.cancel();
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
