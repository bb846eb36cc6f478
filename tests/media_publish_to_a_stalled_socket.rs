//! An uplink that stops reading: the camera keeps running, whole GOPs are
//! dropped (never memory), and publishing resumes with a segment that decodes
//! on its own. Alone in its test binary because it measures process RSS.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::media::{MEDIA_PATIENCE, camera, decode_alone};
use support::net::{start_server, test_config};
use support::time::{wait_until, within_for};
use tokio::net::TcpListener;
use trickle_edge::agent::media_path::{MediaPathStats, SegmentPublisher};
use trickle_edge::media::EncoderKind;
use trickle_edge::shutdown::{Shutdown, ShutdownTrigger};
use trickle_edge::trickle::server::ServerConfig;
use trickle_edge::trickle::{PublisherOptions, Subscriber, SubscriberOptions};

const FPS: u32 = 15;

fn rss_kb() -> u64 {
    trickle_edge::procfs::Proc::Current.rss_kib().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uplink_drops_whole_gops_keeps_memory_flat_and_resumes() {
    // A "server" that accepts connections and never reads or answers.
    let hole = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = hole.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        loop {
            match hole.accept().await {
                Ok((s, _)) => conns.push(s),
                Err(_) => return,
            }
        }
    });
    let url = format!("http://{addr}/ai/trickle/cam");
    // Unpaced: the camera makes media as fast as it can, so 60 s of video
    // pass in a few seconds of test time.
    let (cam, queue) = camera("test", 160, 120, FPS, EncoderKind::X264);
    let cam = cam.unpaced();
    let handle = cam.handle();
    let (_agent, shutdown) = ShutdownTrigger::new();
    let stats = Arc::new(MediaPathStats::default());
    let cam_task = tokio::spawn(cam.run(Shutdown::never()));
    let publisher = SegmentPublisher {
        queue,
        url: url.clone(),
        options: PublisherOptions::default(),
        stats: stats.clone(),
        close_on_exit: false,
        watch: None,
    }
    .spawn(&shutdown);

    let dropped = || handle.stats().dropped_gops.load(Ordering::Relaxed);
    wait_until("20 s of media dropped", || dropped() >= 20).await;
    let rss_20 = rss_kb();
    wait_until("60 s of media dropped", || dropped() >= 60).await;
    let rss_60 = rss_kb();
    eprintln!("RSS after 20 dropped GOPs {rss_20} KiB, after 60 {rss_60} KiB");
    assert!(
        rss_60 < rss_20 + 8 * 1024,
        "RSS grew from {rss_20} KiB to {rss_60} KiB while the uplink stalled"
    );
    assert_eq!(stats.segments_published.load(Ordering::Relaxed), 0);

    // The uplink comes back: a real server on the same address.
    held.abort();
    let _ = held.await;
    let server = start_server(
        ServerConfig {
            listen: addr,
            ..test_config()
        },
        &["cam"],
    )
    .await;
    let mut sub = Subscriber::new(
        &url,
        SubscriberOptions {
            start_seq: -1,
            ..Default::default()
        },
    )
    .unwrap();
    let seg = within_for(MEDIA_PATIENCE, "publishing to resume", sub.next_segment())
        .await
        .unwrap()
        .unwrap();
    let bytes = seg.collect(8 << 20).await.unwrap();
    let decoded = tokio::task::spawn_blocking(move || decode_alone(&bytes))
        .await
        .unwrap();
    assert!(
        decoded.frames.abs_diff(FPS as usize) <= 1,
        "first segment after the stall: {} frames",
        decoded.frames
    );
    publisher.stop(Duration::from_secs(5)).await;
    cam_task.abort();
    drop(server);
}
