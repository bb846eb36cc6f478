//! The GStreamer decode pipeline: MPEG-TS bytes in, small luminance frames out.
//!
//! `appsrc ! tsdemux ! h264parse ! <decoder> ! videoconvert ! videoscale !
//! video/x-raw,format=GRAY8,width=W,height=H ! appsink`
//!
//! Bytes are pushed as they arrive from the ingest, not per segment: the
//! MPEG-TS stream is continuous across segment boundaries, and tsdemux finds
//! its own way in (every segment starts with PAT/PMT and a keyframe).
//! Analysis runs on a small frame because the detector needs shapes, not
//! detail; normalised coordinates do not depend on the size, and the
//! scaler is told not to add borders so they stay exact whatever the
//! camera's aspect ratio.

use bytes::Bytes;
use futures_util::StreamExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::mpsc;

use super::detect::LumaFrame;

/// Why a pipeline could not be built or stopped working.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("GStreamer element {element} is missing (install {package})")]
    MissingElement {
        element: &'static str,
        package: &'static str,
    },
    #[error(
        "no H.264 decoder: install gstreamer1.0-libav (avdec_h264) or gstreamer1.0-plugins-bad (openh264dec)"
    )]
    NoDecoder,
    #[error("GStreamer: {0}")]
    Gst(String),
}

/// Frames larger than this many analysis frames behind are dropped, so a slow
/// detector never makes GStreamer buffer without bound.
const FRAME_QUEUE: usize = 4;
/// Bytes appsrc may hold before it drops the oldest (a stalled decoder must
/// not grow memory; losing TS bytes only costs frames until the next keyframe).
const APPSRC_MAX_BYTES: u64 = 4 << 20;

/// The elements a decode pipeline needs (their packages come from
/// [`crate::media::elements`]).
const ELEMENTS: &[&str] = &[
    "appsrc",
    "tsdemux",
    "h264parse",
    "videoconvert",
    "videoscale",
    "appsink",
];

/// A running decode pipeline. Dropping it stops GStreamer.
pub struct Decoder {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    bus: gst::bus::BusStream,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("pipeline", &self.pipeline.name())
            .finish()
    }
}

/// Picks the first H.264 decoder installed: libav's is the most tolerant of
/// joining mid-stream, openh264 comes with plugins-bad.
fn h264_decoder() -> Result<&'static str, DecodeError> {
    ["avdec_h264", "openh264dec"]
        .into_iter()
        .find(|e| gst::ElementFactory::find(e).is_some())
        .ok_or(DecodeError::NoDecoder)
}

impl Decoder {
    /// Builds and starts the pipeline for `width`x`height` analysis frames;
    /// decoded frames arrive on the returned receiver.
    pub fn start(
        width: u32,
        height: u32,
    ) -> Result<(Decoder, mpsc::Receiver<LumaFrame>), DecodeError> {
        gst::init().map_err(|e| DecodeError::Gst(e.to_string()))?;
        for &element in ELEMENTS {
            if gst::ElementFactory::find(element).is_none() {
                let package = crate::media::package_for(element);
                return Err(DecodeError::MissingElement { element, package });
            }
        }
        let decoder = h264_decoder()?;
        let desc = format!(
            "appsrc name=ingest format=bytes ! tsdemux ! h264parse ! {decoder} name=decoder ! \
             videoconvert ! videoscale add-borders=false ! \
             video/x-raw,format=GRAY8,width={width},height={height} ! \
             appsink name=frames sync=false max-buffers=2 drop=true"
        );
        let gst_err = |e: gst::glib::Error| DecodeError::Gst(e.to_string());
        let pipeline = gst::parse::launch(&desc)
            .map_err(gst_err)?
            .downcast::<gst::Pipeline>()
            .map_err(|_| DecodeError::Gst("launch did not give a pipeline".into()))?;
        pipeline.set_property("name", "worker-decode");
        let appsrc = pipeline
            .by_name("ingest")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or_else(|| DecodeError::Gst("appsrc `ingest` not found".into()))?;
        appsrc.set_caps(Some(
            &gst::Caps::builder("video/mpegts")
                .field("systemstream", true)
                .field("packetsize", 188i32)
                .build(),
        ));
        appsrc.set_max_bytes(APPSRC_MAX_BYTES);
        appsrc.set_leaky_type(gst_app::AppLeakyType::Downstream);
        let appsink = pipeline
            .by_name("frames")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or_else(|| DecodeError::Gst("appsink `frames` not found".into()))?;
        let (tx, frames) = mpsc::channel(FRAME_QUEUE);
        appsink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                // Runs on GStreamer's streaming thread: copy and hand over,
                // never wait. A full queue drops the frame (the next one is
                // 1/fps away and just as good for detection).
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if let Some(frame) = luma_frame(&sample) {
                        let _ = tx.try_send(frame);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        let bus = pipeline
            .bus()
            .ok_or_else(|| DecodeError::Gst("pipeline has no bus".into()))?
            .stream();
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| DecodeError::Gst(format!("cannot start {desc}: {e}")))?;
        Ok((
            Decoder {
                pipeline,
                appsrc,
                bus,
            },
            frames,
        ))
    }

    /// Queues MPEG-TS bytes for decoding; never waits (see `APPSRC_MAX_BYTES`).
    pub fn push(&self, bytes: Bytes) -> Result<(), DecodeError> {
        self.appsrc
            .push_buffer(gst::Buffer::from_slice(bytes))
            .map(|_| ())
            .map_err(|e| DecodeError::Gst(format!("appsrc refused data: {e:?}")))
    }

    /// Waits for the pipeline to fail or end: the error, or `None` at end of
    /// stream. Warnings are logged and skipped. Cancel-safe.
    pub async fn failure(&mut self) -> Option<DecodeError> {
        while let Some(msg) = self.bus.next().await {
            match msg.view() {
                gst::MessageView::Error(e) => {
                    let src = e
                        .src()
                        .map(|s| s.path_string().to_string())
                        .unwrap_or_default();
                    // GStreamer's debug text spans lines; keep the log line one line.
                    let debug = e.debug().map(|d| d.replace('\n', " ")).unwrap_or_default();
                    return Some(DecodeError::Gst(format!("{src}: {} ({debug})", e.error())));
                }
                gst::MessageView::Warning(w) => {
                    tracing::warn!(warning = %w.error(), "decode pipeline warning");
                }
                gst::MessageView::Eos(_) => return None,
                _ => {}
            }
        }
        None
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Copies a GRAY8 sample into a [`LumaFrame`]; `None` if it is not one.
fn luma_frame(sample: &gst::Sample) -> Option<LumaFrame> {
    let s = sample.caps()?.structure(0)?;
    let width = s.get::<i32>("width").ok()? as usize;
    let height = s.get::<i32>("height").ok()? as usize;
    let buffer = sample.buffer()?;
    let map = buffer.map_readable().ok()?;
    let stride = map.len().checked_div(height)?;
    (stride >= width).then(|| LumaFrame {
        width,
        height,
        stride,
        pts_ns: buffer.pts().map(|t| t.nseconds()),
        data: map.as_slice().to_vec(),
    })
}
