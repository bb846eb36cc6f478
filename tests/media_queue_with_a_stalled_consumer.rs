//! An uplink that stops reading for a minute of media: the queue stays
//! bounded, whole GOPs are dropped and counted, memory stays flat, and when
//! the consumer resumes the next segment starts at a keyframe and decodes alone.

mod support;

use std::time::Duration;

use support::media::{camera, decode_alone, load, next_segment, read_segment, wait_for_stats};
use trickle_edge::media::EncoderKind;
use trickle_edge::shutdown::Shutdown;

const FPS: u32 = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_consumer_drops_whole_gops_and_resumes_at_keyframe() {
    // Unpaced: a non-live test source makes 60 s of media in a few seconds.
    let (camera, mut queue) = camera("test", 160, 120, FPS, EncoderKind::X264);
    let camera = camera.unpaced();
    let stats = camera.handle().stats();
    let task = tokio::spawn(camera.run(Shutdown::never()));
    let gops = |s: &trickle_edge::media::MediaStats| load(&s.segments) + load(&s.dropped_gops);

    wait_for_stats(&stats, "30 s of media", |s| gops(s) >= 30).await;
    let admitted_bytes = load(&stats.bytes);
    assert!(queue.len() <= 2, "queue is bounded: {}", queue.len());
    wait_for_stats(&stats, "60 s of media", |s| gops(s) >= 60).await;
    assert!(queue.len() <= 2, "queue is bounded: {}", queue.len());
    assert_eq!(
        load(&stats.bytes),
        admitted_bytes,
        "no bytes admitted while the consumer stalls: memory is flat"
    );
    assert_eq!(
        load(&stats.segments),
        2,
        "only the queue's capacity was admitted"
    );
    assert!(load(&stats.dropped_gops) >= 58, "{stats:?}");

    // Resume: the queued GOPs, then a fresh one admitted at a keyframe.
    let mut last_pts = None;
    for expect_seq in 0..3 {
        let mut seg = next_segment(&mut queue).await;
        assert_eq!(seg.seq, expect_seq, "seq counts admitted segments only");
        let bytes = read_segment(&mut seg).await;
        let decoded = tokio::task::spawn_blocking(move || decode_alone(&bytes))
            .await
            .unwrap();
        assert!(
            decoded.frames.abs_diff(FPS as usize) <= 1,
            "segment {} decoded alone to {} frames",
            seg.seq,
            decoded.frames
        );
        if expect_seq == 2 {
            let gap = seg.pts.unwrap() - last_pts.unwrap();
            assert!(
                gap > Duration::from_secs(10),
                "dropped GOPs lie between: {gap:?}"
            );
        }
        last_pts = seg.pts;
    }
    task.abort();
}
