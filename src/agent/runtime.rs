//! `trickle-edge run`: builds the stages from a config, supervises them, and
//! reloads or stops them on signals.
//!
//! Order matters at both ends. At start, outputs are built first (which puts
//! every GPIO line in its failsafe state) before anything can drive them. On
//! stop, outputs go to failsafe *before* channels and the job are torn down.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::data_path::{DataEvent, Replace, read_channel, run_rules};
use super::media_path::{CameraPublisher, MediaPathStats};
pub use super::stats::{AgentStats, Health};
use crate::actions::{Outputs, SimulatedGpio};
use crate::backoff::Backoff;
use crate::config::{AgentConfig, JobMode, ResolvedConfig};
use crate::job::{self, Job, JobUrls, control::run_control};
use crate::media::GopQueueLimits;
use crate::rules::{ChannelEvent, RuleSet};
use crate::sync::LockIgnoringPoison;
use crate::trickle::{
    ClientOptions, PublisherOptions, RunningServer, Subscriber, SubscriberOptions,
};

/// What the embedding program can do to a running agent.
pub struct AgentControl {
    pub shutdown: watch::Receiver<bool>,
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

struct ChannelStage {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl ChannelStage {
    async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
    }
}

fn client_options(cfg: &ResolvedConfig) -> ClientOptions {
    ClientOptions {
        tls: cfg.tls_options(),
        bearer_token: cfg.token.as_ref().map(|t| t.0.clone()),
        ..Default::default()
    }
}

fn start_media(
    cfg: &AgentConfig,
    urls: &JobUrls,
    client: &ClientOptions,
    media: &Arc<MediaPathStats>,
) -> anyhow::Result<CameraPublisher> {
    let queue = GopQueueLimits {
        capacity_gops: cfg.queue.gops,
        ..Default::default()
    };
    let opts = PublisherOptions {
        client: client.clone(),
        content_type: "video/MP2T".into(),
        ..Default::default()
    };
    Ok(CameraPublisher::start(
        cfg.camera.clone(),
        cfg.encoder.clone(),
        queue,
        urls.publish.clone(),
        opts,
        media.clone(),
        false,
    )?)
}

fn start_channels(
    cfg: &AgentConfig,
    urls: &JobUrls,
    client: &ClientOptions,
    tx: &mpsc::Sender<DataEvent>,
    stats: &Arc<AgentStats>,
    params: mpsc::Receiver<serde_json::Value>,
) -> anyhow::Result<ChannelStage> {
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    // Our own server's channels hold only this job's segments: read the one
    // being written from its start (-2), so no early detection is missed.
    // Elsewhere a current segment may hold stale items: wait for the next.
    let start_seq = match cfg.job {
        JobMode::Worker(_) => -2,
        JobMode::Static(_) => -1,
    };
    let sub_opts = SubscriberOptions {
        client: client.clone(),
        start_seq,
        ..Default::default()
    };
    if let Some(url) = &urls.data {
        let sub = Subscriber::new(url, sub_opts.clone())?;
        tasks.push(tokio::spawn(read_channel(
            sub,
            Arc::from("data"),
            Default::default(),
            tx.clone(),
            stats.data.clone(),
            None,
            stop_rx.clone(),
        )));
    }
    if let Some(url) = &urls.events {
        let sub = Subscriber::new(url, sub_opts)?;
        tasks.push(tokio::spawn(read_channel(
            sub,
            Arc::from("events"),
            Default::default(),
            tx.clone(),
            stats.data.clone(),
            Some(stats.health.clone()),
            stop_rx.clone(),
        )));
    }
    if let Some(url) = &urls.control {
        let opts = PublisherOptions {
            client: client.clone(),
            ..Default::default()
        };
        tasks.push(tokio::spawn(run_control(
            url.clone(),
            opts,
            cfg.supervisor.keepalive_interval,
            params,
            stop_rx,
        )));
    }
    Ok(ChannelStage { stop, tasks })
}

/// Starts a job, retrying with backoff until it works or shutdown.
async fn start_job(
    cfg: &AgentConfig,
    server: Option<Arc<RunningServer>>,
    client: &ClientOptions,
    shutdown: &mut watch::Receiver<bool>,
    status: &JobStartStatus,
) -> Option<Job> {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut logged = false;
    loop {
        let attempt = tokio::select! {
            r = job::start(&cfg.job, server.clone(), client) => r,
            _ = shutdown.changed() => return None,
        };
        match attempt {
            Ok(j) => {
                status.record(None);
                info!(mode = cfg.job.name(), publish = %j.urls.publish, "job started");
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
                    _ = shutdown.changed() => return None,
                }
            }
        }
    }
}

fn notify(state: &[sd_notify::NotifyState<'_>]) {
    // Outside systemd NOTIFY_SOCKET is unset and this is a no-op.
    let _ = sd_notify::notify(false, state);
}

/// Runs the agent until `control.shutdown` flips. `ready` receives the
/// handles once the stages exist (the demo and tests read them).
pub async fn run(
    resolved: ResolvedConfig,
    mut control: AgentControl,
    ready: Option<tokio::sync::oneshot::Sender<AgentHandles>>,
) -> anyhow::Result<()> {
    let mut resolved = resolved;
    let client = client_options(&resolved);
    let gpio = SimulatedGpio::default();
    // Outputs first: building them applies every failsafe state.
    let outputs = Arc::new(Outputs::build_with(&resolved.config.outputs, gpio.clone())?);
    let rules = RuleSet::new(resolved.config.rules.clone())?;

    let server = match &resolved.config.job {
        JobMode::Worker(w) => Some(job::start_worker_server(w).await?),
        JobMode::Static(_) => None,
    };
    let mut shutdown = control.shutdown.clone();
    let job_start = control.job_start.clone();
    let Some(mut job) = start_job(
        &resolved.config,
        server.clone(),
        &client,
        &mut shutdown,
        &job_start,
    )
    .await
    else {
        outputs.failsafe().await;
        return Ok(());
    };

    let media = Arc::new(MediaPathStats::default());
    let media_stage = start_media(&resolved.config, &job.urls, &client, &media)?;
    let media_queue_stats = media_stage.queue_stats.clone();
    let mut media_stage = Some(media_stage);
    let stats = Arc::new(AgentStats::new(
        media.clone(),
        media_queue_stats,
        &resolved.config,
        outputs.clone(),
        job.urls.events.is_some(),
    ));
    let (rules_stop_tx, rules_stop) = watch::channel(false);
    let (data_tx, data_rx) = mpsc::channel(1024);
    let (replace_tx, replace_rx) = mpsc::channel(1);
    let (retired_tx, mut retired_rx) = mpsc::unbounded_channel::<Arc<Outputs>>();
    let rules_task = tokio::spawn(run_rules(
        rules,
        outputs,
        data_rx,
        stats.data.clone(),
        replace_rx,
        retired_tx,
        rules_stop,
    ));
    let (mut params_tx, params_rx) = mpsc::channel(4);
    let mut channels = Some(start_channels(
        &resolved.config,
        &job.urls,
        &client,
        &data_tx,
        &stats,
        params_rx,
    )?);

    let http = super::http::start(resolved.config.supervisor.listen, stats.clone()).await;
    if let Err(e) = &http {
        warn!(listen = %resolved.config.supervisor.listen, error = %e, "health endpoint not available");
    }
    if let Some(r) = ready {
        let _ = r.send(AgentHandles {
            stats: stats.clone(),
            gpio: gpio.clone(),
            server: server.clone(),
            urls: job.urls.clone(),
            supervisor_addr: http.as_ref().ok().map(|(a, _)| *a),
            camera: media_stage
                .as_ref()
                .map(|m| m.handle.clone())
                .expect("media stage just started"),
        });
    }

    let mut first = media.first_published.subscribe();
    // It may have flipped already: look at the current value on the first turn.
    first.mark_changed();
    let mut ready_sent = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let watchdog_every = resolved.config.supervisor.watchdog_interval;
    let mut last_ping = Instant::now() - watchdog_every;
    let mut dead_logged = false;
    let mut job_backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = control.shutdown.changed() => break,
            r = first.changed(), if !ready_sent => {
                if r.is_ok() && *first.borrow_and_update() {
                    ready_sent = true;
                    info!(seconds = stats.started.elapsed().as_secs_f64(), "first segment published: READY");
                    notify(&[sd_notify::NotifyState::Ready]);
                }
            }
            Some(old) = retired_rx.recv() => {
                // Replaced by a reload: release its lines (failsafe) and tasks.
                if let Ok(old) = Arc::try_unwrap(old) {
                    old.shutdown(Duration::from_secs(2)).await;
                } else {
                    warn!("old outputs still referenced after reload");
                }
            }
            Some(new) = control.reload.recv() => {
                stats.reloads.fetch_add(1, Ordering::Relaxed);
                let old = std::mem::replace(&mut resolved, new);
                let (o, n) = (&old.config, &resolved.config);
                if o.rules != n.rules || o.outputs != n.outputs {
                    match (Outputs::build_with(&n.outputs, gpio.clone()), RuleSet::new(n.rules.clone())) {
                        (Ok(outputs), Ok(rules)) => {
                            let outputs = Arc::new(outputs);
                            stats.replace_outputs(outputs.clone());
                            let _ = replace_tx.send(Replace { rules, outputs }).await;
                        }
                        (Err(e), _) => error!(error = %e, "reload: outputs refused; keeping the running ones"),
                        (_, Err(e)) => error!(error = %e, "reload: rules refused; keeping the running ones"),
                    }
                }
                let params_only = match (&o.job, &n.job) {
                    (JobMode::Worker(a), JobMode::Worker(b)) => {
                        let mut a2 = a.clone();
                        a2.params = b.params.clone();
                        (a2 == *b && a.params != b.params).then(|| b.params.clone())
                    }
                    _ => None,
                };
                if let Some(params) = params_only {
                    info!("reload: sending new parameters to the job");
                    if let Err(e) = job.update_params(&params).await {
                        warn!(error = %e, "reload: worker refused the parameters");
                    }
                    let _ = params_tx.try_send(serde_json::Value::Object(params));
                } else if o.job != n.job || o.tls != n.tls || o.auth != n.auth {
                    info!("reload: job settings changed; restarting the job");
                    if let Some(c) = channels.take() { c.stop().await; }
                    if let Some(m) = media_stage.take() { let _ = m.stop().await; }
                    let _ = job.stop().await;
                    let Some(j) = start_job(n, server.clone(), &client_options(&resolved), &mut shutdown, &job_start).await else { break };
                    job = j;
                    let ms = start_media(n, &job.urls, &client_options(&resolved), &media)?;
                    stats.camera_replaced(ms.queue_stats.clone());
                    media_stage = Some(ms);
                    let (ptx, prx) = mpsc::channel(4);
                    params_tx = ptx;
                    channels = Some(start_channels(n, &job.urls, &client_options(&resolved), &data_tx, &stats, prx)?);
                    stats.health.reset();
                }
                stats.set_health_basis(n.encoder.gop_seconds, job.urls.events.is_some());
                if o.camera != n.camera || o.encoder != n.encoder || o.queue != n.queue {
                    info!("reload: camera settings changed; restarting capture");
                    if let Some(m) = media_stage.take() { let _ = m.stop().await; }
                    let ms = start_media(n, &job.urls, &client_options(&resolved), &media)?;
                    stats.camera_replaced(ms.queue_stats.clone());
                    media_stage = Some(ms);
                }
            }
            _ = tick.tick() => {
                if stats.health().pipeline_dead {
                    if !dead_logged {
                        warn!(silent_s = stats.health.silent_for().as_secs(), "no pipeline event: pipeline dead; outputs to failsafe, restarting the job");
                        dead_logged = true;
                    }
                    stats.pipeline_deaths.fetch_add(1, Ordering::Relaxed);
                    stats.outputs().failsafe().await;
                    let _ = data_tx.try_send(DataEvent::Channel(ChannelEvent::PipelineDead));
                    let _ = job.stop().await;
                    tokio::select! {
                        _ = job_backoff.wait() => {}
                        _ = control.shutdown.changed() => break,
                    }
                    let restarted = job::start(&resolved.config.job, server.clone(), &client_options(&resolved)).await;
                    job_start.record(restarted.as_ref().err().map(|e| e.to_string()));
                    match restarted {
                        Ok(j) => {
                            stats.job_restarts.fetch_add(1, Ordering::Relaxed);
                            info!("job restarted");
                            job = j;
                            dead_logged = false;
                        }
                        Err(e) => warn!(error = %e, "job restart failed; will retry"),
                    }
                    stats.health.reset();
                } else if !stats.health.is_dead() {
                    job_backoff.reset();
                }
                if stats.health().healthy && last_ping.elapsed() >= watchdog_every {
                    last_ping = Instant::now();
                    notify(&[sd_notify::NotifyState::Watchdog]);
                }
                let status = status_line(&stats);
                notify(&[sd_notify::NotifyState::Status(&status)]);
            }
        }
    }

    // Stop: failsafe first, then the job and channels, then the rest.
    info!("stopping: outputs to failsafe, closing channels, stopping the job");
    let outputs = stats.outputs();
    let deadline = tokio::time::timeout(Duration::from_secs(4), async {
        outputs.failsafe().await;
        notify(&[sd_notify::NotifyState::Stopping]);
        let _ = job.stop().await;
        if let Some(c) = channels.take() {
            c.stop().await;
        }
        if let Some(m) = media_stage.take() {
            let _ = m.stop().await;
        }
        let _ = rules_stop_tx.send(true);
        let _ = rules_task.await;
        if let Some(s) = &server {
            for name in s.state.channel_names() {
                s.state.close_channel(&name);
            }
        }
    })
    .await;
    if deadline.is_err() {
        warn!("stop took longer than 4 s; exiting anyway");
    }
    if let Ok((_, h)) = http {
        h.abort();
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
    )
}
