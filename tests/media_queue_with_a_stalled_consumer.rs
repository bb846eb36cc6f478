//! An uplink that stops reading for a minute of media: the queue stays
//! bounded, whole GOPs are dropped and counted, and when the consumer
//! resumes the first segment out is the *newest* (freshest media wins), it
//! starts at a keyframe and decodes alone.

mod support;

use std::time::Duration;

use support::media::{camera, decode_alone, load, next_segment, read_segment, wait_for_stats};
use trickle_edge::media::EncoderKind;
use trickle_edge::shutdown::Shutdown;

const FPS: u32 = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_consumer_drops_the_oldest_gops_and_resumes_at_the_newest() {
    // Unpaced: a non-live test source makes 60 s of media in a few seconds.
    let (camera, mut queue) = camera("test", 160, 120, FPS, EncoderKind::X264);
    let camera = camera.unpaced();
    let stats = camera.handle().stats();
    let task = tokio::spawn(camera.run(Shutdown::never()));

    wait_for_stats(&stats, "30 s of media", |s| load(&s.segments) >= 30).await;
    assert!(queue.len() <= 2, "queue is bounded: {}", queue.len());
    wait_for_stats(&stats, "60 s of media", |s| load(&s.segments) >= 60).await;
    assert!(queue.len() <= 2, "queue is bounded: {}", queue.len());
    let produced = load(&stats.segments);
    let dropped = load(&stats.dropped_gops);
    assert!(
        dropped + 2 >= produced - 1,
        "all but the waiting GOPs were dropped: {stats:?}"
    );

    // Resume: the newest GOPs come out, in order, each decoding alone.
    let mut last: Option<(u64, Duration)> = None;
    for n in 0..3 {
        let mut seg = next_segment(&mut queue).await;
        let pts = seg.pts.expect("the muxer stamps GOP starts");
        match last {
            None => {
                // The oldest of the two waiting GOPs at most: a minute of
                // media lies before it.
                assert!(
                    seg.seq + 2 >= produced,
                    "first segment after the stall is seq {} of {produced} produced",
                    seg.seq
                );
                assert!(pts >= Duration::from_secs(55), "first pts {pts:?}");
            }
            Some((seq, before)) => {
                assert!(seg.seq > seq, "in order");
                assert!(pts > before, "in order: {pts:?} after {before:?}");
            }
        }
        let bytes = read_segment(&mut seg).await;
        let decoded = tokio::task::spawn_blocking(move || decode_alone(&bytes))
            .await
            .unwrap();
        assert!(
            decoded.frames.abs_diff(FPS as usize) <= 1,
            "segment {n} (seq {}) decoded alone to {} frames",
            seg.seq,
            decoded.frames
        );
        last = Some((seg.seq, pts));
    }
    task.abort();
}
