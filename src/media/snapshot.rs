//! JPEG snapshots of the camera for the status page, taken only while
//! someone watches.
//!
//! The branch hangs off the raw frames just before the encoder:
//!
//! ```text
//! rawcaps ► snapshot-tee ► encoder …                                      (capture, unchanged)
//!                       └► valve ► queue ► videorate ► videoscale ► caps ► jpegenc ► appsink
//! ```
//!
//! With no viewer the valve drops every buffer in the streaming thread (one
//! atomic read per frame: no copy, no thread wake-up, no encode). With a
//! viewer it opens; the queue behind it is `leaky=downstream` with room for
//! one buffer, so a slow JPEG encode drops snapshot frames, never capture
//! frames; `videorate max-rate=2` keeps it to two JPEGs a second, and the
//! appsink keeps only the newest (`drop=true max-buffers=1`). The appsink is
//! `async=false`: a sink that never sees a buffer must not hold the pipeline
//! in preroll.
//!
//! H.264 passthrough sources (an H.264 camera, RTSP, H.264 files) have no raw
//! frames in the pipeline, so no branch is added and
//! [`SnapshotTap::available`] says so.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;

use super::config::CameraConfig;
use super::error::{MediaError, make};
use crate::sync::LockIgnoringPoison;

/// Widest snapshot sent to a browser; larger cameras are scaled down.
pub const MAX_SNAPSHOT_WIDTH: u32 = 640;
/// Snapshots per second while someone watches.
pub const SNAPSHOTS_PER_SECOND: i32 = 2;

/// One encoded frame.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Counts snapshots encoded by this tap, from 1.
    pub seq: u64,
    pub jpeg: Bytes,
    pub width: u32,
    pub height: u32,
    pub taken_unix_ms: u64,
}

/// Shared between the status page (which counts viewers and reads the
/// latest JPEG) and every pipeline the camera builds (which register their
/// valve and write JPEGs). Outlives camera rebuilds.
#[derive(Default)]
pub struct SnapshotTap {
    viewers: AtomicUsize,
    valves: Mutex<Vec<glib::WeakRef<gst::Element>>>,
    latest: Mutex<Option<Snapshot>>,
    encoded: AtomicU64,
}

impl std::fmt::Debug for SnapshotTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotTap")
            .field("viewers", &self.viewers.load(Ordering::Relaxed))
            .field("encoded", &self.encoded.load(Ordering::Relaxed))
            .finish()
    }
}

/// Holds the snapshot branch open while it lives (one per connected viewer).
pub struct Viewer {
    tap: Arc<SnapshotTap>,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        if self.tap.viewers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.tap.set_open(false);
        }
    }
}

impl SnapshotTap {
    /// A viewer connected: the branch opens (and stays open while any
    /// [`Viewer`] lives).
    pub fn viewer(self: &Arc<Self>) -> Viewer {
        if self.viewers.fetch_add(1, Ordering::AcqRel) == 0 {
            self.set_open(true);
        }
        Viewer { tap: self.clone() }
    }

    pub fn viewers(&self) -> usize {
        self.viewers.load(Ordering::Acquire)
    }

    /// JPEGs encoded so far: stays at zero while nobody watches.
    pub fn encoded(&self) -> u64 {
        self.encoded.load(Ordering::Relaxed)
    }

    pub fn latest(&self) -> Option<Snapshot> {
        self.latest.lock_ignoring_poison().clone()
    }

    /// Whether the running pipeline has a snapshot branch (not with H.264
    /// passthrough, nor while the camera is being rebuilt).
    pub fn available(&self) -> bool {
        let mut valves = self.valves.lock_ignoring_poison();
        valves.retain(|v| v.upgrade().is_some());
        !valves.is_empty()
    }

    fn set_open(&self, open: bool) {
        let mut valves = self.valves.lock_ignoring_poison();
        valves.retain(|v| match v.upgrade() {
            Some(valve) => {
                valve.set_property("drop", !open);
                true
            }
            None => false,
        });
    }

    fn register(&self, valve: &gst::Element) {
        let mut valves = self.valves.lock_ignoring_poison();
        // Set under the lock, so a viewer arriving meanwhile cannot be missed.
        valve.set_property("drop", self.viewers() == 0);
        valves.push(valve.downgrade());
    }

    fn store(&self, jpeg: Bytes, width: u32, height: u32) {
        let seq = self.encoded.fetch_add(1, Ordering::Relaxed) + 1;
        let taken_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        *self.latest.lock_ignoring_poison() = Some(Snapshot {
            seq,
            jpeg,
            width,
            height,
            taken_unix_ms,
        });
    }
}

/// The snapshot's size: the camera's, scaled down to at most
/// [`MAX_SNAPSHOT_WIDTH`] wide, aspect kept, even dimensions.
pub fn snapshot_size(camera: &CameraConfig) -> (u32, u32) {
    let (w, h) = (camera.width.max(2), camera.height.max(2));
    if w <= MAX_SNAPSHOT_WIDTH {
        return (w & !1, h & !1);
    }
    let sh = (u64::from(h) * u64::from(MAX_SNAPSHOT_WIDTH) / u64::from(w)) as u32;
    (MAX_SNAPSHOT_WIDTH, sh.max(2) & !1)
}

/// Inserts the snapshot branch after `after` (the raw caps filter in front
/// of the encoder), which must already be linked downstream. Called while
/// the pipeline is built, before data flows.
pub(crate) fn add_branch(
    pipeline: &gst::Pipeline,
    after: &gst::Element,
    tap: &Arc<SnapshotTap>,
    camera: &CameraConfig,
) -> Result<(), MediaError> {
    let err = |message: String| MediaError::Pipeline {
        source_desc: pipeline.name().to_string(),
        message,
    };
    let src = after
        .static_pad("src")
        .ok_or_else(|| err("snapshot: no src pad to tap".into()))?;
    let downstream = src
        .peer()
        .ok_or_else(|| err("snapshot: the tapped element is not linked".into()))?;
    let tee = make("tee", "snapshot-tee")?;
    let valve = make("valve", "snapshot-valve")?;
    let queue = make("queue", "snapshot-queue")?;
    queue.set_property_from_str("leaky", "downstream");
    queue.set_property("max-size-buffers", 1u32);
    queue.set_property("max-size-bytes", 0u32);
    queue.set_property("max-size-time", 0u64);
    let rate = make("videorate", "snapshot-rate")?;
    rate.set_property("drop-only", true);
    rate.set_property("max-rate", SNAPSHOTS_PER_SECOND);
    let scale = make("videoscale", "snapshot-scale")?;
    let (width, height) = snapshot_size(camera);
    let caps = make("capsfilter", "snapshot-caps")?;
    caps.set_property(
        "caps",
        gst::Caps::builder("video/x-raw")
            .field("width", width as i32)
            .field("height", height as i32)
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .build(),
    );
    let jpeg = make("jpegenc", "snapshot-jpeg")?;
    jpeg.set_property("quality", 70i32);
    let sink = gstreamer_app::AppSink::builder()
        .name("snapshot-sink")
        .sync(false)
        .drop(true)
        .max_buffers(1)
        .build();
    sink.set_property("async", false);
    let store = tap.clone();
    sink.set_callbacks(
        gstreamer_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                if let Some(buffer) = sample.buffer()
                    && let Ok(map) = buffer.map_readable()
                {
                    store.store(Bytes::copy_from_slice(map.as_slice()), width, height);
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    let branch = [
        &tee,
        &valve,
        &queue,
        &rate,
        &scale,
        &caps,
        &jpeg,
        sink.upcast_ref(),
    ];
    pipeline
        .add_many(branch)
        .map_err(|e| err(format!("snapshot: {e}")))?;
    tap.register(&valve);
    src.unlink(&downstream)
        .map_err(|e| err(format!("snapshot: {e}")))?;
    after
        .link(&tee)
        .map_err(|e| err(format!("snapshot: {e}")))?;
    let main = tee
        .request_pad_simple("src_%u")
        .ok_or_else(|| err("snapshot: tee gave no src pad".into()))?;
    main.link(&downstream).map_err(|e| {
        err(format!(
            "snapshot: linking the encoder behind the tee: {e:?}"
        ))
    })?;
    gst::Element::link_many(branch).map_err(|e| err(format!("snapshot: {e}")))?;
    for e in branch {
        let _ = e.sync_state_with_parent();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cam(width: u32, height: u32) -> CameraConfig {
        CameraConfig {
            source: "test".into(),
            width,
            height,
            fps: 30,
            passthrough: true,
        }
    }

    #[test]
    fn large_cameras_are_scaled_to_640_wide_keeping_the_aspect() {
        assert_eq!(snapshot_size(&cam(640, 360)), (640, 360));
        assert_eq!(snapshot_size(&cam(1920, 1080)), (640, 360));
        assert_eq!(snapshot_size(&cam(1280, 960)), (640, 480));
        assert_eq!(snapshot_size(&cam(321, 241)), (320, 240));
    }

    #[test]
    fn the_valve_opens_with_the_first_viewer_and_closes_after_the_last() {
        gst::init().unwrap();
        let tap = Arc::new(SnapshotTap::default());
        let valve = gst::ElementFactory::make("valve").build().unwrap();
        tap.register(&valve);
        assert!(valve.property::<bool>("drop"));
        let a = tap.viewer();
        let b = tap.viewer();
        assert!(!valve.property::<bool>("drop"));
        drop(a);
        assert!(!valve.property::<bool>("drop"));
        drop(b);
        assert!(valve.property::<bool>("drop"));
        assert!(tap.available());
        drop(valve);
        assert!(!tap.available());
    }
}
