//! What the running agent counts and how healthy it is: read by the
//! supervisor loop, `/healthz`, `/metrics` and the demo, written by the
//! stages. Its own module so the HTTP endpoints depend on the numbers, not on
//! the runtime that starts them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::data_path::DataPathStats;
use super::media_path::MediaPathStats;
use crate::actions::Outputs;
use crate::config::AgentConfig;
use crate::job::health::PipelineHealth;
use crate::sync::LockIgnoringPoison;

/// Everything the supervisor, `/healthz`, `/metrics` and the demo read.
pub struct AgentStats {
    pub media: Arc<MediaPathStats>,
    pub data: Arc<DataPathStats>,
    /// The current camera queue's counters, and GOPs dropped by queues of
    /// cameras replaced since (a reload restarts the camera with a new queue).
    queue: std::sync::Mutex<Arc<crate::media::MediaStats>>,
    dropped_gops_before: AtomicU64,
    pub job_restarts: AtomicU64,
    /// Restarts since the job was last heard from: the restart backoff's
    /// step (each one waits up to twice as long as the one before).
    pub job_restarts_unheard: AtomicU64,
    pub pipeline_deaths: AtomicU64,
    pub reloads: AtomicU64,
    pub health: Arc<PipelineHealth>,
    pub job_mode: &'static str,
    /// `mode = "livepeer"`: current orchestrator, swaps, refusals.
    pub livepeer: std::sync::OnceLock<Arc<crate::job::livepeer::LivepeerCounters>>,
    /// `mode = "byoc"`: payments sent and failed, the last balance.
    pub byoc: std::sync::OnceLock<Arc<crate::job::byoc_payment::ByocCounters>>,
    pub started: Instant,
    /// The configured GOP, which sets how long a segment may take.
    gop_ms: AtomicU64,
    /// Whether the job has an events channel whose silence means death.
    events_expected: std::sync::atomic::AtomicBool,
    outputs: std::sync::Mutex<Arc<Outputs>>,
    /// The job and zones the status page shows (`status/page.rs`).
    pub page: crate::status::PageInfo,
}

impl AgentStats {
    pub(crate) fn new(
        media: Arc<MediaPathStats>,
        queue: Arc<crate::media::MediaStats>,
        cfg: &AgentConfig,
        outputs: Arc<Outputs>,
        events_expected: bool,
    ) -> Self {
        let stats = AgentStats {
            media,
            // The feed the outputs' Home Assistant discovery reads.
            data: Arc::new(DataPathStats {
                live: outputs.live(),
                ..Default::default()
            }),
            queue: std::sync::Mutex::new(queue),
            dropped_gops_before: AtomicU64::new(0),
            job_restarts: AtomicU64::new(0),
            job_restarts_unheard: AtomicU64::new(0),
            pipeline_deaths: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
            health: Arc::new(PipelineHealth::new(cfg.supervisor.pipeline_dead_after)),
            job_mode: cfg.job.name(),
            livepeer: Default::default(),
            byoc: Default::default(),
            started: Instant::now(),
            gop_ms: AtomicU64::new(0),
            events_expected: Default::default(),
            outputs: std::sync::Mutex::new(outputs),
            page: Default::default(),
        };
        stats.set_health_basis(cfg.encoder.gop_seconds, events_expected);
        stats
    }

    /// Whole GOPs dropped because the uplink was slower than the camera,
    /// across camera restarts.
    pub fn dropped_gops(&self) -> u64 {
        let current = self.queue.lock_ignoring_poison();
        self.dropped_gops_before.load(Ordering::Relaxed)
            + current.dropped_gops.load(Ordering::Relaxed)
    }

    /// Why the current camera is not producing, if it is not.
    pub fn camera_error(&self) -> Option<String> {
        self.queue.lock_ignoring_poison().camera_error()
    }

    pub(crate) fn camera_replaced(&self, queue: Arc<crate::media::MediaStats>) {
        let mut current = self.queue.lock_ignoring_poison();
        let old = std::mem::replace(&mut *current, queue);
        self.dropped_gops_before
            .fetch_add(old.dropped_gops.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// The outputs a reload built, from now on the ones failsafe applies to.
    pub(crate) fn replace_outputs(&self, outputs: Arc<Outputs>) {
        *self.outputs.lock_ignoring_poison() = outputs;
    }

    pub fn outputs(&self) -> Arc<Outputs> {
        self.outputs.lock_ignoring_poison().clone()
    }

    /// The one health verdict, for `/healthz` and the systemd watchdog alike:
    /// segments keep flowing (within three of the configured GOPs, plus
    /// slack), and the pipeline's events keep arriving when the job has an
    /// events channel. Data items are not required: a quiet scene sends none.
    pub fn health(&self) -> Health {
        let gop = Duration::from_millis(self.gop_ms.load(Ordering::Relaxed));
        let media_ok = self.media_healthy(gop);
        let pipeline_dead = self.events_expected.load(Ordering::Relaxed) && self.health.is_dead();
        Health {
            media_ok,
            pipeline_dead,
            healthy: media_ok && !pipeline_dead,
        }
    }

    /// Records the settings [`AgentStats::health`] depends on (at start and reload).
    pub(crate) fn set_health_basis(&self, gop_seconds: f64, events_expected: bool) {
        self.gop_ms
            .store((gop_seconds * 1000.0).round() as u64, Ordering::Relaxed);
        self.events_expected
            .store(events_expected, Ordering::Relaxed);
    }

    /// Media is healthy once segments flow and keep flowing.
    fn media_healthy(&self, gop: Duration) -> bool {
        let first = *self.media.first_published.borrow();
        let since = self.media.last_published_age();
        match (first, since) {
            (true, Some(age)) => age < gop * 3 + Duration::from_secs(5),
            // Starting up: give the camera and encoder a grace period.
            _ => self.started.elapsed() < Duration::from_secs(30),
        }
    }
}

/// What [`AgentStats::health`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// Segments are being confirmed (or the camera is within its start grace).
    pub media_ok: bool,
    /// The job has an events channel and it has been silent too long.
    pub pipeline_dead: bool,
    /// Both fine: `/healthz` answers 200 and the watchdog is pinged.
    pub healthy: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::SimulatedGpio;

    fn stats(gop_seconds: f64, events: bool) -> AgentStats {
        let cfg: AgentConfig = toml::from_str(&format!(
            "[encoder]\ngop_seconds = {gop_seconds}\n[job]\nmode = \"static\"\npublish_url = \"http://127.0.0.1:1/x\"\n"
        ))
        .unwrap();
        let outputs = Outputs::build_with(&Default::default(), SimulatedGpio::default()).unwrap();
        AgentStats::new(
            Arc::default(),
            Arc::default(),
            &cfg,
            Arc::new(outputs),
            events,
        )
    }

    fn publish_first(s: &AgentStats) {
        s.media.mark_published();
        s.media.first_published.send_replace(true);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_gop_is_not_called_stalled_while_its_segment_is_due() {
        let long = stats(4.0, false);
        let short = stats(1.0, false);
        publish_first(&long);
        publish_first(&short);
        tokio::time::advance(Duration::from_secs(10)).await;
        // 3 GOPs + 5 s: 17 s for a 4 s GOP, 8 s for a 1 s GOP.
        assert!(long.health().healthy, "{:?}", long.health());
        assert!(!short.health().media_ok);
        tokio::time::advance(Duration::from_secs(8)).await;
        assert!(!long.health().healthy);
    }

    #[tokio::test(start_paused = true)]
    async fn silent_events_count_only_when_the_job_has_an_events_channel() {
        let with = stats(1.0, true);
        let without = stats(1.0, false);
        for s in [&with, &without] {
            publish_first(s);
        }
        // Past `pipeline_dead_after` (30 s) with media still flowing.
        for _ in 0..40 {
            tokio::time::advance(Duration::from_secs(1)).await;
            with.media.mark_published();
            without.media.mark_published();
        }
        assert!(with.health().pipeline_dead);
        assert!(!with.health().healthy);
        assert!(without.health().healthy);
    }
}
