//! H.264 encoder choice: element names per kind, settings in each element's
//! own terms, and the real encode probe behind `kind = "auto"`.

use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::config::{EncoderConfig, EncoderKind};
use super::error::{MediaError, make};

/// Board order for `auto`: hardware first (cheapest CPU), software last.
pub const AUTO_ORDER: [EncoderKind; 7] = [
    EncoderKind::V4l2,
    EncoderKind::Mpp,
    EncoderKind::Nvv4l2,
    EncoderKind::Vaapi,
    EncoderKind::Qsv,
    EncoderKind::X264,
    EncoderKind::Openh264,
];

/// How long a probe may take before the encoder counts as not working.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The GStreamer factory name for a concrete encoder kind (`None` for `Auto`).
pub fn element_name(kind: EncoderKind) -> Option<&'static str> {
    Some(match kind {
        EncoderKind::Auto => return None,
        EncoderKind::X264 => "x264enc",
        EncoderKind::Openh264 => "openh264enc",
        EncoderKind::V4l2 => "v4l2h264enc",
        EncoderKind::Mpp => "mpph264enc",
        EncoderKind::Nvv4l2 => "nvv4l2h264enc",
        EncoderKind::Vaapi => "vaapih264enc",
        EncoderKind::Qsv => "qsvh264enc",
    })
}

/// Every factory name that is an H.264 encoder, so tests can assert a passthrough has none.
pub fn all_element_names() -> impl Iterator<Item = &'static str> {
    AUTO_ORDER.iter().filter_map(|k| element_name(*k))
}

/// Creates the encoder element `encoder` (plus the converter it needs in
/// front, if any), with bitrate and GOP set in the element's own units.
pub(crate) fn make_encoder(
    kind: EncoderKind,
    cfg: &EncoderConfig,
    fps: u32,
) -> Result<Vec<gst::Element>, MediaError> {
    let factory = element_name(kind)
        .ok_or_else(|| MediaError::Config("encoder kind auto must be resolved first".into()))?;
    let enc = make(factory, "encoder")?;
    let kbps = cfg.bitrate_kbps;
    let bps = u64::from(kbps) * 1000;
    let gop = cfg.gop_frames(fps);
    let props: Vec<(&str, String)> = match kind {
        EncoderKind::X264 => vec![
            ("bitrate", kbps.to_string()),
            ("key-int-max", gop.to_string()),
            ("speed-preset", "superfast".into()),
            ("tune", "zerolatency".into()),
            // Regular GOPs make regular segments: no extra IDR on scene cuts.
            ("option-string", "scenecut=0".into()),
        ],
        EncoderKind::Openh264 => vec![
            ("bitrate", bps.to_string()),
            ("rate-control", "bitrate".into()),
            ("gop-size", gop.to_string()),
            ("scene-change-detection", "false".into()),
        ],
        EncoderKind::V4l2 => vec![(
            "extra-controls",
            format!(
                "controls,video_bitrate={bps},h264_i_frame_period={gop},repeat_sequence_header=1"
            ),
        )],
        EncoderKind::Mpp => vec![("bps", bps.to_string()), ("gop", gop.to_string())],
        EncoderKind::Nvv4l2 => vec![
            ("bitrate", bps.to_string()),
            ("iframeinterval", gop.to_string()),
            ("idrinterval", gop.to_string()),
            ("insert-sps-pps", "true".into()),
        ],
        EncoderKind::Vaapi => vec![
            ("bitrate", kbps.to_string()),
            ("keyframe-period", gop.to_string()),
            ("rate-control", "cbr".into()),
        ],
        EncoderKind::Qsv => vec![("bitrate", kbps.to_string()), ("gop-size", gop.to_string())],
        EncoderKind::Auto => unreachable!("rejected above"),
    };
    for (name, value) in props {
        // Vendor plugins change between BSP releases; a missing knob is worth a
        // warning, not a dead camera.
        if enc.find_property(name).is_some() {
            enc.set_property_from_str(name, &value);
        } else {
            tracing::warn!(
                element = factory,
                property = name,
                "encoder lacks property; left at default"
            );
        }
    }
    let mut chain = Vec::new();
    if kind == EncoderKind::Nvv4l2 {
        // Jetson encoders only take NVMM buffers.
        chain.push(make("nvvidconv", "hwconvert")?);
    }
    chain.push(enc);
    Ok(chain)
}

/// What one encoder probe found.
#[derive(Debug, Clone)]
pub struct ProbeResult {
    pub element: &'static str,
    /// The plugin is installed.
    pub present: bool,
    /// It really produced H.264 from a few test frames.
    pub works: bool,
    pub took: Duration,
    pub error: Option<String>,
}

/// Probes every encoder in [`AUTO_ORDER`]. Blocking: call from `spawn_blocking` in async code.
pub fn probe_encoders() -> Vec<ProbeResult> {
    if let Err(e) = gst::init() {
        return AUTO_ORDER
            .iter()
            .filter_map(|k| element_name(*k))
            .map(|element| ProbeResult {
                element,
                present: false,
                works: false,
                took: std::time::Duration::ZERO,
                error: Some(format!("GStreamer init failed: {e}")),
            })
            .collect();
    }
    AUTO_ORDER.iter().map(|k| probe(*k)).collect()
}

/// Resolves `auto` to the first encoder that passes the probe; other kinds pass through.
/// Blocking, like [`probe_encoders`].
pub fn resolve(kind: EncoderKind) -> Result<EncoderKind, MediaError> {
    if kind != EncoderKind::Auto {
        return Ok(kind);
    }
    let mut tried = Vec::new();
    for k in AUTO_ORDER {
        let r = probe(k);
        if r.works {
            tracing::info!(encoder = r.element, took = ?r.took, "selected H.264 encoder");
            return Ok(k);
        }
        if r.present {
            tried.push(format!("{}: {}", r.element, r.error.unwrap_or_default()));
        }
    }
    if tried.is_empty() {
        tried.push(format!(
            "none installed; install {} (openh264enc) or {} (x264enc)",
            super::elements::BAD,
            super::elements::UGLY
        ));
    }
    Err(MediaError::NoEncoder(tried.join("; ")))
}

/// Encodes five test frames through `kind` and checks H.264 comes out in time:
/// "present" is not enough on boards whose hardware encoder node is missing or busy.
fn probe(kind: EncoderKind) -> ProbeResult {
    let element = element_name(kind).unwrap_or("auto");
    let start = Instant::now();
    let present = gst::ElementFactory::find(element).is_some();
    let outcome = if present {
        probe_pipeline(kind)
    } else {
        Err(format!(
            "not installed ({})",
            super::elements::package_for(element)
        ))
    };
    ProbeResult {
        element,
        present,
        works: outcome.is_ok(),
        took: start.elapsed(),
        error: outcome.err(),
    }
}

fn probe_pipeline(kind: EncoderKind) -> Result<(), String> {
    let pipeline = gst::Pipeline::with_name("encoder-probe");
    let run = || -> Result<(), String> {
        let src = make("videotestsrc", "src").map_err(|e| e.to_string())?;
        src.set_property("num-buffers", 5i32);
        let caps = make("capsfilter", "caps").map_err(|e| e.to_string())?;
        caps.set_property(
            "caps",
            gst::Caps::builder("video/x-raw")
                .field("width", 320i32)
                .field("height", 240i32)
                .field("framerate", gst::Fraction::new(30, 1))
                .build(),
        );
        let conv = make("videoconvert", "convert").map_err(|e| e.to_string())?;
        let enc = make_encoder(kind, &EncoderConfig::default(), 30).map_err(|e| e.to_string())?;
        let parse = make("h264parse", "parse").map_err(|e| e.to_string())?;
        let sink = gst_app::AppSink::builder().name("sink").sync(false).build();
        let mut chain = vec![src, caps, conv];
        chain.extend(enc);
        chain.push(parse);
        chain.push(sink.clone().upcast());
        pipeline.add_many(&chain).map_err(|e| e.to_string())?;
        gst::Element::link_many(&chain).map_err(|e| e.to_string())?;
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| bus_error(&pipeline).unwrap_or_else(|| "failed to start".into()))?;
        let sample = sink
            .try_pull_sample(gst::ClockTime::from_nseconds(
                PROBE_TIMEOUT.as_nanos() as u64
            ))
            .ok_or_else(|| {
                bus_error(&pipeline).unwrap_or_else(|| "no output before timeout".into())
            })?;
        let is_h264 = sample
            .caps()
            .and_then(|c| c.structure(0).map(|s| s.name() == "video/x-h264"))
            .unwrap_or(false);
        let non_empty = sample.buffer().is_some_and(|b| b.size() > 0);
        if is_h264 && non_empty {
            Ok(())
        } else {
            Err("output was not H.264".into())
        }
    };
    let result = run();
    let _ = pipeline.set_state(gst::State::Null);
    result
}

/// The first error message waiting on a pipeline's bus, if any.
fn bus_error(pipeline: &gst::Pipeline) -> Option<String> {
    let bus = pipeline.bus()?;
    let msg = bus.timed_pop_filtered(gst::ClockTime::ZERO, &[gst::MessageType::Error])?;
    match msg.view() {
        gst::MessageView::Error(e) => Some(e.error().to_string()),
        _ => None,
    }
}
