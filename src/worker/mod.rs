//! The reference worker: a small, real trickle worker to read and copy.
//!
//! It speaks the pytrickle worker API ([`api`]): the gateway (or the edge in
//! `worker` job mode) posts `/api/stream/start` with up to five channel URLs,
//! and the worker then, until stopped:
//!
//! - subscribes to `subscribe_url` (the edge's MPEG-TS), passes each segment
//!   unchanged to `publish_url`, and decodes it with GStreamer ([`decode`]);
//! - finds the bright moving ball of `videotestsrc pattern=ball` in every
//!   frame ([`detect`]) and writes the detections to `data_url` as
//!   pytrickle-style JSONL batches;
//! - writes an ai-runner status event to `events_url` every few seconds;
//! - applies parameter updates from `control_url` and `/api/stream/params`.
//!
//! To build your own worker, replace [`detect`] and keep the rest: the
//! channel handling, batching, keepalives and lifecycle are what a gateway
//! expects. The worker never creates or deletes channels: they belong to
//! whoever started the job, so stopping only ends the worker's own requests.

mod api;
mod control;
pub mod decode;
pub mod detect;
mod ingest;
mod output;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tracing::info;

use crate::backoff::BackoffConfig;
use crate::trickle::ClientOptions;

pub use api::{WorkerHandle, run_worker};
pub use stream::{RequestError, StartRequest, State, Status};

/// How long `stop` waits for a stream's tasks before aborting them.
const STOP_DEADLINE: Duration = Duration::from_secs(2);

/// Tunables of the worker; the defaults follow pytrickle and ai-runner.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Size frames are scaled to for detection (shapes, not detail).
    pub analysis_width: u32,
    pub analysis_height: u32,
    /// Detections are gathered this long into one JSONL line (pytrickle: 333 ms).
    pub batch_interval: Duration,
    /// A `[]` line is written after this long without any line (pytrickle: 25 s).
    pub keepalive_interval: Duration,
    /// A status event is written this often (ai-runner: 5 s; gateways call a
    /// pipeline dead after 30 s of silence).
    pub status_interval: Duration,
    /// A data segment is ended after this many lines...
    pub lines_per_segment: usize,
    /// ...or once it is this old, whichever comes first.
    pub segment_max_age: Duration,
    /// Delay between decode pipeline rebuilds and connection attempts.
    pub restart_backoff: BackoffConfig,
    /// Reported as `pipeline` in status events.
    pub pipeline_name: String,
    /// TLS and auth for the trickle channels.
    pub client: ClientOptions,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            analysis_width: 160,
            analysis_height: 120,
            batch_interval: Duration::from_millis(333),
            keepalive_interval: Duration::from_secs(25),
            status_interval: Duration::from_secs(5),
            lines_per_segment: 15,
            segment_max_age: Duration::from_secs(5),
            restart_backoff: BackoffConfig::new(
                Duration::from_millis(250),
                Duration::from_secs(10),
            )
            .expect("static backoff bounds are valid"),
            pipeline_name: "trickle-edge-reference".into(),
            client: ClientOptions::default(),
        }
    }
}

/// Why the worker could not run.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The worker: at most one stream at a time. Cheap to clone; clones share it.
#[derive(Debug, Clone)]
pub struct Worker {
    config: WorkerConfig,
    current: Arc<tokio::sync::Mutex<Option<stream::Stream>>>,
}

impl Worker {
    pub fn new(config: WorkerConfig) -> Worker {
        Worker {
            config,
            current: Arc::default(),
        }
    }

    /// Starts a stream. A stream already running is stopped first and
    /// replaced (restart with the new URLs), as a gateway restarting a job
    /// expects, rather than refused.
    pub async fn start(&self, request: StartRequest) -> Status {
        let mut current = self.current.lock().await;
        if let Some(old) = current.take() {
            info!("start while running: restarting with the new request");
            old.stop(STOP_DEADLINE).await;
        }
        let s = stream::Stream::start(&self.config, request);
        let status = s.status();
        *current = Some(s);
        status
    }

    /// Stops the stream, if any. `None` when there was none; otherwise
    /// whether every task ended by itself within the stop deadline (~2 s).
    pub async fn stop(&self) -> Option<bool> {
        let stream = self.current.lock().await.take();
        match stream {
            Some(s) => Some(s.stop(STOP_DEADLINE).await),
            None => None,
        }
    }

    /// Merges `update` into the stream's params; `None` without a stream.
    pub async fn update_params(&self, update: Map<String, Value>) -> Option<Map<String, Value>> {
        let current = self.current.lock().await;
        let s = current.as_ref()?;
        let shown = Value::Object(update.clone());
        info!(update = %shown, "params updated from the API");
        s.ctx.merge_params(update);
        let params = s.ctx.params.borrow().clone();
        Some(params)
    }

    pub async fn status(&self) -> Status {
        match self.current.lock().await.as_ref() {
            Some(s) => s.status(),
            None => Status::idle(),
        }
    }

    /// pytrickle's health words: `OK` (running), `IDLE`, `ERROR` (ended by itself).
    pub async fn health(&self) -> &'static str {
        match self.status().await.state {
            State::Running => "OK",
            State::Idle => "IDLE",
            State::Ended => "ERROR",
        }
    }
}
