//! Builds the capture pipeline in one place, with stable element names:
//!
//! ```text
//! src ► [decode] ► convert ► scale ► rate ► rawcaps ► encoder ► [pace] ► parse ► mux ► sink
//! src ► [srccaps | depay/parsebin] ►                             [pace] ► parse ► mux ► sink   (H.264 passthrough)
//! ```
//!
//! `parse` is `h264parse config-interval=-1` (SPS/PPS before every IDR), `mux`
//! is `mpegtsmux` (PAT/PMT before every keyframe), `sink` is the appsink the
//! segmenter reads. Sources whose format is only known at runtime (files,
//! RTSP, non-H.264 V4L2) go through `parsebin`/`decodebin` and are linked
//! when their pad appears. H.264 from a source is passed through (an RTSP
//! camera: `rtspsrc ► parsebin(rtph264depay ► h264parse) ► parse ► mux`, no
//! decoder, no encoder) unless `camera.passthrough = false` sends it through
//! `decodebin` and the encode tail like any other format.

use std::path::{Path, PathBuf};

use gstreamer as gst;
use gstreamer::prelude::*;

use super::config::{
    CameraConfig, EncoderConfig, EncoderKind, Source, rtsp_location_and_credentials,
};
use super::encoder::make_encoder;
use super::error::{MediaError, make};

/// Everything `build_pipeline` needs to know.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    pub source: Source,
    pub camera: CameraConfig,
    pub encoder: EncoderConfig,
    /// Must already be resolved (not `Auto`).
    pub encoder_kind: EncoderKind,
    /// Real-time pacing: live test source and files played at their own rate.
    /// Off only in tests that want media faster than real time.
    pub paced: bool,
    /// Where the status page's JPEG snapshots go (`media/snapshot.rs`);
    /// `None`: no snapshot branch.
    pub snapshot: Option<std::sync::Arc<super::snapshot::SnapshotTap>>,
}

/// Builds (but does not start) the pipeline for `spec`. The appsink is named `sink`.
pub fn build_pipeline(spec: &PipelineSpec) -> Result<gst::Pipeline, MediaError> {
    gst::init().map_err(|e| MediaError::Config(format!("GStreamer init failed: {e}")))?;
    require(&["h264parse", "mpegtsmux", "appsink", "capsfilter"])?;
    let pipeline = gst::Pipeline::with_name("camera");
    let parse = make("h264parse", "parse")?;
    parse.set_property("config-interval", -1i32);
    let mux = make("mpegtsmux", "mux")?;
    let sink = gstreamer_app::AppSink::builder()
        .name("sink")
        .sync(false)
        .build();
    add_link(&pipeline, &[&parse, &mux, sink.upcast_ref()])?;
    // Files are paced by syncing on the clock just before the muxer.
    let into = if spec.paced && matches!(spec.source, Source::File(_)) {
        let pace = make("identity", "pace")?;
        pace.set_property("sync", true);
        add_link(&pipeline, &[&pace, &parse])?;
        pace
    } else {
        parse.clone()
    };

    match &spec.source {
        Source::Test => {
            let src = make("videotestsrc", "src")?;
            src.set_property_from_str("pattern", "ball");
            src.set_property("is-live", spec.paced);
            // Without a format, videotestsrc picks its first (10-bit 4:4:4)
            // and every frame is drawn, overlaid and converted at 3x the
            // bytes. I420 is what the encoders take anyway.
            let mut caps = raw_caps(&spec.camera);
            caps.make_mut().set("format", "I420");
            let caps = capsfilter("srccaps", caps)?;
            let mut chain = vec![src, caps];
            chain.extend(test_overlays()?);
            let chain: Vec<&gst::Element> = chain.iter().collect();
            add_link(&pipeline, &chain)?;
            let tail = encode_tail(&pipeline, spec, &into)?;
            let last = chain.last().expect("source and caps");
            last.link(&tail).map_err(|e| link_err(&pipeline, e))?;
        }
        Source::Libcamera => {
            let src = make("libcamerasrc", "src")?;
            pipeline.add(&src).map_err(|e| link_err(&pipeline, e))?;
            let tail = encode_tail(&pipeline, spec, &into)?;
            src.link(&tail).map_err(|e| link_err(&pipeline, e))?;
        }
        Source::V4l2Device(_) | Source::V4l2Card(_) => {
            require(&["v4l2src"])?;
            let device = match &spec.source {
                Source::V4l2Card(card) => find_v4l2_card(card)?,
                Source::V4l2Device(path) => path.clone(),
                _ => unreachable!(),
            };
            let src = make("v4l2src", "src")?;
            src.set_property("device", device.to_string_lossy().as_ref());
            if spec.camera.passthrough && v4l2_offers_h264(&src) {
                // An H.264 camera: its stream goes to the muxer untouched.
                let caps = capsfilter("srccaps", h264_caps(&spec.camera))?;
                add_link(&pipeline, &[&src, &caps, &into])?;
            } else {
                let decode = make("decodebin", "decode")?;
                add_link(&pipeline, &[&src, &decode])?;
                link_dynamic_raw(&pipeline, &decode, spec, &into);
            }
        }
        Source::File(path) => {
            let src = make("filesrc", "src")?;
            src.set_property("location", path.to_string_lossy().as_ref());
            let parsebin = make("parsebin", "demux")?;
            add_link(&pipeline, &[&src, &parsebin])?;
            link_dynamic_parsed(&pipeline, &parsebin, spec, &into);
        }
        Source::Rtsp(url) => {
            let src = make("rtspsrc", "src")?;
            // Credentials as properties, so the location (which GStreamer
            // quotes in its debug output and error details) holds none.
            let (location, credentials) = rtsp_location_and_credentials(url);
            src.set_property("location", location.as_str());
            if let Some((user, password)) = credentials {
                src.set_property("user-id", user.as_str());
                src.set_property("user-pw", password.as_str());
            }
            src.set_property("latency", 200u32);
            let parsebin = make("parsebin", "demux")?;
            pipeline
                .add_many([&src, &parsebin])
                .map_err(|e| link_err(&pipeline, e))?;
            let sinkpad = parsebin
                .static_pad("sink")
                .expect("parsebin has a sink pad");
            src.connect_pad_added(move |_, pad| {
                if !sinkpad.is_linked() && is_video_rtp(pad) {
                    let _ = pad.link(&sinkpad);
                }
            });
            link_dynamic_parsed(&pipeline, &parsebin, spec, &into);
        }
    }
    Ok(pipeline)
}

/// The test camera's wall-clock and running-time overlays, which make
/// latency visible by eye. They live in the pango plugin; without it the test
/// camera runs plain, so a minimal install still demos (one warning, naming
/// the package, per process).
fn test_overlays() -> Result<Vec<gst::Element>, MediaError> {
    static WARNED: std::sync::Once = std::sync::Once::new();
    if !(super::elements::installed("clockoverlay") && super::elements::installed("timeoverlay")) {
        WARNED.call_once(|| {
            tracing::warn!(
                package = super::elements::PANGO,
                "test camera without its clock and time overlays: install {} to see them",
                super::elements::PANGO
            );
        });
        return Ok(Vec::new());
    }
    let clock = make("clockoverlay", "clock")?;
    clock.set_property_from_str("valignment", "top");
    let time = make("timeoverlay", "time")?;
    time.set_property_from_str("valignment", "bottom");
    Ok(vec![clock, time])
}

/// `convert ► scale ► rate ► rawcaps ► encoder` linked into `into`; returns `convert`.
/// Also used lazily from pad-added callbacks, hence `sync_state_with_parent`.
fn encode_tail(
    pipeline: &gst::Pipeline,
    spec: &PipelineSpec,
    into: &gst::Element,
) -> Result<gst::Element, MediaError> {
    let convert = make("videoconvert", "convert")?;
    let scale = make("videoscale", "scale")?;
    let rate = make("videorate", "rate")?;
    let caps = capsfilter("rawcaps", raw_caps(&spec.camera))?;
    let mut chain = vec![convert.clone(), scale, rate, caps];
    chain.extend(make_encoder(
        spec.encoder_kind,
        &spec.encoder,
        spec.camera.fps,
    )?);
    chain.push(into.clone());
    pipeline
        .add_many(&chain[..chain.len() - 1])
        .map_err(|e| link_err(pipeline, e))?;
    gst::Element::link_many(&chain).map_err(|e| link_err(pipeline, e))?;
    // The status page's snapshot branch, teed off the raw frames (issue 16).
    if let Some(tap) = &spec.snapshot {
        super::snapshot::add_branch(pipeline, &chain[3], tap, &spec.camera)?;
    }
    for e in &chain[..chain.len() - 1] {
        let _ = e.sync_state_with_parent();
    }
    Ok(convert)
}

/// Links `parsebin`'s video pad: H.264 straight to `into` (unless
/// `camera.passthrough` is off), anything else via decode + encode.
fn link_dynamic_parsed(
    pipeline: &gst::Pipeline,
    parsebin: &gst::Element,
    spec: &PipelineSpec,
    into: &gst::Element,
) {
    let (weak, spec, into) = (pipeline.downgrade(), spec.clone(), into.clone());
    parsebin.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        let Some(name) = caps_name(pad) else { return };
        let result = if name == "video/x-h264" && spec.camera.passthrough {
            if pipeline.by_name("encoder").is_some() || into_linked(&into) {
                return; // one video stream only
            }
            pad.link(&into.static_pad("sink").expect("sink pad"))
                .map(|_| ())
                .map_err(|e| format!("linking {name}: {e:?}"))
        } else if (name.starts_with("video/") || name.starts_with("image/"))
            && pipeline.by_name("decode").is_none()
        {
            make("decodebin", "decode")
                .map_err(|e| e.to_string())
                .and_then(|decode| {
                    pipeline.add(&decode).map_err(|e| e.to_string())?;
                    link_dynamic_raw(&pipeline, &decode, &spec, &into);
                    let _ = decode.sync_state_with_parent();
                    pad.link(&decode.static_pad("sink").expect("sink pad"))
                        .map(|_| ())
                        .map_err(|e| format!("linking {name}: {e:?}"))
                })
        } else {
            return;
        };
        if let Err(msg) = result {
            post_error(&pipeline, &msg);
        }
    });
}

/// Links `decodebin`'s raw video pad into a freshly built encode tail.
fn link_dynamic_raw(
    pipeline: &gst::Pipeline,
    decode: &gst::Element,
    spec: &PipelineSpec,
    into: &gst::Element,
) {
    let (weak, spec, into) = (pipeline.downgrade(), spec.clone(), into.clone());
    decode.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        if !caps_name(pad).is_some_and(|n| n.starts_with("video/x-raw"))
            || pipeline.by_name("convert").is_some()
        {
            return;
        }
        let result = encode_tail(&pipeline, &spec, &into)
            .map_err(|e| e.to_string())
            .and_then(|convert| {
                pad.link(&convert.static_pad("sink").expect("sink pad"))
                    .map(|_| ())
                    .map_err(|e| format!("linking decoded video: {e:?}"))
            });
        if let Err(msg) = result {
            post_error(&pipeline, &msg);
        }
    });
}

fn into_linked(into: &gst::Element) -> bool {
    into.static_pad("sink").is_some_and(|p| p.is_linked())
}

/// Errors inside pad-added callbacks surface on the bus, where the supervisor sees them.
fn post_error(pipeline: &gst::Pipeline, msg: &str) {
    tracing::warn!(error = msg, "dynamic link failed");
    let _ = pipeline.post_message(
        gst::message::Error::builder(gst::CoreError::Negotiation, msg)
            .src(pipeline)
            .build(),
    );
}

fn caps_name(pad: &gst::Pad) -> Option<String> {
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    caps.structure(0).map(|s| s.name().to_string())
}

fn is_video_rtp(pad: &gst::Pad) -> bool {
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    caps.structure(0)
        .and_then(|s| s.get::<&str>("media").ok())
        .is_some_and(|m| m == "video")
}

/// Checks elements up front so a missing plugin is a clear, permanent error
/// rather than a failure deep inside a pad-added callback.
pub(crate) fn require(factories: &[&str]) -> Result<(), MediaError> {
    for f in factories {
        if gst::ElementFactory::find(f).is_none() {
            return Err(MediaError::MissingElement {
                element: (*f).to_owned(),
                package: super::elements::package_for(f),
            });
        }
    }
    Ok(())
}

/// Whether the V4L2 device can deliver H.264 itself (then no encoder is needed).
fn v4l2_offers_h264(src: &gst::Element) -> bool {
    if src.set_state(gst::State::Ready).is_err() {
        return false; // the real error shows up when the pipeline starts
    }
    let caps = src.static_pad("src").map(|p| p.query_caps(None));
    let _ = src.set_state(gst::State::Null);
    caps.is_some_and(|c| c.iter().any(|s| s.name() == "video/x-h264"))
}

/// Finds the `/dev/videoN` node whose V4L2 card name is `card`.
fn find_v4l2_card(card: &str) -> Result<PathBuf, MediaError> {
    let mut nodes: Vec<PathBuf> = std::fs::read_dir("/dev")
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    nodes.retain(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("video"))
    });
    nodes.sort();
    for node in nodes {
        if v4l2_card_name(&node).as_deref() == Some(card) {
            return Ok(node);
        }
    }
    Err(MediaError::Pipeline {
        source_desc: format!("v4l2:card={card}"),
        message: "no /dev/video* device with that card name".into(),
    })
}

fn v4l2_card_name(node: &Path) -> Option<String> {
    let src = gst::ElementFactory::make("v4l2src")
        .property("device", node.to_string_lossy().as_ref())
        .build()
        .ok()?;
    src.set_state(gst::State::Ready).ok()?;
    let name = src.property::<Option<String>>("device-name");
    let _ = src.set_state(gst::State::Null);
    name
}

fn raw_caps(c: &CameraConfig) -> gst::Caps {
    gst::Caps::builder("video/x-raw")
        .field("width", c.width as i32)
        .field("height", c.height as i32)
        .field("framerate", gst::Fraction::new(c.fps as i32, 1))
        .build()
}

fn h264_caps(c: &CameraConfig) -> gst::Caps {
    gst::Caps::builder("video/x-h264")
        .field("width", c.width as i32)
        .field("height", c.height as i32)
        .field("framerate", gst::Fraction::new(c.fps as i32, 1))
        .build()
}

fn capsfilter(name: &str, caps: gst::Caps) -> Result<gst::Element, MediaError> {
    let f = make("capsfilter", name)?;
    f.set_property("caps", caps);
    Ok(f)
}

fn add_link(pipeline: &gst::Pipeline, chain: &[&gst::Element]) -> Result<(), MediaError> {
    for e in chain {
        if e.parent().is_none() {
            pipeline.add(*e).map_err(|err| link_err(pipeline, err))?;
        }
    }
    gst::Element::link_many(chain.iter().copied()).map_err(|err| link_err(pipeline, err))
}

fn link_err(pipeline: &gst::Pipeline, err: impl std::fmt::Display) -> MediaError {
    MediaError::Pipeline {
        source_desc: pipeline.name().to_string(),
        message: err.to_string(),
    }
}
