//! The camera supervisor: runs the pipeline, and on error (or unexpected end
//! of stream) tears it down and rebuilds it with backoff, while the consumer's
//! [`SegmentQueue`] stays the same.

use std::{
    sync::{Arc, Mutex, atomic::Ordering},
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::config::{CameraConfig, EncoderConfig, Source};
use super::encoder;
use super::error::MediaError;
use super::pipeline::{PipelineSpec, build_pipeline};
use super::segmenter::{GopQueueLimits, MediaStats, SegmentQueue, SegmentSender, segment_queue};
use crate::backoff::Backoff;
use crate::shutdown::Shutdown;
use crate::sync::LockIgnoringPoison;

/// A camera that keeps producing GOP segments until shut down.
pub struct Camera {
    spec: PipelineSpec,
    sender: SegmentSender,
    backoff: Backoff,
    handle: CameraHandle,
}

/// A cheap view of a running camera for probes, metrics and tests.
#[derive(Clone)]
pub struct CameraHandle {
    current: Arc<Mutex<Option<gst::Pipeline>>>,
    stats: Arc<MediaStats>,
}

impl CameraHandle {
    /// The pipeline running now, if any (none during a backoff wait).
    pub fn pipeline(&self) -> Option<gst::Pipeline> {
        self.current.lock_ignoring_poison().clone()
    }

    pub fn stats(&self) -> Arc<MediaStats> {
        self.stats.clone()
    }
}

/// How one pipeline run ended without an error.
enum Ended {
    /// A `file:` source reached its end: loop by starting over at once.
    FileEos,
}

impl Camera {
    /// Validates the config and creates the segment queue the consumer reads.
    pub fn new(
        camera: CameraConfig,
        encoder: EncoderConfig,
        queue: GopQueueLimits,
    ) -> Result<(Camera, SegmentQueue), MediaError> {
        gst::init().map_err(|e| MediaError::Config(format!("GStreamer init failed: {e}")))?;
        let source = camera.validate()?;
        encoder.validate()?;
        let (sender, segments) = segment_queue(queue);
        let handle = CameraHandle {
            current: Arc::default(),
            stats: sender.stats(),
        };
        let camera = Camera {
            spec: PipelineSpec {
                source,
                camera,
                encoder_kind: encoder.kind,
                encoder,
                paced: true,
                snapshot: None,
            },
            sender,
            backoff: Backoff::new(Duration::from_millis(250), Duration::from_secs(30)),
            handle,
        };
        Ok((camera, segments))
    }

    /// Produce media as fast as the CPU allows (non-live test source, unpaced
    /// files). For tests that need minutes of media in seconds.
    pub fn unpaced(mut self) -> Self {
        self.spec.paced = false;
        self
    }

    /// Adds the status page's snapshot branch to every pipeline this camera
    /// builds (`media/snapshot.rs`).
    pub fn with_snapshot(mut self, tap: Arc<super::snapshot::SnapshotTap>) -> Self {
        self.spec.snapshot = Some(tap);
        self
    }

    /// Replaces the rebuild backoff (default 250 ms .. 30 s).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    pub fn handle(&self) -> CameraHandle {
        self.handle.clone()
    }

    /// Runs until `shutdown` fires. Returns an error only for problems no
    /// rebuild can fix (bad config, missing plugin, no working encoder);
    /// everything else is retried with backoff, logged once per outage.
    pub async fn run(mut self, mut shutdown: Shutdown) -> Result<(), MediaError> {
        let kind = self.spec.encoder_kind;
        let resolved = tokio::select! {
            _ = shutdown.recv() => return Ok(()),
            r = tokio::task::spawn_blocking(move || encoder::resolve(kind)) => r,
        };
        let resolved = resolved
            .map_err(|e| MediaError::Config(format!("encoder probe panicked: {e}")))
            .and_then(|r| r);
        self.spec.encoder_kind = match resolved {
            Ok(kind) => kind,
            Err(e) => return Err(self.cannot_start(e)),
        };
        let span = tracing::info_span!("camera", source = %self.spec.source);
        self.supervise(shutdown).instrument(span).await
    }

    /// Gives up for good: logs it and records why, for `/healthz` and the demo.
    fn cannot_start(&self, e: MediaError) -> MediaError {
        tracing::error!(error = %e, "camera cannot start");
        self.handle.stats.set_camera_error(Some(e.to_string()));
        e
    }

    /// The rebuild loop of [`Camera::run`], after the encoder is resolved.
    async fn supervise(mut self, mut shutdown: Shutdown) -> Result<(), MediaError> {
        let mut outage: Option<Instant> = None;
        let consumer = self.sender.clone();
        loop {
            let result = tokio::select! {
                _ = shutdown.recv() => {
                    self.teardown();
                    return Ok(());
                }
                r = self.run_once(&mut outage) => r,
                _ = consumer.closed() => {
                    tracing::info!("segment consumer gone; stopping camera");
                    self.teardown();
                    return Ok(());
                }
            };
            self.teardown();
            match result {
                Ok(Ended::FileEos) => {
                    tracing::debug!("end of file; looping");
                    continue;
                }
                Err(e) if e.is_permanent() => return Err(self.cannot_start(e)),
                Err(e) => {
                    self.handle
                        .stats
                        .pipeline_failures
                        .fetch_add(1, Ordering::Relaxed);
                    self.handle.stats.set_camera_error(Some(e.to_string()));
                    if outage.is_none() {
                        tracing::warn!(error = %e, "camera pipeline failed; rebuilding with backoff");
                        outage = Some(Instant::now());
                    } else {
                        tracing::debug!(error = %e, "camera rebuild failed; retrying");
                    }
                    let delay = self.backoff.next_delay();
                    tokio::select! {
                        _ = shutdown.recv() => return Ok(()),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Builds, starts and watches one pipeline until it errors or ends.
    async fn run_once(&mut self, outage: &mut Option<Instant>) -> Result<Ended, MediaError> {
        let pipeline = build_pipeline(&self.spec)?;
        // Generation = build number, so segments can be told apart by pipeline.
        let generation = self
            .handle
            .stats
            .pipeline_starts
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        let appsink = pipeline
            .by_name("sink")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .expect("build_pipeline names its appsink `sink`");
        let (keyframe_tx, mut keyframes) = mpsc::channel(4);
        // Shared by the two callbacks, which both run on the streaming thread.
        let writer = Arc::new(Mutex::new(
            self.sender.writer(generation, Some(keyframe_tx)),
        ));
        let eos_writer = writer.clone();
        appsink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    // Never blocks: copy the packet into a channel and return.
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if let Some(buf) = sample.buffer()
                        && let Ok(map) = buf.map_readable()
                    {
                        let keyframe = !buf.flags().contains(gst::BufferFlags::DELTA_UNIT);
                        let header = buf.flags().contains(gst::BufferFlags::HEADER);
                        let pts = buf.pts().map(Duration::from);
                        writer
                            .lock_ignoring_poison()
                            .push_buffer(&map, keyframe, header, pts);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                // The muxer drained at end of file: the last GOP is whole.
                .eos(move |_| eos_writer.lock_ignoring_poison().finish())
                .build(),
        );
        *self.handle.current.lock_ignoring_poison() = Some(pipeline.clone());

        let bus = pipeline.bus().expect("a pipeline has a bus");
        let mut messages = bus.stream();
        if pipeline.set_state(gst::State::Playing).is_err() {
            // The reason is on the bus; fall through to read it.
            tracing::debug!("pipeline refused to start");
        }
        let sinkpad = appsink.static_pad("sink").expect("appsink has a sink pad");
        let gop = Duration::from_secs_f64(self.spec.encoder.gop_seconds);
        let mut requests = 0u32;
        loop {
            tokio::select! {
                Some(pts) = keyframes.recv() => {
                    if requests == 0 {
                        self.handle.stats.set_camera_error(None);
                        if let Some(since) = outage.take() {
                            tracing::info!(down_for = ?since.elapsed(), "camera recovered");
                        }
                        self.backoff.reset();
                    }
                    requests += 1;
                    if let Some(pts) = pts {
                        // Pushed from this task, not the appsink callback, so
                        // the streaming thread never waits on upstream elements.
                        sinkpad.push_event(force_key_unit(pts + gop, requests));
                    }
                }
                msg = messages.next() => {
                    let Some(msg) = msg else {
                        return Err(self.pipeline_error("bus closed".into()));
                    };
                    match msg.view() {
                        gst::MessageView::Error(e) => {
                            let from = msg.src().map(|s| s.path_string().to_string()).unwrap_or_default();
                            return Err(self.pipeline_error(format!("{from}: {}", e.error())));
                        }
                        gst::MessageView::Eos(_) => {
                            // A file that ends without one GOP would loop in a
                            // tight rebuild cycle: count it as a failure instead.
                            return if matches!(self.spec.source, Source::File(_)) && requests > 0 {
                                Ok(Ended::FileEos)
                            } else {
                                Err(self.pipeline_error("unexpected end of stream".into()))
                            };
                        }
                        gst::MessageView::Warning(w) => {
                            tracing::debug!(warning = %w.error(), "pipeline warning");
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    fn pipeline_error(&self, message: String) -> MediaError {
        MediaError::Pipeline {
            source_desc: self.spec.source.to_string(),
            message,
        }
    }

    /// Stops the current pipeline and drops its segment writer, so a GOP that
    /// was streaming ends (incomplete) instead of hanging its consumer.
    fn teardown(&self) {
        let Some(pipeline) = self.handle.current.lock_ignoring_poison().take() else {
            return;
        };
        let _ = pipeline.set_state(gst::State::Null);
        if let Some(sink) = pipeline
            .by_name("sink")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        {
            sink.set_callbacks(gst_app::AppSinkCallbacks::builder().build());
        }
    }
}

/// An upstream force-key-unit request for the frame at `running_time`, with
/// all headers: the encoder makes an IDR there, h264parse puts SPS/PPS before
/// it and mpegtsmux (which on 1.22 otherwise repeats PAT/PMT only on a timer)
/// writes PAT/PMT right before it, so the GOP decodes alone. Built by hand
/// (same structure as GstVideo's `gst_video_event_new_upstream_force_key_unit`)
/// to avoid pulling in gstreamer-video for one event.
fn force_key_unit(running_time: Duration, count: u32) -> gst::Event {
    let s = gst::Structure::builder("GstForceKeyUnit")
        .field("running-time", running_time.as_nanos() as u64)
        .field("all-headers", true)
        .field("count", count)
        .build();
    gst::event::CustomUpstream::new(s)
}

impl Drop for Camera {
    /// `run` may be cancelled by dropping its future; GStreamer requires the
    /// pipeline to reach NULL before it is freed.
    fn drop(&mut self) {
        self.teardown();
    }
}
