//! `trickle-edge run`: builds the stages from a config, supervises them, and
//! reloads or stops them on signals.
//!
//! Order matters at both ends. At start, outputs are built first (which puts
//! every GPIO line in its failsafe state) before anything can drive them. On
//! stop, the rules task ends, then outputs go to failsafe *before* channels
//! and the job are torn down.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::data_path::{ChannelReader, DataEvent, Replace, RulesHandle, RulesStage};
use super::media_path::{CameraPublisher, CameraPublisherConfig, MediaPathStats};
use super::output_watch::OutputWatch;
use super::plan::{self, ConfigDiff, JobChange};
pub use super::stats::{AgentStats, Health};
use crate::actions::{Outputs, SimulatedGpio};
use crate::backoff::Backoff;
use crate::config::{AgentConfig, JobMode, ResolvedConfig};
use crate::job::{self, Job, JobRunner, JobUrls, control::ControlChannel};
use crate::media::CameraConfig;
use crate::rules::{ChannelEvent, RuleSet};
use crate::shutdown::Shutdown;
use crate::stage::StageHandle;
use crate::sync::LockIgnoringPoison;
use crate::trickle::{
    ClientOptions, PublisherOptions, RunningServer, Subscriber, SubscriberOptions,
};

/// What the embedding program can do to a running agent.
pub struct AgentControl {
    pub shutdown: Shutdown,
    pub reload: mpsc::Receiver<ResolvedConfig>,
    /// Written by the agent from its first moment, before any stage exists,
    /// so a job that never starts can still be reported with its reason.
    pub job_start: Arc<JobStartStatus>,
}

/// Whether the job has started, and if not, why the last attempt failed.
#[derive(Debug, Default)]
pub struct JobStartStatus {
    attempts: AtomicU64,
    error: std::sync::Mutex<Option<String>>,
}

impl JobStartStatus {
    /// Start attempts so far (the first one included).
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// The last attempt's error while the job is not running; `None` once it runs.
    pub fn error(&self) -> Option<String> {
        self.error.lock_ignoring_poison().clone()
    }

    fn record(&self, error: Option<String>) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        *self.error.lock_ignoring_poison() = error;
    }
}

/// Handles a caller (the demo, tests) may hold while the agent runs.
#[derive(Clone)]
pub struct AgentHandles {
    pub stats: Arc<AgentStats>,
    pub gpio: SimulatedGpio,
    /// The agent's own trickle server, in worker mode.
    pub server: Option<Arc<RunningServer>>,
    pub urls: JobUrls,
    /// Where `/healthz` and `/metrics` listen, when they could bind.
    pub supervisor_addr: Option<std::net::SocketAddr>,
    /// The camera as first started (benchmarks tap its pipeline).
    pub camera: crate::media::CameraHandle,
}

/// Why the agent could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Outputs(#[from] crate::actions::ActionError),
    #[error(transparent)]
    Rules(#[from] crate::rules::RuleError),
    #[error(transparent)]
    Job(#[from] job::JobError),
    #[error(transparent)]
    Camera(#[from] crate::media::MediaError),
    #[error(transparent)]
    Channel(#[from] crate::trickle::SubscribeError),
}

/// The job's channel stages (data and events readers, the control writer):
/// restarted together when the job restarts.
struct ChannelStages {
    stages: Vec<StageHandle>,
    /// Parameter updates for the control channel.
    params: mpsc::Sender<serde_json::Value>,
}

impl ChannelStages {
    fn spawn(
        cfg: &AgentConfig,
        job: &Job,
        client: &ClientOptions,
        items: &mpsc::Sender<DataEvent>,
        stats: &Arc<AgentStats>,
        shutdown: &Shutdown,
    ) -> Result<Self, AgentError> {
        let client = &job.channel_client(client);
        let sub_opts = SubscriberOptions {
            client: client.clone(),
            start_seq: job.reader_start_seq,
            ..Default::default()
        };
        let mut stages = Vec::new();
        let urls = &job.urls;
        let channels = [
            (&urls.data, "data", None),
            (&urls.events, "events", Some(stats.health.clone())),
        ];
        for (url, name, health) in channels {
            let Some(url) = url else { continue };
            let reader = ChannelReader {
                subscriber: Subscriber::new(url, sub_opts.clone())?,
                channel: Arc::from(name),
                limits: Default::default(),
                items: items.clone(),
                stats: stats.data.clone(),
                health,
                watch: job.watch(),
            };
            stages.push(reader.spawn(shutdown));
        }
        // A Livepeer job whose pipeline should publish video: follow it.
        if let (JobMode::Livepeer(l), Some(watch), Some(url)) =
            (&cfg.job, job.watch(), &urls.subscribe)
            && l.output_expected
        {
            let output = OutputWatch {
                subscriber: Subscriber::new(url, sub_opts.clone())?,
                watch,
            };
            stages.push(output.spawn(shutdown));
        }
        let (params, params_rx) = mpsc::channel(4);
        if let Some(url) = &urls.control {
            let control = ControlChannel {
                url: url.clone(),
                options: PublisherOptions {
                    client: client.clone(),
                    ..Default::default()
                },
                keepalive_interval: cfg.supervisor.keepalive_interval,
                params: params_rx,
            };
            stages.push(control.spawn(shutdown));
        }
        Ok(Self { stages, params })
    }

    /// Stops all of them at once, each given 2 s.
    async fn stop(self) {
        let stops = self
            .stages
            .into_iter()
            .map(|s| s.stop(Duration::from_secs(2)));
        futures_util::future::join_all(stops).await;
    }
}

fn camera_publisher(
    cfg: &AgentConfig,
    job: &Job,
    client: &ClientOptions,
    media: &Arc<MediaPathStats>,
    shutdown: &Shutdown,
) -> Result<CameraPublisher, AgentError> {
    let config = CameraPublisherConfig {
        camera: cfg.camera.clone(),
        encoder: cfg.encoder.clone(),
        queue: plan::queue_limits(cfg),
        url: job.urls.publish.clone(),
        options: plan::media_publisher_options(&job.channel_client(client)),
        stats: media.clone(),
        close_on_exit: false,
        watch: job.watch(),
    };
    Ok(CameraPublisher::spawn(config, shutdown)?)
}

/// Starts a job, retrying with backoff until it works or shutdown.
async fn start_job(
    mode: &JobMode,
    camera: &CameraConfig,
    runner: &JobRunner,
    client: &ClientOptions,
    shutdown: &mut Shutdown,
    status: &JobStartStatus,
) -> Option<Job> {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut logged = false;
    loop {
        let attempt = tokio::select! {
            r = runner.start(mode, camera, client) => r,
            _ = shutdown.recv() => return None,
        };
        match attempt {
            Ok(j) => {
                status.record(None);
                info!(mode = mode.name(), publish = %j.urls.publish, "job started");
                return Some(j);
            }
            Err(e) => {
                status.record(Some(e.to_string()));
                if !logged {
                    warn!(error = %e, "job start failed; retrying with backoff");
                    logged = true;
                }
                tokio::select! {
                    _ = backoff.wait() => {}
                    _ = shutdown.recv() => return None,
                }
            }
        }
    }
}

fn notify(state: &[sd_notify::NotifyState<'_>]) {
    // Outside systemd NOTIFY_SOCKET is unset and this is a no-op.
    let _ = sd_notify::notify(false, state);
}

/// Ends a job in the order a worker can follow: the camera stops (its
/// segment ends), the ingest channel closes (the worker's subscriber sees the
/// end of the stream), then the worker is asked to stop. The job's other
/// channels stay until its successor runs.
async fn retire_job(camera: Option<CameraPublisher>, job: &Job) {
    if let Some(m) = camera {
        let _ = m.stop().await;
    }
    job.end_ingest();
    if let Err(e) = job.stop().await {
        warn!(error = %e, "worker did not take the stop request");
    }
}

/// Whether the loop goes on after a step.
enum Flow {
    Continue,
    /// Shutdown was asked for while the step waited.
    Stop,
}

/// The running topology: every stage and what a reload or a job restart
/// needs to rebuild them.
struct Running {
    resolved: ResolvedConfig,
    runner: JobRunner,
    job: Job,
    stats: Arc<AgentStats>,
    media: Arc<MediaPathStats>,
    camera: Option<CameraPublisher>,
    channels: Option<ChannelStages>,
    rules: RulesHandle,
    items: mpsc::Sender<DataEvent>,
    shutdown: Shutdown,
    job_start: Arc<JobStartStatus>,
    /// Waits between restarts of a job whose pipeline keeps dying.
    job_backoff: Backoff,
    dead_logged: bool,
}

impl Running {
    fn client(&self) -> ClientOptions {
        plan::client_options(&self.resolved)
    }

    async fn restart_camera(&mut self) -> Result<(), AgentError> {
        if let Some(m) = self.camera.take() {
            let _ = m.stop().await;
        }
        let cfg = &self.resolved.config;
        let camera = camera_publisher(cfg, &self.job, &self.client(), &self.media, &self.shutdown)?;
        self.stats.camera_replaced(camera.queue_stats.clone());
        self.camera = Some(camera);
        Ok(())
    }

    /// Applies a reloaded config: swaps rules and outputs, sends new
    /// parameters or restarts the job, restarts capture, as the diff says.
    async fn reload(&mut self, new: ResolvedConfig) -> Result<Flow, AgentError> {
        self.stats.reloads.fetch_add(1, Ordering::Relaxed);
        let diff = ConfigDiff::between(&self.resolved.config, &new.config);
        let old = std::mem::replace(&mut self.resolved, new);
        if diff.rules_or_outputs() {
            // Rules first: they are pure, so a refusal touches nothing.
            let rules = match RuleSet::new(self.resolved.config.rules.clone()) {
                Ok(r) => r,
                Err(e) => {
                    error!(error = %e, "reload refused: rules invalid; keeping the running config");
                    self.resolved = old;
                    return Ok(Flow::Continue);
                }
            };
            let current = self.stats.outputs();
            let r = current.reconcile(&self.resolved.config.outputs);
            for e in &r.not_restored {
                error!(error = %e, "reload: an output of the running config could not be restored");
            }
            let refused = r.refused;
            let outputs = Arc::new(r.outputs);
            self.stats.replace_outputs(outputs.clone());
            if let Some(e) = refused {
                error!(error = %e, "reload refused: outputs invalid; keeping the running config");
                // The old rules again, with the old outputs (restored).
                // They were running, so they build; should they not, the
                // rules task keeps its rules with the restored outputs.
                match RuleSet::new(old.config.rules.clone()) {
                    Ok(rules) => {
                        let _ = self.rules.replace.send(Replace { rules, outputs }).await;
                    }
                    Err(e) => error!(error = %e, "reload: the running rules could not be rebuilt"),
                }
                self.resolved = old;
                return Ok(Flow::Continue);
            }
            let _ = self.rules.replace.send(Replace { rules, outputs }).await;
        }
        match &diff.job {
            JobChange::Params(params) => self.send_params(params).await,
            JobChange::Restart => {
                info!("reload: job settings changed; restarting the job");
                self.retire_job().await;
                let client = self.client();
                let cfg = &self.resolved.config;
                let started = start_job(
                    &cfg.job,
                    &cfg.camera,
                    &self.runner,
                    &client,
                    &mut self.shutdown,
                    &self.job_start,
                );
                let Some(job) = started.await else {
                    return Ok(Flow::Stop);
                };
                self.replace_job(job).await?;
                self.stats.health.reset();
            }
            JobChange::Unchanged => {}
        }
        let cfg = &self.resolved.config;
        self.stats
            .set_health_basis(cfg.encoder.gop_seconds, self.job.urls.events.is_some());
        self.stats.page.set(cfg, &self.job.urls);
        if diff.camera_restart_alone() {
            info!("reload: camera settings changed; restarting capture");
            self.restart_camera().await?;
        }
        Ok(Flow::Continue)
    }

    /// New parameters for the running job, delivered once: on the control
    /// channel when the job has one, else to the worker's HTTP API. A
    /// pytrickle worker applies both, so sending both would apply twice.
    async fn send_params(&self, params: &serde_json::Map<String, serde_json::Value>) {
        // A BYOC stream takes parameters through the orchestrator's
        // `/ai/stream/update`, as Livepeer's gateway sends them; its control
        // channel carries keepalives only.
        if self.job.byoc().is_none()
            && let (Some(c), Some(_)) = (&self.channels, &self.job.urls.control)
        {
            info!("reload: sending new parameters on the control channel");
            let update = serde_json::Value::Object(params.clone());
            if c.params.send(update).await.is_err() {
                warn!("reload: control channel gone; parameters not sent");
            }
            return;
        }
        info!("reload: sending new parameters to the job's API");
        if let Err(e) = self.job.update_params(params).await {
            warn!(error = %e, "reload: the job refused the parameters");
        }
    }

    /// Ends the running job: see [`retire_job`].
    async fn retire_job(&mut self) {
        retire_job(self.camera.take(), &self.job).await;
    }

    /// Moves every stage to `job`'s channels: the camera publishes to its
    /// ingest, new readers follow its data and events channels, and only
    /// then are the old job's channels closed and removed.
    async fn replace_job(&mut self, job: Job) -> Result<(), AgentError> {
        let old = std::mem::replace(&mut self.job, job);
        if let Some(c) = self.channels.take() {
            c.stop().await;
        }
        self.restart_camera().await?;
        let client = self.client();
        self.channels = Some(ChannelStages::spawn(
            &self.resolved.config,
            &self.job,
            &client,
            &self.items,
            &self.stats,
            &self.shutdown,
        )?);
        old.close_channels();
        self.stats.page.set(&self.resolved.config, &self.job.urls);
        Ok(())
    }

    /// Why the running job cannot go on, if it cannot: its pipeline went
    /// silent, or (livepeer) a payment or channel failed, its output went
    /// silent, or the publisher fell too far behind.
    fn job_fault(&self) -> Option<String> {
        if let Some(reason) = self.job.failed() {
            return Some(reason);
        }
        if let JobMode::Livepeer(l) = &self.resolved.config.job {
            if let Some(w) = self.job.watch()
                && l.output_expected
                && self.job.urls.subscribe.is_some()
                && w.output_silent_for() >= l.output_silent_after
            {
                return Some(format!(
                    "no output segment for {:.0} s on {}",
                    w.output_silent_for().as_secs_f64(),
                    self.job.urls.subscribe.as_deref().unwrap_or_default()
                ));
            }
            if let Some(camera) = &self.camera {
                let admitted = camera.queue_stats.segments.load(Ordering::Relaxed);
                let accepted_at = self.media.admitted_at_accept.load(Ordering::Relaxed);
                let behind = admitted.saturating_sub(accepted_at);
                if behind >= l.max_segments_behind {
                    return Some(format!(
                        "the publisher is {behind} segments behind on {} (limit {})",
                        self.job.urls.publish, l.max_segments_behind
                    ));
                }
            }
        }
        if self.stats.health().pipeline_dead {
            return Some(format!(
                "pipeline dead: no pipeline event for {} s",
                self.stats.health.silent_for().as_secs()
            ));
        }
        None
    }

    /// The job cannot go on (`reason`): outputs to failsafe, rules told, the
    /// job stopped and started again on fresh channels after a backoff that
    /// grows while it keeps dying. A Livepeer job goes to the next
    /// orchestrator; more than `max_swaps` swaps within `swap_window` back
    /// off first and start over from discovery.
    async fn restart_dead_job(&mut self, reason: String) -> Result<Flow, AgentError> {
        if !self.dead_logged {
            warn!(
                %reason,
                "the job cannot go on; outputs to failsafe, restarting the job"
            );
            self.dead_logged = true;
        }
        self.stats.pipeline_deaths.fetch_add(1, Ordering::Relaxed);
        self.stats.outputs().failsafe().await;
        let _ = self
            .items
            .try_send(DataEvent::Channel(ChannelEvent::PipelineDead));
        self.retire_job().await;
        if let JobMode::Livepeer(l) = &self.resolved.config.job
            && let Some(delay) = self.runner.failover(l, &reason)
        {
            let counters = self.runner.livepeer_counters();
            let until = std::time::SystemTime::now() + delay;
            let until_ms = until
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(1);
            counters
                .backing_off_until_unix_ms
                .store(until_ms, Ordering::Relaxed);
            warn!(
                max_swaps = l.max_swaps,
                swap_window_s = l.swap_window.as_secs(),
                backoff_s = delay.as_secs_f64(),
                %reason,
                "more than max_swaps orchestrator swaps within swap_window: backing off, \
                 then starting over from discovery"
            );
            let waited = tokio::select! {
                _ = tokio::time::sleep(delay) => true,
                _ = self.shutdown.recv() => false,
            };
            counters
                .backing_off_until_unix_ms
                .store(0, Ordering::Relaxed);
            if !waited {
                return Ok(Flow::Stop);
            }
            info!("back-off over: starting over from discovery");
        }
        tokio::select! {
            _ = self.job_backoff.wait() => {}
            _ = self.shutdown.recv() => return Ok(Flow::Stop),
        }
        let cfg = &self.resolved.config;
        let restarted = self
            .runner
            .start(&cfg.job, &cfg.camera, &self.client())
            .await;
        self.job_start
            .record(restarted.as_ref().err().map(|e| e.to_string()));
        match restarted {
            Ok(j) => {
                self.stats.job_restarts.fetch_add(1, Ordering::Relaxed);
                info!(publish = %j.urls.publish, "job restarted");
                self.replace_job(j).await?;
                self.dead_logged = false;
            }
            Err(e) => warn!(error = %e, "job restart failed; will retry"),
        }
        self.stats.health.reset();
        Ok(Flow::Continue)
    }

    /// Releases the outputs a reload replaced (failsafe, then their tasks).
    async fn retire(&self, old: Arc<Outputs>) {
        if let Ok(old) = Arc::try_unwrap(old) {
            old.shutdown(Duration::from_secs(2)).await;
        } else {
            warn!("old outputs still referenced after reload");
        }
    }

    /// Stop: the rules task first (nothing may drive an output after its
    /// failsafe), outputs to failsafe, then the job (camera, ingest, worker:
    /// see [`retire_job`]), the channel stages, and the
    /// channels themselves.
    /// Every stage already saw the agent's shutdown; this bounds and orders
    /// the waiting.
    async fn stop(mut self) {
        info!("stopping: outputs to failsafe, closing channels, stopping the job");
        let outputs = self.stats.outputs();
        let deadline = tokio::time::timeout(Duration::from_secs(4), async {
            self.rules.stage.stop(Duration::from_secs(1)).await;
            outputs.failsafe().await;
            // Queues drained, Home Assistant told `offline`.
            outputs.finish(Duration::from_secs(1)).await;
            notify(&[sd_notify::NotifyState::Stopping]);
            retire_job(self.camera.take(), &self.job).await;
            if let Some(c) = self.channels.take() {
                c.stop().await;
            }
            self.runner.close_channels();
        })
        .await;
        if deadline.is_err() {
            warn!("stop took longer than 4 s; exiting anyway");
        }
    }
}

/// The systemd watchdog and status line, once a second.
struct Watchdog {
    every: Duration,
    last_ping: Instant,
}

impl Watchdog {
    fn new(every: Duration) -> Self {
        Self {
            every,
            last_ping: Instant::now() - every,
        }
    }

    /// Pings only while the one health verdict says healthy, so systemd
    /// restarts an agent that is alive but not doing its job.
    fn tick(&mut self, stats: &AgentStats) {
        if stats.health().healthy && self.last_ping.elapsed() >= self.every {
            self.last_ping = Instant::now();
            notify(&[sd_notify::NotifyState::Watchdog]);
        }
        let status = status_line(stats);
        notify(&[sd_notify::NotifyState::Status(&status)]);
    }
}

/// Runs the agent until `control.shutdown` fires. `ready` receives the
/// handles once the stages exist (the demo and tests read them).
pub async fn run(
    resolved: ResolvedConfig,
    mut control: AgentControl,
    ready: Option<tokio::sync::oneshot::Sender<AgentHandles>>,
) -> Result<(), AgentError> {
    let client = plan::client_options(&resolved);
    let gpio = SimulatedGpio::default();
    let cfg = &resolved.config;
    // Outputs first: building them applies every failsafe state.
    let context = crate::actions::OutputContext {
        live: Arc::default(),
        model: cfg.board.clone(),
    };
    let outputs = Arc::new(Outputs::build_in(&cfg.outputs, gpio.clone(), context)?);
    let rules = RuleSet::new(cfg.rules.clone())?;
    let runner = JobRunner::prepare(&cfg.job).await?;
    let mut shutdown = control.shutdown.clone();
    let job_start = control.job_start.clone();
    let started = start_job(
        &cfg.job,
        &cfg.camera,
        &runner,
        &client,
        &mut shutdown,
        &job_start,
    );
    let Some(job) = started.await else {
        outputs.failsafe().await;
        return Ok(());
    };

    let media = Arc::new(MediaPathStats::default());
    let published = media.clone();
    runner.count_segments_with(Arc::new(move || {
        published.segments_published.load(Ordering::Relaxed)
    }));
    let camera = camera_publisher(cfg, &job, &client, &media, &shutdown)?;
    let stats = Arc::new(AgentStats::new(
        media.clone(),
        camera.queue_stats.clone(),
        cfg,
        outputs.clone(),
        job.urls.events.is_some(),
    ));
    if matches!(cfg.job, JobMode::Livepeer(_)) {
        let _ = stats.livepeer.set(runner.livepeer_counters());
    }
    if matches!(cfg.job, JobMode::Byoc(_)) {
        let _ = stats.byoc.set(runner.byoc_counters());
    }
    let (items, items_rx) = mpsc::channel(1024);
    let rules = RulesStage {
        rules,
        outputs,
        items: items_rx,
        stats: stats.data.clone(),
    }
    .spawn(&shutdown);
    let channels = ChannelStages::spawn(cfg, &job, &client, &items, &stats, &shutdown)?;

    // Not a child of the agent's shutdown: `/healthz` answers through the
    // whole stop, and is stopped last.
    stats.page.set(cfg, &job.urls);
    let access = super::http::Access {
        trust_loopback: cfg.supervisor.trust_loopback,
        token: resolved.token.as_ref().map(|t| t.0.clone()),
    };
    let http = super::http::start(
        cfg.supervisor.listen,
        stats.clone(),
        access,
        &Shutdown::never(),
    )
    .await;
    if let Err(e) = &http {
        warn!(listen = %cfg.supervisor.listen, error = %e, "health endpoint not available");
    }
    if let Some(r) = ready {
        let _ = r.send(AgentHandles {
            stats: stats.clone(),
            gpio: gpio.clone(),
            server: runner.server(),
            urls: job.urls.clone(),
            supervisor_addr: http.as_ref().ok().map(|(a, _)| *a),
            camera: camera.handle.clone(),
        });
    }

    let mut first = media.first_published.subscribe();
    // It may have flipped already: look at the current value on the first turn.
    first.mark_changed();
    let mut ready_sent = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut watchdog = Watchdog::new(cfg.supervisor.watchdog_interval);
    let mut running = Running {
        resolved,
        runner,
        job,
        stats,
        media,
        camera: Some(camera),
        channels: Some(channels),
        rules,
        items,
        shutdown: shutdown.clone(),
        job_start,
        job_backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
        dead_logged: false,
    };
    loop {
        // A Livepeer job's stages report a closed channel here: act on it
        // at once rather than at the next tick.
        let watch = running.job.watch();
        let job_failed = async {
            match &watch {
                Some(w) => w.failed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.recv() => break,
            _ = job_failed => {
                if let Some(reason) = running.job_fault()
                    && let Flow::Stop = running.restart_dead_job(reason).await?
                {
                    break;
                }
            }
            r = first.changed(), if !ready_sent => {
                if r.is_ok() && *first.borrow_and_update() {
                    ready_sent = true;
                    info!(seconds = running.stats.started.elapsed().as_secs_f64(), "first segment published: READY");
                    notify(&[sd_notify::NotifyState::Ready]);
                }
            }
            Some(old) = running.rules.retired.recv() => running.retire(old).await,
            Some(new) = control.reload.recv() => {
                if let Flow::Stop = running.reload(new).await? {
                    break;
                }
            }
            _ = tick.tick() => {
                if let Some(reason) = running.job_fault() {
                    if let Flow::Stop = running.restart_dead_job(reason).await? {
                        break;
                    }
                } else if running.stats.health.heard_since_reset() {
                    // Only a job heard from since its start resets the
                    // backoff: one that starts and dies silently again
                    // waits longer each time (up to 1 s, 2 s, … 60 s).
                    running.job_backoff.reset();
                }
                running.stats.job_restarts_unheard.store(
                    u64::from(running.job_backoff.attempts()),
                    Ordering::Relaxed,
                );
                watchdog.tick(&running.stats);
            }
        }
    }
    running.stop().await;
    if let Ok((_, endpoint)) = http {
        endpoint.stop(Duration::from_secs(2)).await;
    }
    Ok(())
}

/// One line for systemd's STATUS and the logs.
pub fn status_line(stats: &AgentStats) -> String {
    format!(
        "segments={} dropped_gops={} items={} rule_fires={} effects={} pipeline={} job_restarts={}",
        stats.media.segments_published.load(Ordering::Relaxed),
        stats.dropped_gops(),
        stats.data.items.load(Ordering::Relaxed),
        stats.data.rule_fires.load(Ordering::Relaxed),
        stats.data.effects.load(Ordering::Relaxed),
        if stats.health.is_dead() {
            "dead"
        } else {
            "alive"
        },
        stats.job_restarts.load(Ordering::Relaxed),
    ) + &stats
        .livepeer
        .get()
        .and_then(|l| l.orchestrator())
        .map(|o| format!(" orchestrator={o}"))
        .unwrap_or_default()
}
