//! Camera segments through a real trickle server: each segment fetched back
//! by a subscriber decodes on its own. (The stalled uplink is in
//! tests/media_publish_to_a_stalled_socket.rs.)

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::media::{camera, decode_alone};
use support::net::{start_server, test_config};
use support::time::within;
use trickle_edge::agent::media_path::{MediaPathStats, SegmentPublisher};
use trickle_edge::media::EncoderKind;
use trickle_edge::shutdown::{Shutdown, ShutdownTrigger};
use trickle_edge::trickle::{PublisherOptions, Subscriber, SubscriberOptions};

const FPS: u32 = 15;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_fetched_back_from_the_server_decode_alone() {
    let server = start_server(test_config(), &["cam"]).await;
    let url = format!("{}cam", server.base_url());
    let mut sub = Subscriber::new(
        &url,
        SubscriberOptions {
            start_seq: 0,
            ..Default::default()
        },
    )
    .unwrap();
    let (cam, queue) = camera("test", 320, 240, FPS, EncoderKind::X264);
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
    for i in 0..4 {
        let seg = within("segment from the server", sub.next_segment())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seg.content_type.as_deref(), Some("video/MP2T"));
        let bytes = seg.collect(8 << 20).await.unwrap();
        let decoded = tokio::task::spawn_blocking(move || decode_alone(&bytes))
            .await
            .unwrap();
        assert!(
            decoded.frames.abs_diff(FPS as usize) <= 1,
            "segment {i} decoded alone to {} frames, want {FPS}±1",
            decoded.frames
        );
    }
    publisher.stop(Duration::from_secs(5)).await;
    cam_task.abort();
}
