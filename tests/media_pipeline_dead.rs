//! The pipeline dies (an error on the bus, a source file that disappears) and
//! the camera rebuilds it with backoff while the consumer's queue carries on.

mod support;

use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use support::media::{
    camera, decode_alone, load, make_h264_file, next_segment, read_segment, wait_for_stats,
};
use support::tmp::temp_dir;
use trickle_edge::shutdown::Shutdown;
use trickle_edge::{backoff::Backoff, media::EncoderKind};

fn fast_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(10), Duration::from_millis(200))
}

async fn decodes_alone(bytes: Vec<u8>, fps: u32) {
    let decoded = tokio::task::spawn_blocking(move || decode_alone(&bytes))
        .await
        .unwrap();
    assert!(decoded.frames.abs_diff(fps as usize) <= 1, "{decoded:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_on_bus_rebuilds_pipeline_and_segments_continue() {
    let (camera, mut queue) = camera("test", 160, 120, 15, EncoderKind::X264);
    let camera = camera.with_backoff(fast_backoff());
    let handle = camera.handle();
    let task = tokio::spawn(camera.run(Shutdown::never()));

    let mut seg = next_segment(&mut queue).await;
    assert_eq!(seg.generation, 1);
    read_segment(&mut seg).await;

    let pipeline = handle.pipeline().expect("running");
    let src = pipeline.by_name("src").unwrap();
    pipeline
        .post_message(
            gst::message::Error::builder(gst::ResourceError::Read, "injected camera failure")
                .src(&src)
                .build(),
        )
        .unwrap();

    // Segments keep coming through the same queue, from a rebuilt pipeline.
    let mut seg = loop {
        let mut seg = next_segment(&mut queue).await;
        if seg.generation > 1 {
            break seg;
        }
        seg.collect().await; // the GOP that was streaming when the error hit
    };
    let bytes = read_segment(&mut seg).await;
    assert!(seg.is_complete());
    decodes_alone(bytes, 15).await;
    let stats = handle.stats();
    assert!(load(&stats.pipeline_failures) >= 1);
    assert!(load(&stats.pipeline_starts) >= 2);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_source_file_is_retried_until_it_returns() {
    broken_source_file_is_retried_until_restored("removed", |path| {
        std::fs::remove_file(path).unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_source_file_is_retried_until_it_returns() {
    broken_source_file_is_retried_until_restored("removed", |path| {
        std::fs::File::create(path).unwrap(); // truncates to zero bytes
    })
    .await;
}

async fn broken_source_file_is_retried_until_restored(
    name: &str,
    break_it: impl Fn(&std::path::Path),
) {
    let dir = temp_dir(name);
    let original = dir.join("original.ts");
    let live = dir.join("camera.ts");
    make_h264_file(&original, 2, 15, "ts");
    std::fs::copy(&original, &live).unwrap();

    let (camera, mut queue) = camera(
        &format!("file:{}", live.display()),
        320,
        240,
        15,
        EncoderKind::X264,
    );
    let camera = camera.unpaced().with_backoff(fast_backoff());
    let stats = camera.handle().stats();
    let task = tokio::spawn(camera.run(Shutdown::never()));

    let mut seg = next_segment(&mut queue).await;
    read_segment(&mut seg).await;

    // The file breaks: every rebuild fails until it is back.
    break_it(&live);
    let failures_before = load(&stats.pipeline_failures);
    wait_for_stats(&stats, "a failed rebuild", |s| {
        load(&s.pipeline_failures) >= failures_before + 2
    })
    .await;
    let starts_while_missing = load(&stats.pipeline_starts);
    std::fs::copy(&original, &live).unwrap();

    // Drain until a segment from a pipeline started after the file returned.
    let mut seg = loop {
        let mut seg = next_segment(&mut queue).await;
        if seg.generation > starts_while_missing {
            break seg;
        }
        seg.collect().await;
    };
    let bytes = read_segment(&mut seg).await;
    decodes_alone(bytes, 15).await;
    task.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
