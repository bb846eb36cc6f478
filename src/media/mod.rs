//! Camera capture: GStreamer pipeline build, encoder selection and probing,
//! GOP segmenter and the self-healing camera supervisor.
//!
//! A consumer (the trickle publisher) does:
//!
//! ```no_run
//! # async fn demo() -> Result<(), trickle_edge::media::MediaError> {
//! use trickle_edge::media::{Camera, CameraConfig, EncoderConfig, GopQueueLimits};
//! let cam = CameraConfig { source: "test".into(), width: 640, height: 360, ..Default::default() };
//! let (camera, mut segments) = Camera::new(cam, EncoderConfig::default(), GopQueueLimits::default())?;
//! tokio::spawn(camera.run(trickle_edge::shutdown::Shutdown::never()));
//! while let Some(mut gop) = segments.next().await {
//!     while let Some(bytes) = gop.next_chunk().await {
//!         // stream `bytes` into the POST body of segment `gop.seq`
//!     }
//! }
//! # Ok(()) }
//! ```

mod camera;
mod config;
pub mod elements;
mod encoder;
mod error;
mod pipeline;
pub mod probe;
mod segmenter;
pub mod snapshot;

pub use camera::{Camera, CameraHandle};
pub use config::{CameraConfig, EncoderConfig, EncoderKind, Source, redact_url};
pub use elements::package_for;
pub use encoder::{
    AUTO_ORDER, ProbeResult, all_element_names, element_name, probe_encoders, resolve,
};
pub use error::MediaError;
pub use pipeline::{PipelineSpec, build_pipeline};
pub use probe::{MediaReport, probe_media};
pub use segmenter::{
    GopQueueLimits, GopSegment, GopWriter, MediaStats, SegmentQueue, SegmentSender, segment_queue,
};
pub use snapshot::{Snapshot, SnapshotTap};
