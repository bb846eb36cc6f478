//! Starting a job and keeping it alive: where the five channel URLs come
//! from (`static` config, a trickle worker started against our own server,
//! or a BYOC stream on a Livepeer orchestrator), the control-channel
//! keepalive, and the events-based health check.

pub mod byoc;
pub mod control;
mod error;
pub mod health;
pub mod probe;
pub mod worker_client;

use std::sync::Arc;

use crate::config::{JobMode, StaticJob, WorkerJob};
use crate::trickle::server::{self, RunningServer, ServerConfig};
use crate::trickle::{ClientOptions, HttpClient};
use byoc::ByocStream;
pub use error::JobError;
use worker_client::WorkerClient;

/// The channels of one running job, from the agent's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobUrls {
    /// Camera segments go here.
    pub publish: String,
    /// Processed video comes back here.
    pub subscribe: Option<String>,
    pub control: Option<String>,
    pub events: Option<String>,
    pub data: Option<String>,
}

/// A started job: its URLs, plus what must be undone when it stops.
pub struct Job {
    pub urls: JobUrls,
    /// The agent's own trickle server (worker mode), kept for the job's life.
    pub server: Option<Arc<RunningServer>>,
    worker: Option<WorkerClient>,
    byoc: Option<ByocStream>,
    pub request_id: String,
    /// Where readers of this job's data and events channels start: `-2` (the
    /// segment being written, from its start) on our own server, whose
    /// channels hold only this job's segments; `-1` (the next segment)
    /// elsewhere, where the current one may hold stale items.
    pub reader_start_seq: i64,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("urls", &self.urls)
            .field("request_id", &self.request_id)
            .finish()
    }
}

fn static_urls(s: &StaticJob) -> JobUrls {
    JobUrls {
        publish: s.publish_url.clone(),
        subscribe: s.subscribe_url.clone(),
        control: s.control_url.clone(),
        events: s.events_url.clone(),
        data: s.data_url.clone(),
    }
}

/// Channel names of a worker job on the agent's server.
pub fn worker_channels(prefix: &str) -> [(String, &'static str); 5] {
    [
        (format!("{prefix}-in"), "video/MP2T"),
        (format!("{prefix}-out"), "video/MP2T"),
        (format!("{prefix}-control"), "application/json"),
        (format!("{prefix}-events"), "application/json"),
        (format!("{prefix}-data"), "application/jsonl"),
    ]
}

/// Starts the agent's trickle server for a worker job (once per agent run:
/// it outlives job restarts so readers and writers keep their sockets).
pub async fn start_worker_server(w: &WorkerJob) -> Result<Arc<RunningServer>, JobError> {
    let config = ServerConfig {
        listen: w.listen,
        channels: worker_channels(&w.channel_prefix)
            .into_iter()
            .map(|(n, ct)| (n, Some(ct.to_string())))
            .collect(),
        ..Default::default()
    };
    Ok(Arc::new(server::start(config).await?))
}

/// What a job mode keeps for the agent's whole run, so the agent asks the
/// job instead of matching on its mode: in worker mode, the agent's own
/// trickle server, started once so that readers and writers keep their
/// sockets across job restarts.
pub struct JobRunner {
    server: Option<Arc<RunningServer>>,
}

impl JobRunner {
    /// Starts what `mode` needs before its first job (worker: the server).
    pub async fn prepare(mode: &JobMode) -> Result<Self, JobError> {
        let server = match mode {
            JobMode::Worker(w) => Some(start_worker_server(w).await?),
            JobMode::Static(_) | JobMode::Byoc(_) => None,
        };
        Ok(Self { server })
    }

    /// Starts one job of `mode` (which a reload may have changed).
    pub async fn start(&self, mode: &JobMode, client: &ClientOptions) -> Result<Job, JobError> {
        start(mode, self.server.clone(), client).await
    }

    /// The agent's own trickle server, in worker mode.
    pub fn server(&self) -> Option<Arc<RunningServer>> {
        self.server.clone()
    }

    /// Ends every channel on our own server, so readers and the worker see
    /// the stream end instead of waiting for more.
    pub fn close_channels(&self) {
        if let Some(s) = &self.server {
            for name in s.state.channel_names() {
                s.state.close_channel(&name);
            }
        }
    }
}

/// When a reload changed only a job's parameters, the new parameters: they
/// go to the running job instead of restarting it. `None` when anything
/// else changed too, or nothing did.
pub fn params_only_change(
    old: &JobMode,
    new: &JobMode,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    match (old, new) {
        (JobMode::Worker(a), JobMode::Worker(b)) => {
            let mut same_params = a.clone();
            same_params.params = b.params.clone();
            (same_params == *b && a.params != b.params).then(|| b.params.clone())
        }
        (JobMode::Byoc(a), JobMode::Byoc(b)) => {
            let mut same_params = a.clone();
            same_params.params = b.params.clone();
            (same_params == *b && a.params != b.params).then(|| b.params.clone())
        }
        _ => None,
    }
}

/// Starts a job. In worker mode the channels are (re)created on `server` and
/// the worker is asked to start a stream against them.
pub async fn start(
    mode: &JobMode,
    server: Option<Arc<RunningServer>>,
    client: &ClientOptions,
) -> Result<Job, JobError> {
    let request_id = format!(
        "trickle-edge-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    );
    match mode {
        JobMode::Static(s) => Ok(Job {
            urls: static_urls(s),
            server: None,
            worker: None,
            byoc: None,
            request_id,
            reader_start_seq: -1,
        }),
        JobMode::Byoc(b) => {
            // The stream id names the orchestrator's channels, so each start
            // gets new ones, holding only this job's segments: readers start
            // at the current segment.
            let http = HttpClient::new(client)?;
            let (stream, urls) = ByocStream::start(b, &b.params, http, &request_id).await?;
            Ok(Job {
                urls,
                server: None,
                worker: None,
                byoc: Some(stream),
                request_id,
                reader_start_seq: -2,
            })
        }
        JobMode::Worker(w) => {
            let server = match server {
                Some(s) => s,
                None => start_worker_server(w).await?,
            };
            for (name, ct) in worker_channels(&w.channel_prefix) {
                server.state.create_channel(&name, Some(ct.to_string()))?;
            }
            // The worker reaches our server by the address we listen on.
            let base = format!(
                "http://{}{}",
                server.local_addr(),
                server.state.config().base_path
            );
            let [ingest, out, control, events, data] =
                worker_channels(&w.channel_prefix).map(|(n, _)| format!("{base}{n}"));
            let urls = JobUrls {
                publish: ingest.clone(),
                subscribe: Some(out.clone()),
                control: Some(control.clone()),
                events: Some(events.clone()),
                data: Some(data.clone()),
            };
            let worker = WorkerClient::new(&w.worker_url, HttpClient::new(client)?);
            // From the worker's side: it subscribes to our ingest and
            // publishes to our output, events and data channels.
            let body = serde_json::json!({
                "subscribe_url": ingest,
                "publish_url": out,
                "control_url": control,
                "events_url": events,
                "data_url": data,
                "gateway_request_id": request_id,
                "params": w.params,
            });
            worker.post("/api/stream/start", &body).await?;
            Ok(Job {
                urls,
                server: Some(server),
                worker: Some(worker),
                byoc: None,
                request_id,
                reader_start_seq: -2,
            })
        }
    }
}

impl Job {
    /// Stops the worker's stream (worker mode). Channels stay: the next job
    /// start reuses them.
    pub async fn stop(&self) -> Result<(), JobError> {
        if let Some(w) = &self.worker {
            w.post("/api/stream/stop", &serde_json::json!({})).await?;
        }
        if let Some(b) = &self.byoc {
            b.stop().await?;
        }
        Ok(())
    }

    /// Sends new parameters to the worker's API (the control channel gets
    /// them separately, from the control task).
    pub async fn update_params(
        &self,
        params: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), JobError> {
        if let Some(w) = &self.worker {
            w.post(
                "/api/stream/params",
                &serde_json::Value::Object(params.clone()),
            )
            .await?;
        }
        if let Some(b) = &self.byoc {
            b.update_params(params).await?;
        }
        Ok(())
    }

    /// The BYOC stream, in byoc mode.
    pub fn byoc(&self) -> Option<&ByocStream> {
        self.byoc.as_ref()
    }

    pub fn worker(&self) -> Option<&WorkerClient> {
        self.worker.as_ref()
    }
}
