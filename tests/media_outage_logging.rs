//! A long outage costs one warning and one recovery line, not one per retry.

mod support;

use std::time::Duration;

use support::media::{camera, load, make_h264_file, next_segment, read_segment, wait_for_stats};
use support::tmp::temp_dir;
use support::tracing::LogCapture;
use tracing::Level;
use trickle_edge::shutdown::Shutdown;
use trickle_edge::{backoff::Backoff, media::EncoderKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_is_logged_once_and_recovery_once() {
    let recorder = LogCapture::new(Level::INFO);
    tracing::subscriber::set_global_default(recorder.clone()).unwrap();

    let dir = temp_dir("outage-log");
    let original = dir.join("original.ts");
    let live = dir.join("camera.ts");
    make_h264_file(&original, 1, 15, "ts");

    // Start with the file missing: the camera is down from the first attempt.
    let (camera, mut queue) = camera(
        &format!("file:{}", live.display()),
        320,
        240,
        15,
        EncoderKind::X264,
    );
    let backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(50));
    let camera = camera.unpaced().with_backoff(backoff);
    let stats = camera.handle().stats();
    let task = tokio::spawn(camera.run(Shutdown::never()));

    wait_for_stats(&stats, "several failed attempts", |s| {
        load(&s.pipeline_failures) >= 5
    })
    .await;
    // Appears whole (rename is atomic): a half-copied file would be a real
    // second outage (recovered on its first keyframe, then truncated).
    let partial = dir.join("camera.ts.partial");
    std::fs::copy(&original, &partial).unwrap();
    std::fs::rename(&partial, &live).unwrap();
    let mut seg = next_segment(&mut queue).await;
    read_segment(&mut seg).await;
    // Let the file loop a few times: EOS loops are not outages.
    let starts = load(&stats.pipeline_starts);
    wait_for_stats(&stats, "a few loops", |s| {
        load(&s.pipeline_starts) >= starts + 3
    })
    .await;
    task.abort();

    assert_eq!(recorder.count(Level::WARN, "camera pipeline failed"), 1);
    assert_eq!(recorder.count(Level::INFO, "camera recovered"), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
