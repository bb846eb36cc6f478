//! Starting a job and keeping it alive: where the five channel URLs come
//! from (`static` config, a trickle worker started against our own server,
//! or a BYOC stream on a Livepeer orchestrator), the control-channel
//! keepalive, and the events-based health check.

pub mod byoc;
pub mod byoc_payment;
pub mod control;
mod error;
pub mod health;
pub mod livepeer;
pub mod probe;
pub mod signer_config;
pub mod swaps;
pub mod watch;
pub mod worker_client;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tracing::info;

use crate::config::{JobMode, LivepeerJob, StaticJob, WorkerJob};
use crate::livepeer::network::Network;
use crate::media::CameraConfig;
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
    worker: Option<WorkerApi>,
    byoc: Option<ByocStream>,
    livepeer: Option<livepeer::LivepeerStream>,
    /// The client options of this job's channels when they differ from the
    /// agent's (a Livepeer orchestrator's pinned certificate).
    channel_client: Option<ClientOptions>,
    /// This job's channel names on `server` (worker mode), closed when the
    /// job is replaced or the agent stops.
    channels: Vec<String>,
    pub request_id: String,
    /// Where readers of this job's data and events channels start: `-2` (the
    /// segment being written, from its start) on our own server, whose
    /// channels hold only this job's segments; `-1` (the next segment)
    /// elsewhere, where the current one may hold stale items.
    pub reader_start_seq: i64,
    /// Set once the worker was asked to stop, so a job that stays dead is
    /// not stopped again on every retry.
    stopped: AtomicBool,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("urls", &self.urls)
            .field("request_id", &self.request_id)
            .finish()
    }
}

/// The worker's stream API as this job found it: the client, and the paths
/// its stop and params requests go to (derived from the start path that
/// answered, so a worker on pytrickle's default routes is not sent to
/// `/api/...`).
#[derive(Debug, Clone)]
pub struct WorkerApi {
    pub client: WorkerClient,
    /// The start path that answered.
    pub start_path: String,
    stop_paths: Vec<String>,
    params_paths: Vec<String>,
}

/// Start paths to try for `api_prefix`, in order.
pub fn start_paths(api_prefix: &str) -> Vec<String> {
    match api_prefix {
        "auto" => vec![
            "/api/stream/start".into(),
            "/stream/start".into(),
            "/live-video-to-video".into(),
        ],
        p => vec![format!("{}/stream/start", p.trim_end_matches('/'))],
    }
}

/// The paths of `stop` or `params` (`route`) once `start_path` answered.
/// pytrickle serves `/live-video-to-video` at the root whatever its route
/// prefix, so that alias says nothing about where the rest lives: both
/// known prefixes are tried.
fn sibling_paths(start_path: &str, route: &str) -> Vec<String> {
    match start_path.strip_suffix("/stream/start") {
        Some(prefix) => vec![format!("{prefix}/stream/{route}")],
        None => vec![format!("/api/stream/{route}"), format!("/stream/{route}")],
    }
}

impl WorkerApi {
    /// POSTs the start request to each candidate path until one is not a 404.
    async fn start(
        client: WorkerClient,
        api_prefix: &str,
        body: &serde_json::Value,
    ) -> Result<Self, JobError> {
        let candidates = start_paths(api_prefix);
        let paths: Vec<&str> = candidates.iter().map(String::as_str).collect();
        let (start_path, _) = client.post_first(&paths, body).await?;
        let start_path = start_path.to_string();
        Ok(Self {
            client,
            stop_paths: sibling_paths(&start_path, "stop"),
            params_paths: sibling_paths(&start_path, "params"),
            start_path,
        })
    }

    async fn post(&self, paths: &[String], body: &serde_json::Value) -> Result<(), JobError> {
        let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
        self.client.post_first(&paths, body).await.map(|_| ())
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

/// Channel names of the `n`th start of a worker job on the agent's server:
/// `<prefix>-<n>-in`, `-out`, `-control`, `-events`, `-data`. Fresh names
/// for every start, as Livepeer's gateway does, so a restarted worker
/// publishes from seq 0 onto empty channels and our readers never wait on a
/// sequence number the old stream left behind.
pub fn worker_channels(prefix: &str, n: u64) -> [(String, &'static str); 5] {
    [
        (format!("{prefix}-{n}-in"), "video/MP2T"),
        (format!("{prefix}-{n}-out"), "video/MP2T"),
        (format!("{prefix}-{n}-control"), "application/json"),
        (format!("{prefix}-{n}-events"), "application/json"),
        (format!("{prefix}-{n}-data"), "application/jsonl"),
    ]
}

/// Starts the agent's trickle server for a worker job (once per agent run:
/// it outlives job restarts; each job start adds its own channels).
pub async fn start_worker_server(w: &WorkerJob) -> Result<Arc<RunningServer>, JobError> {
    let config = ServerConfig {
        listen: w.listen,
        ..Default::default()
    };
    Ok(Arc::new(server::start(config).await?))
}

/// The job's parameters as sent at start: the config's `params`, plus the
/// camera's `width`, `height` and `fps` where the config does not set them.
/// pytrickle scales and centre-crops every frame to `width`x`height`
/// (512x512 when absent), which would move every zone a rule checks.
pub fn start_params(
    w: &WorkerJob,
    camera: &CameraConfig,
) -> serde_json::Map<String, serde_json::Value> {
    with_camera_size(&w.params, camera)
}

/// `params` with the camera's `width`, `height` and `fps` added where they
/// are not set (BYOC streams usually reach a pytrickle worker too).
pub fn with_camera_size(
    params: &serde_json::Map<String, serde_json::Value>,
    camera: &CameraConfig,
) -> serde_json::Map<String, serde_json::Value> {
    let mut params = params.clone();
    for (key, value) in [
        ("width", camera.width),
        ("height", camera.height),
        ("fps", camera.fps),
    ] {
        params.entry(key).or_insert(value.into());
    }
    params
}

/// `max_swaps`, `swap_window`, `swap_backoff`: the swap guard is rebuilt
/// when a reload changes them.
type SwapSettings = (u32, std::time::Duration, std::time::Duration);

/// What a job mode keeps for the agent's whole run, so the agent asks the
/// job instead of matching on its mode: in worker mode, the agent's own
/// trickle server, started once so that its address stays the same across
/// job restarts, and the count of job starts that names each job's channels.
pub struct JobRunner {
    server: Option<Arc<RunningServer>>,
    starts: AtomicU64,
    /// Livepeer mode: the network (its refusals remembered across job
    /// starts), rebuilt when a reload changes the mode's settings.
    network: std::sync::Mutex<Option<(LivepeerJob, Arc<Network>)>>,
    /// Livepeer mode: the camera's published-segment count, which drives
    /// the payment loop.
    segments: livepeer::SegmentCount,
    /// Livepeer mode: the orchestrator of the last job started, sent to the
    /// back of the line when the next job starts on the same network (the
    /// agent restarts a job only when it went silent: a fresh job goes to
    /// the next orchestrator, as Livepeer's gateway swaps).
    last_orchestrator: std::sync::Mutex<Option<String>>,
    /// Livepeer mode: current orchestrator, swaps, refusals.
    counters: Arc<livepeer::LivepeerCounters>,
    /// Livepeer mode: too many swaps in a window back off (built from the
    /// config at the first failover, rebuilt when the settings change).
    swaps: std::sync::Mutex<Option<(SwapSettings, swaps::SwapGuard)>>,
    /// BYOC mode: payments sent and failed, the last balance.
    byoc_counters: Arc<byoc_payment::ByocCounters>,
}

impl JobRunner {
    /// Starts what `mode` needs before its first job (worker: the server).
    pub async fn prepare(mode: &JobMode) -> Result<Self, JobError> {
        let server = match mode {
            JobMode::Worker(w) => Some(start_worker_server(w).await?),
            JobMode::Static(_) | JobMode::Byoc(_) | JobMode::Livepeer(_) => None,
        };
        Ok(Self {
            server,
            starts: AtomicU64::new(0),
            network: Default::default(),
            segments: Default::default(),
            last_orchestrator: Default::default(),
            counters: Default::default(),
            swaps: Default::default(),
            byoc_counters: Default::default(),
        })
    }

    /// A Livepeer job is being given up for `reason` and a swap follows:
    /// `Some(delay)` when that swap would exceed `max_swaps` within
    /// `swap_window`; the caller then waits `delay` and the next start
    /// begins again from discovery, every refusal forgotten.
    pub fn failover(&self, l: &LivepeerJob, reason: &str) -> Option<std::time::Duration> {
        use crate::sync::LockIgnoringPoison;
        *self.counters.last_failover.lock_ignoring_poison() = Some(reason.to_string());
        let key = (l.max_swaps, l.swap_window, l.swap_backoff);
        let mut slot = self.swaps.lock_ignoring_poison();
        if slot.as_ref().is_none_or(|(k, _)| *k != key) {
            *slot = Some((key, swaps::SwapGuard::new(key.0, key.1, key.2)));
        }
        let (_, guard) = slot.as_mut().expect("set above");
        let delay = guard.swap(tokio::time::Instant::now(), rand::random::<f64>())?;
        self.counters.swap_backoffs.fetch_add(1, Ordering::Relaxed);
        // Start over: a fresh network (discovery asked again, refusals
        // forgotten), no orchestrator sent to the back.
        *self.network.lock_ignoring_poison() = None;
        *self.last_orchestrator.lock_ignoring_poison() = None;
        Some(delay)
    }

    /// Tells a Livepeer job how many segments the camera has published, so
    /// its payments follow the media (set once, when the camera exists).
    pub fn count_segments_with(&self, count: Arc<dyn Fn() -> u64 + Send + Sync>) {
        let _ = self.segments.set(count);
    }

    /// What a Livepeer job reports (`/healthz`, `/metrics`).
    pub fn livepeer_counters(&self) -> Arc<livepeer::LivepeerCounters> {
        self.counters.clone()
    }

    /// The network of `l`, kept across starts while `l` is unchanged; on
    /// such a restart the last job's orchestrator is sent to the back.
    fn network(&self, l: &LivepeerJob, client: &ClientOptions) -> Result<Arc<Network>, JobError> {
        use crate::sync::LockIgnoringPoison;
        let mut slot = self.network.lock_ignoring_poison();
        if let Some((cfg, net)) = &*slot
            && cfg == l
        {
            if let Some(prev) = self.last_orchestrator.lock_ignoring_poison().take() {
                net.refuse(
                    &prev,
                    "its last job was replaced (pipeline silent): trying the others first".into(),
                );
            }
            return Ok(net.clone());
        }
        let net = Arc::new(Network::new(livepeer::network_config(l)?, client)?);
        *slot = Some((l.clone(), net.clone()));
        Ok(net)
    }

    /// Starts one job of `mode` (which a reload may have changed) for a
    /// camera configured as `camera`.
    pub async fn start(
        &self,
        mode: &JobMode,
        camera: &CameraConfig,
        client: &ClientOptions,
    ) -> Result<Job, JobError> {
        let n = self.starts.fetch_add(1, Ordering::Relaxed) + 1;
        if let JobMode::Livepeer(l) = mode {
            use crate::sync::LockIgnoringPoison;
            let network = self.network(l, client)?;
            let swap = self.last_orchestrator.lock_ignoring_poison().is_none()
                && self.counters.orchestrator().is_some();
            let job =
                start_livepeer(&network, l, camera, client, &self.segments, &self.counters).await?;
            if let Some(lp) = job.livepeer() {
                *self.last_orchestrator.lock_ignoring_poison() = Some(lp.orchestrator.clone());
                let previous = self
                    .counters
                    .orchestrator
                    .lock_ignoring_poison()
                    .replace(lp.orchestrator.clone());
                if swap && previous.as_deref() != Some(lp.orchestrator.as_str()) {
                    self.counters.swaps.fetch_add(1, Ordering::Relaxed);
                }
            }
            return Ok(job);
        }
        start_counted(
            mode,
            camera,
            self.server.clone(),
            n,
            client,
            &self.byoc_counters,
        )
        .await
    }

    /// What a BYOC stream's payments report (`/healthz`, `/metrics`).
    pub fn byoc_counters(&self) -> Arc<byoc_payment::ByocCounters> {
        self.byoc_counters.clone()
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
        (JobMode::Livepeer(a), JobMode::Livepeer(b)) => {
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

/// Starts a Livepeer job on `network`.
async fn start_livepeer(
    network: &Arc<Network>,
    l: &LivepeerJob,
    camera: &CameraConfig,
    client: &ClientOptions,
    segments: &livepeer::SegmentCount,
    counters: &livepeer::LivepeerCounters,
) -> Result<Job, JobError> {
    let request_id = format!(
        "trickle-edge-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    );
    let params = with_camera_size(&l.params, camera);
    let started = livepeer::start(network, params, client, &request_id, segments, counters).await?;
    Ok(Job {
        urls: started.urls,
        server: None,
        worker: None,
        byoc: None,
        livepeer: Some(started.stream),
        channel_client: Some(started.channel_client),
        channels: Vec::new(),
        request_id,
        // Fresh channels for every start, holding only this job's segments.
        reader_start_seq: -2,
        stopped: AtomicBool::new(false),
    })
}

/// Starts a job. In worker mode the `n`th start's channels are created on
/// `server` and the worker is asked to start a stream against them.
pub async fn start(
    mode: &JobMode,
    camera: &CameraConfig,
    server: Option<Arc<RunningServer>>,
    n: u64,
    client: &ClientOptions,
) -> Result<Job, JobError> {
    start_counted(mode, camera, server, n, client, &Default::default()).await
}

/// [`start`], a BYOC stream's payments counted in `byoc_counters`.
async fn start_counted(
    mode: &JobMode,
    camera: &CameraConfig,
    server: Option<Arc<RunningServer>>,
    n: u64,
    client: &ClientOptions,
    byoc_counters: &Arc<byoc_payment::ByocCounters>,
) -> Result<Job, JobError> {
    let request_id = format!(
        "trickle-edge-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    );
    match mode {
        JobMode::Livepeer(l) => {
            let network = Arc::new(Network::new(livepeer::network_config(l)?, client)?);
            let counters = Default::default();
            start_livepeer(&network, l, camera, client, &Default::default(), &counters).await
        }
        JobMode::Static(s) => Ok(Job {
            urls: static_urls(s),
            server: None,
            worker: None,
            byoc: None,
            livepeer: None,
            channel_client: None,
            channels: Vec::new(),
            request_id,
            reader_start_seq: -1,
            stopped: AtomicBool::new(false),
        }),
        JobMode::Byoc(b) => {
            // The stream id names the orchestrator's channels, so each start
            // gets new ones, holding only this job's segments: readers start
            // at the current segment.
            let params = with_camera_size(&b.params, camera);
            let (stream, urls) =
                ByocStream::start(b, &params, client, &request_id, byoc_counters).await?;
            Ok(Job {
                urls,
                server: None,
                worker: None,
                byoc: Some(stream),
                livepeer: None,
                channel_client: None,
                channels: Vec::new(),
                request_id,
                reader_start_seq: -2,
                stopped: AtomicBool::new(false),
            })
        }
        JobMode::Worker(w) => {
            let server = match server {
                Some(s) => s,
                None => start_worker_server(w).await?,
            };
            let channels = worker_channels(&w.channel_prefix, n);
            for (name, ct) in &channels {
                server.state.create_channel(name, Some(ct.to_string()))?;
            }
            let names: Vec<String> = channels.iter().map(|(n, _)| n.clone()).collect();
            // The worker reaches our server by the address we listen on.
            let base = format!(
                "http://{}{}",
                server.local_addr(),
                server.state.config().base_path
            );
            let [ingest, out, control, events, data] = channels.map(|(n, _)| format!("{base}{n}"));
            let urls = JobUrls {
                publish: ingest.clone(),
                subscribe: Some(out.clone()),
                control: Some(control.clone()),
                events: Some(events.clone()),
                data: Some(data.clone()),
            };
            let client = WorkerClient::new(&w.worker_url, HttpClient::new(client)?);
            // From the worker's side: it subscribes to our ingest and
            // publishes to our output, events and data channels.
            let body = serde_json::json!({
                "subscribe_url": ingest,
                "publish_url": out,
                "control_url": control,
                "events_url": events,
                "data_url": data,
                "gateway_request_id": request_id,
                "params": start_params(w, camera),
            });
            let worker = match WorkerApi::start(client, &w.api_prefix, &body).await {
                Ok(api) => api,
                Err(e) => {
                    // Nobody will use this start's channels.
                    for name in &names {
                        server.state.close_channel(name);
                    }
                    return Err(e);
                }
            };
            info!(path = %worker.start_path, "worker stream API found");
            Ok(Job {
                urls,
                server: Some(server),
                worker: Some(worker),
                byoc: None,
                livepeer: None,
                channel_client: None,
                channels: names,
                request_id,
                reader_start_seq: -2,
                stopped: AtomicBool::new(false),
            })
        }
    }
}

impl Job {
    /// Ends the ingest channel (worker mode): the segment being written ends
    /// and the worker's subscriber sees the stream end. Done before
    /// [`stop`](Self::stop): pytrickle asked to stop while an ingest segment
    /// still streams leaves its decoder blocked on that segment for good.
    pub fn end_ingest(&self) {
        if let (Some(server), Some(ingest)) = (&self.server, self.channels.first()) {
            server.state.close_channel(ingest);
        }
    }

    /// Stops the worker's stream (worker mode) or the BYOC stream, once.
    pub async fn stop(&self) -> Result<(), JobError> {
        if self.stopped.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        if let Some(w) = &self.worker {
            w.post(&w.stop_paths, &serde_json::json!({})).await?;
        }
        if let Some(b) = &self.byoc {
            b.stop().await?;
        }
        if let Some(l) = &self.livepeer {
            l.stop().await?;
        }
        Ok(())
    }

    /// The client options for this job's channels: the job's own (a
    /// Livepeer orchestrator's pin) or else `agent`'s.
    pub fn channel_client(&self, agent: &ClientOptions) -> ClientOptions {
        self.channel_client.clone().unwrap_or_else(|| agent.clone())
    }

    /// Why the job cannot go on, when it found out before its pipeline went
    /// silent (a Livepeer payment refused for good): restart it as dead.
    pub fn failed(&self) -> Option<String> {
        if let Some(b) = &self.byoc {
            return b.failed();
        }
        self.livepeer.as_ref().and_then(|l| l.failed())
    }

    /// Where stages report this job's closed channels and output (livepeer
    /// and byoc modes: such a job is restarted at once, not once its events
    /// have been silent for `pipeline_dead_after`).
    pub fn watch(&self) -> Option<Arc<watch::JobWatch>> {
        if let Some(b) = &self.byoc {
            return Some(b.watch());
        }
        self.livepeer.as_ref().map(|l| l.watch())
    }

    /// The Livepeer job, in livepeer mode.
    pub fn livepeer(&self) -> Option<&livepeer::LivepeerStream> {
        self.livepeer.as_ref()
    }

    /// Closes and removes this job's channels on our server, once the next
    /// job's readers have moved to theirs.
    pub fn close_channels(&self) {
        if let Some(server) = &self.server {
            for name in &self.channels {
                server.state.close_channel(name);
            }
        }
    }

    /// Sends new parameters to the worker's HTTP API, or a BYOC stream's
    /// `/ai/stream/update`. For a worker only without a control channel: a
    /// worker given both (pytrickle) applies each.
    pub async fn update_params(
        &self,
        params: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), JobError> {
        if let Some(w) = &self.worker {
            let body = serde_json::Value::Object(params.clone());
            w.post(&w.params_paths, &body).await?;
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

    pub fn worker(&self) -> Option<&WorkerApi> {
        self.worker.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_tries_api_then_root_then_the_alias() {
        assert_eq!(
            start_paths("auto"),
            ["/api/stream/start", "/stream/start", "/live-video-to-video"]
        );
        assert_eq!(start_paths("/"), ["/stream/start"]);
        assert_eq!(start_paths("/api/"), ["/api/stream/start"]);
    }

    #[test]
    fn stop_and_params_follow_the_start_that_answered() {
        assert_eq!(sibling_paths("/stream/start", "stop"), ["/stream/stop"]);
        assert_eq!(
            sibling_paths("/api/stream/start", "params"),
            ["/api/stream/params"]
        );
        assert_eq!(
            sibling_paths("/live-video-to-video", "stop"),
            ["/api/stream/stop", "/stream/stop"]
        );
    }

    #[test]
    fn camera_size_is_sent_unless_params_set_it() {
        let camera = CameraConfig {
            width: 320,
            height: 240,
            fps: 15,
            ..Default::default()
        };
        let mut w = WorkerJob::default();
        w.params.insert("width".into(), 640.into());
        let p = start_params(&w, &camera);
        assert_eq!(p["width"], 640);
        assert_eq!(p["height"], 240);
        assert_eq!(p["fps"], 15);
    }

    #[test]
    fn each_start_gets_its_own_channel_names() {
        let [a, ..] = worker_channels("cam", 1);
        let [b, .., d] = worker_channels("cam", 2);
        assert_eq!(a.0, "cam-1-in");
        assert_eq!(b.0, "cam-2-in");
        assert_eq!(d, ("cam-2-data".to_string(), "application/jsonl"));
    }
}
