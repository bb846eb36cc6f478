//! Every GOP segment from a live test camera decodes on its own, with one
//! GOP's worth of frames and one GOP's duration, for each software encoder.

mod support;

use std::time::Duration;

use support::media::{camera, decode_alone, factory_names, load, next_segment, read_segment};
use trickle_edge::media::EncoderKind;
use trickle_edge::shutdown::Shutdown;

const FPS: u32 = 15;

async fn five_segments_decode_alone(kind: EncoderKind) {
    let (camera, mut queue) = camera("test", 320, 240, FPS, kind);
    let handle = camera.handle();
    let task = tokio::spawn(camera.run(Shutdown::never()));
    let frame = Duration::from_secs(1) / FPS;
    let mut starts = Vec::new();
    for _ in 0..5 {
        let mut seg = next_segment(&mut queue).await;
        let bytes = read_segment(&mut seg).await;
        assert!(seg.is_complete(), "segment {} ended at a keyframe", seg.seq);
        let decoded = tokio::task::spawn_blocking(move || decode_alone(&bytes))
            .await
            .unwrap();
        let want = FPS as usize; // gop_seconds (1.0) × fps
        assert!(
            decoded.frames.abs_diff(want) <= 1,
            "{kind:?} segment {} decoded alone to {} frames, want {want}±1",
            seg.seq,
            decoded.frames
        );
        let d = decoded.duration(FPS);
        assert!(
            d.abs_diff(Duration::from_secs(1)) <= frame,
            "{kind:?} segment {} spans {d:?}",
            seg.seq
        );
        starts.push(seg.pts.expect("muxer stamps keyframe PTS"));
    }
    // Segment boundaries, by the PTS of each GOP's first buffer, are one GOP apart.
    for w in starts.windows(2) {
        assert!(
            (w[1] - w[0]).abs_diff(Duration::from_secs(1)) <= frame,
            "{starts:?}"
        );
    }
    // The force-key-unit requests made mpegtsmux write PAT/PMT at every GOP
    // itself; the segmenter's repair fallback was never needed.
    assert_eq!(load(&handle.stats().psi_repairs), 0);
    let pipeline = handle.pipeline().expect("running");
    let names = factory_names(&pipeline);
    let enc = trickle_edge::media::element_name(kind).unwrap();
    assert!(names.iter().any(|n| n == enc), "{names:?}");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x264_segments_decode_alone() {
    five_segments_decode_alone(EncoderKind::X264).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openh264_segments_decode_alone() {
    five_segments_decode_alone(EncoderKind::Openh264).await;
}
