//! The worker as its API sees it: at most one stream at a time, started,
//! restarted, stopped and asked about.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tracing::info;

use super::config::WorkerConfig;
use super::request::StartRequest;
use super::stream::{self, State, Status};

/// How long `stop` waits for a stream's tasks before aborting them.
const STOP_DEADLINE: Duration = Duration::from_secs(2);

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
