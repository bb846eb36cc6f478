//! Camera to trickle: each GOP from the segmenter becomes one trickle segment,
//! its bytes streamed into the POST as the encoder produces them.
//!
//! When the uplink fails the publisher is rebuilt with backoff while the
//! segment queue keeps dropping whole GOPs, so memory stays flat and the first
//! segment after recovery starts at a keyframe.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::backoff::Backoff;
use crate::media::SegmentQueue;
use crate::shutdown::{Shutdown, ShutdownTrigger};
use crate::stage::StageHandle;
use crate::sync::LockIgnoringPoison;
use crate::trickle::{Publisher, PublisherOptions};

/// Counters for `/metrics`, `/healthz` and the demo's live view.
#[derive(Debug)]
pub struct MediaPathStats {
    pub segments_published: AtomicU64,
    pub bytes_published: AtomicU64,
    pub segment_failures: AtomicU64,
    pub publisher_restarts: AtomicU64,
    /// Seq of the last segment the server confirmed, -1 before the first.
    pub last_seq: AtomicI64,
    /// The camera's admitted-GOP count when the server last confirmed a
    /// segment (0 when a publisher starts): the GOPs admitted since are
    /// those the server has not taken yet, how far the publisher is behind.
    pub admitted_at_accept: AtomicU64,
    /// Flips to true once, when the first segment is confirmed (READY).
    pub first_published: watch::Sender<bool>,
    last_published: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// Why segments are not reaching the server now, if they are not.
    publish_error: std::sync::Mutex<Option<String>>,
    /// From a GOP's first byte leaving the segmenter to the server's answer.
    pub segment_upload: super::metrics::Histogram,
    /// From a keyframe reaching the appsink to its first byte handed to the
    /// HTTP connection; the last 4096 samples, for benchmarks.
    pub keyframe_to_wire: std::sync::Mutex<std::collections::VecDeque<f64>>,
    /// The status page's JPEG snapshots: every camera this path starts
    /// feeds it (encoding only while a viewer is connected).
    pub snapshot: Arc<crate::media::SnapshotTap>,
}

impl MediaPathStats {
    /// Why segments are not reaching the server now (cleared by the next
    /// confirmed segment).
    pub fn publish_error(&self) -> Option<String> {
        self.publish_error.lock_ignoring_poison().clone()
    }

    /// A segment was just confirmed.
    pub(crate) fn mark_published(&self) {
        *self.last_published.lock_ignoring_poison() = Some(tokio::time::Instant::now());
    }

    fn set_publish_error(&self, reason: Option<String>) {
        *self.publish_error.lock_ignoring_poison() = reason;
    }

    /// Time since the last confirmed segment, if any.
    pub fn last_published_age(&self) -> Option<Duration> {
        self.last_published
            .lock_ignoring_poison()
            .map(|t| t.elapsed())
    }
}

impl Default for MediaPathStats {
    fn default() -> Self {
        Self {
            segments_published: AtomicU64::new(0),
            bytes_published: AtomicU64::new(0),
            segment_failures: AtomicU64::new(0),
            publisher_restarts: AtomicU64::new(0),
            last_seq: AtomicI64::new(-1),
            admitted_at_accept: AtomicU64::new(0),
            first_published: watch::channel(false).0,
            last_published: std::sync::Mutex::new(None),
            publish_error: std::sync::Mutex::new(None),
            segment_upload: Default::default(),
            keyframe_to_wire: Default::default(),
            snapshot: Default::default(),
        }
    }
}

/// Publishes GOPs from a segment queue to one trickle channel, each GOP
/// one segment, reconnecting with backoff when the uplink fails.
pub struct SegmentPublisher {
    pub queue: SegmentQueue,
    pub url: String,
    pub options: PublisherOptions,
    pub stats: Arc<MediaPathStats>,
    /// Close the channel (DELETE) when stopped: `publish --close`.
    pub close_on_exit: bool,
    /// A Livepeer job's watch: a channel the orchestrator removed (404) or
    /// closed is reported there, so the job fails over at once.
    pub watch: Option<Arc<crate::job::watch::JobWatch>>,
}

/// Whether `e` says the channel is gone for good (removed or closed by the
/// server), as opposed to an outage that a reconnect may heal.
fn channel_gone(e: &crate::trickle::PublishError) -> bool {
    matches!(
        e,
        crate::trickle::PublishError::ChannelNotFound { .. }
            | crate::trickle::PublishError::ChannelClosed { .. }
    )
}

impl SegmentPublisher {
    /// Runs until the queue ends or `shutdown` fires.
    pub fn spawn(self, shutdown: &Shutdown) -> StageHandle {
        StageHandle::spawn("segment publisher", shutdown, |s| publish_segments(self, s))
    }
}

async fn publish_segments(stage: SegmentPublisher, mut shutdown: Shutdown) {
    let SegmentPublisher {
        mut queue,
        url,
        options: opts,
        stats,
        close_on_exit,
        watch,
    } = stage;
    let admitted = queue.stats();
    stats.admitted_at_accept.store(0, Ordering::Relaxed);
    let report_gone = |e: &crate::trickle::PublishError| {
        if let Some(w) = &watch
            && channel_gone(e)
        {
            w.fail(format!(
                "the publish channel was closed or removed by the orchestrator: {e}"
            ));
        }
    };
    // Capped at 3 s so media resumes within ~5 s of a healed link (the
    // next attempt, a TCP connect, one GOP); full jitter still spreads a
    // fleet's reconnects (tests/server_faults.rs prints the histogram).
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(3));
    let mut outage_logged = false;
    'connect: loop {
        let connected = tokio::select! {
            r = Publisher::connect(&url, opts.clone()) => r,
            _ = shutdown.recv() => return,
        };
        let mut publisher = match connected {
            Ok(p) => p,
            Err(e) => {
                stats.set_publish_error(Some(e.to_string()));
                report_gone(&e);
                if !outage_logged {
                    warn!(%url, error = %e, "cannot publish; retrying with backoff (whole GOPs are dropped meanwhile)");
                    outage_logged = true;
                }
                tokio::select! {
                    _ = backoff.wait() => continue 'connect,
                    _ = shutdown.recv() => return,
                }
            }
        };
        if outage_logged {
            info!(%url, "publishing again");
            outage_logged = false;
        }
        backoff.reset();
        loop {
            let next = tokio::select! {
                g = queue.next() => g,
                _ = shutdown.recv() => break 'connect,
            };
            let Some(mut gop) = next else { break 'connect };
            let mut writer = match publisher.next_segment().await {
                Ok(w) => w,
                Err(e) => {
                    stats.segment_failures.fetch_add(1, Ordering::Relaxed);
                    stats.set_publish_error(Some(e.to_string()));
                    report_gone(&e);
                    if e.is_terminal() {
                        stats.publisher_restarts.fetch_add(1, Ordering::Relaxed);
                        warn!(%url, error = %e, "publisher stopped; reconnecting");
                        continue 'connect;
                    }
                    continue;
                }
            };
            let mut failed = false;
            let started = tokio::time::Instant::now();
            let mut first = true;
            while let Some(chunk) = gop.next_chunk().await {
                if let Err(e) = writer.write(chunk).await {
                    report_gone(&e);
                    failed = true;
                    break;
                }
                if std::mem::take(&mut first) {
                    let mut k = stats.keyframe_to_wire.lock_ignoring_poison();
                    if k.len() == 4096 {
                        k.pop_front();
                    }
                    k.push_back(gop.started_at.elapsed().as_secs_f64());
                }
            }
            if failed {
                // The rest of this GOP is useless without its start; the
                // next segment begins at the next keyframe.
                stats.segment_failures.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match writer.finish().await {
                Ok(report) => {
                    stats.segments_published.fetch_add(1, Ordering::Relaxed);
                    stats
                        .bytes_published
                        .fetch_add(report.bytes, Ordering::Relaxed);
                    stats.last_seq.store(report.seq, Ordering::Relaxed);
                    stats
                        .admitted_at_accept
                        .store(admitted.segments.load(Ordering::Relaxed), Ordering::Relaxed);
                    stats
                        .segment_upload
                        .observe(started.elapsed().as_secs_f64());
                    stats.mark_published();
                    stats.set_publish_error(None);
                    stats
                        .first_published
                        .send_if_modified(|v| !std::mem::replace(v, true));
                }
                Err(e) => {
                    report_gone(&e);
                    stats.set_publish_error(Some(e.to_string()));
                    stats.segment_failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    if close_on_exit {
        let closer = Publisher::connect(
            &url,
            PublisherOptions {
                start_seq: Some(0),
                ..opts
            },
        );
        if let Ok(Ok(p)) = tokio::time::timeout(Duration::from_secs(2), closer).await {
            let _ = tokio::time::timeout(Duration::from_secs(2), p.close()).await;
        }
    }
}

/// What a [`CameraPublisher`] runs: a camera and where its GOPs go.
pub struct CameraPublisherConfig {
    pub camera: crate::media::CameraConfig,
    pub encoder: crate::media::EncoderConfig,
    pub queue: crate::media::GopQueueLimits,
    pub url: String,
    pub options: PublisherOptions,
    pub stats: Arc<MediaPathStats>,
    /// Close the channel (DELETE) when stopped.
    pub close_on_exit: bool,
    /// See [`SegmentPublisher::watch`].
    pub watch: Option<Arc<crate::job::watch::JobWatch>>,
}

/// A camera and the task publishing its GOPs, started and stopped together:
/// the unit `run` restarts on a camera change and `publish --source` runs.
pub struct CameraPublisher {
    pub handle: crate::media::CameraHandle,
    /// The segment queue's counters (dropped GOPs).
    pub queue_stats: Arc<crate::media::MediaStats>,
    /// Stops camera and publisher together, so the camera's teardown cuts
    /// the current GOP short and the publisher does not wait it out.
    stop: ShutdownTrigger,
    camera: StageHandle<Result<(), crate::media::MediaError>>,
    publisher: StageHandle,
}

impl CameraPublisher {
    /// Builds the camera (a bad config or missing element fails here) and
    /// spawns it with its publisher, both stopped by `shutdown`.
    pub fn spawn(
        cfg: CameraPublisherConfig,
        shutdown: &Shutdown,
    ) -> Result<Self, crate::media::MediaError> {
        let (camera, queue) = crate::media::Camera::new(cfg.camera, cfg.encoder, cfg.queue)?;
        let camera = camera.with_snapshot(cfg.stats.snapshot.clone());
        let queue_stats = queue.stats();
        let handle = camera.handle();
        let (stop, shutdown) = shutdown.child();
        let shutdown = &shutdown;
        let camera = StageHandle::spawn("camera", shutdown, |s| camera.run(s));
        let publisher = SegmentPublisher {
            queue,
            url: cfg.url,
            options: cfg.options,
            stats: cfg.stats,
            close_on_exit: cfg.close_on_exit,
            watch: cfg.watch,
        }
        .spawn(shutdown);
        Ok(Self {
            handle,
            queue_stats,
            stop,
            camera,
            publisher,
        })
    }

    /// Stops both within a few seconds (the publisher first, so a closing
    /// DELETE still goes out); returns the camera's permanent error, if any.
    pub async fn stop(self) -> Result<(), crate::media::MediaError> {
        self.stop.trigger();
        self.publisher.stop(Duration::from_secs(3)).await;
        self.camera
            .stop(Duration::from_secs(2))
            .await
            .unwrap_or(Ok(()))
    }
}
