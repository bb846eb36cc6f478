//! Cameras, segments and test files for the media tests: decode one
//! segment alone, make test files.

use std::fmt;
use std::{path::Path, sync::atomic::Ordering, time::Duration};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use trickle_edge::media::{
    Camera, CameraConfig, EncoderConfig, EncoderKind, GopQueueLimits, GopSegment, MediaStats,
    SegmentQueue,
};

use super::time::{PATIENCE, wait_until_for, within_for};

/// Bound for anything a media test awaits: twice [`PATIENCE`], because
/// encoding and decoding video on a shared machine is the slowest thing the
/// tests do. Never a timing assertion.
pub const MEDIA_PATIENCE: Duration = Duration::from_secs(2 * PATIENCE.as_secs());

/// GStreamer must be initialised before any element is made.
pub fn init() {
    gst::init().unwrap();
}

/// A camera (500 kbit/s, 1 s GOPs, default queue) and its segment queue.
pub fn camera(source: &str, w: u32, h: u32, fps: u32, kind: EncoderKind) -> (Camera, SegmentQueue) {
    init();
    Camera::new(
        CameraConfig {
            source: source.into(),
            width: w,
            height: h,
            fps,
            passthrough: true,
        },
        EncoderConfig {
            kind,
            bitrate_kbps: 500,
            gop_seconds: 1.0,
        },
        GopQueueLimits::default(),
    )
    .unwrap()
}

/// What decoding one segment on its own produced.
#[derive(Debug)]
pub struct Decoded {
    pub frames: usize,
    pub first_pts: Option<Duration>,
    pub last_pts: Option<Duration>,
}

impl Decoded {
    /// Media time covered, counting the last frame's own duration.
    pub fn duration(&self, fps: u32) -> Duration {
        match (self.first_pts, self.last_pts) {
            (Some(a), Some(b)) => b - a + Duration::from_secs(1) / fps,
            _ => Duration::ZERO,
        }
    }
}

/// Decodes one segment's bytes in a fresh pipeline:
/// appsrc ► tsdemux ► h264parse ► avdec_h264 ► appsink. Blocking.
pub fn decode_alone(ts: &[u8]) -> Decoded {
    let pipeline = gst::Pipeline::new();
    let src = gst_app::AppSrc::builder()
        .caps(
            &gst::Caps::builder("video/mpegts")
                .field("systemstream", true)
                .build(),
        )
        .format(gst::Format::Bytes)
        .build();
    let demux = gst::ElementFactory::make("tsdemux").build().unwrap();
    let parse = gst::ElementFactory::make("h264parse").build().unwrap();
    // avdec_h264 (gstreamer1.0-libav) decodes every profile; openh264dec only
    // Constrained Baseline, so it cannot check x264's High-profile output.
    let dec = gst::ElementFactory::make("avdec_h264")
        .build()
        .or_else(|_| gst::ElementFactory::make("openh264dec").build())
        .unwrap();
    let sink = gst_app::AppSink::builder().sync(false).build();
    pipeline
        .add_many([src.upcast_ref(), &demux, &parse, &dec, sink.upcast_ref()])
        .unwrap();
    src.link(&demux).unwrap();
    gst::Element::link_many([&parse, &dec, sink.upcast_ref()]).unwrap();
    let parse_sink = parse.static_pad("sink").unwrap();
    demux.connect_pad_added(move |_, pad| {
        if !parse_sink.is_linked() {
            pad.link(&parse_sink).unwrap();
        }
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    src.push_buffer(gst::Buffer::from_slice(ts.to_vec()))
        .unwrap();
    src.end_of_stream().unwrap();
    let mut out = Decoded {
        frames: 0,
        first_pts: None,
        last_pts: None,
    };
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(10)) {
        let pts = sample.buffer().and_then(|b| b.pts()).map(Duration::from);
        out.first_pts = out.first_pts.or(pts);
        out.last_pts = pts.or(out.last_pts);
        out.frames += 1;
    }
    let bus = pipeline.bus().unwrap();
    if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
        panic!("decoding a segment alone failed: {msg:?}");
    }
    pipeline.set_state(gst::State::Null).unwrap();
    out
}

/// Reads a whole segment and checks it starts with a PAT (PID 0) packet.
pub async fn read_segment(seg: &mut GopSegment) -> Vec<u8> {
    let bytes = within_for(MEDIA_PATIENCE, "segment bytes", seg.collect()).await;
    assert!(
        bytes.len() >= 188 && bytes.len() % 188 == 0,
        "whole TS packets"
    );
    assert_eq!(bytes[0], 0x47);
    let pid = (u16::from(bytes[1] & 0x1f) << 8) | u16::from(bytes[2]);
    assert_eq!(pid, 0, "segment {} must start with PAT", seg.seq);
    bytes.to_vec()
}

/// The queue's next segment.
pub async fn next_segment(q: &mut SegmentQueue) -> GopSegment {
    within_for(MEDIA_PATIENCE, "a segment", q.next())
        .await
        .expect("queue open")
}

/// Awaits a condition on the camera's stats; a timeout shows the stats.
pub async fn wait_for_stats(stats: &MediaStats, what: &str, cond: impl Fn(&MediaStats) -> bool) {
    wait_until_for(MEDIA_PATIENCE, WithStats(what, stats), || cond(stats)).await
}

/// Names what was awaited and, rendered only if the wait fails, the stats.
struct WithStats<'a>(&'a str, &'a MediaStats);

impl fmt::Display for WithStats<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {:?}", self.0, self.1)
    }
}

/// One stats counter's value.
pub fn load(a: &std::sync::atomic::AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// Encodes `seconds` of test video into `path` with x264 (GOP = 1 s).
/// `container` is "ts" (MPEG-TS) or "h264" (raw byte-stream).
pub fn make_h264_file(path: &Path, seconds: u32, fps: u32, container: &str) {
    init();
    let mux = if container == "ts" {
        "! mpegtsmux "
    } else {
        ""
    };
    let desc = format!(
        "videotestsrc pattern=ball num-buffers={n} ! video/x-raw,width=320,height=240,framerate={fps}/1 \
         ! x264enc key-int-max={fps} speed-preset=ultrafast tune=zerolatency \
         ! h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream {mux}! filesink location={loc}",
        n = seconds * fps,
        loc = path.display()
    );
    run_to_eos(&desc);
}

/// Writes `seconds` of Motion-JPEG in AVI: a file that must be decoded and re-encoded.
pub fn make_mjpeg_file(path: &Path, seconds: u32, fps: u32) {
    init();
    let desc = format!(
        "videotestsrc pattern=ball num-buffers={n} ! video/x-raw,width=320,height=240,framerate={fps}/1 \
         ! jpegenc ! avimux ! filesink location={loc}",
        n = seconds * fps,
        loc = path.display()
    );
    run_to_eos(&desc);
}

fn run_to_eos(desc: &str) {
    let pipeline = gst::parse::launch(desc).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(30),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("file written in time");
    assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
    pipeline.set_state(gst::State::Null).unwrap();
}

/// Factory names of every element in the pipeline, recursing into bins.
pub fn factory_names(pipeline: &gst::Pipeline) -> Vec<String> {
    pipeline
        .iterate_recurse()
        .into_iter()
        .filter_map(|e| e.ok()?.factory().map(|f| f.name().to_string()))
        .collect()
}
