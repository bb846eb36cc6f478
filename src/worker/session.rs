//! What a stream's tasks share: the settings, counters, params and the stop
//! signal. `stream` builds one and hands a clone to every task; the tasks
//! (`ingest`, `control`, `output`) depend on this and never on `stream`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use tokio::sync::watch;
use tracing::warn;

use super::config::WorkerConfig;
use crate::shutdown::{Shutdown, ShutdownTrigger};
use crate::sync::LockIgnoringPoison;

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
    /// Ends the stream. Shared because tasks also end it when the stream
    /// cannot go on (the ingest channel closed), not only `Stream::stop`.
    stop: Arc<ShutdownTrigger>,
    /// Fires once `stop` is triggered.
    shutdown: Shutdown,
}

impl Ctx {
    /// A fresh context for one stream, starting from `params`.
    pub fn new(config: &WorkerConfig, params: Map<String, Value>) -> Ctx {
        let (stop, shutdown) = ShutdownTrigger::new();
        let (params, _) = watch::channel(params);
        Ctx {
            config: config.clone(),
            stats: Arc::new(Stats::default()),
            params: Arc::new(params),
            stop: Arc::new(stop),
            shutdown,
        }
    }

    /// Resolves once the stream is cancelled. Cancel-safe.
    pub async fn cancelled(&self) {
        self.shutdown.clone().recv().await;
    }

    pub fn is_cancelled(&self) -> bool {
        self.shutdown.is_shutdown()
    }

    /// Ends the stream: every task's [`cancelled`](Self::cancelled) resolves.
    pub fn cancel(&self) {
        self.stop.trigger();
    }

    /// Shallow merge: each top-level key of `update` replaces the old value.
    pub fn merge_params(&self, update: Map<String, Value>) {
        self.params.send_modify(|p| p.extend(update));
    }
}
