//! An IP camera: a real RTSP server (gst-rtsp-server, `support::rtsp`)
//! serving H.264. Its stream reaches the trickle server without an encoder
//! in the agent's pipeline and every segment decodes alone; the server going
//! away and coming back rebuilds the camera, logged once per outage; the
//! password in the camera URL is never logged, nor kept in an error.

mod support;

use std::sync::Arc;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use support::media::{
    MEDIA_PATIENCE, camera, decode_alone, load, next_segment, read_segment, wait_for_stats,
};
use support::net::{free_port, start_server, test_config};
use support::rtsp::{RtspCamera, RtspCameraSpec};
use support::time::within_for;
use support::tracing::LogCapture;
use tracing::Level;
use trickle_edge::agent::media_path::{MediaPathStats, SegmentPublisher};
use trickle_edge::backoff::Backoff;
use trickle_edge::media::{
    Camera, CameraConfig, CameraHandle, EncoderConfig, EncoderKind, GopQueueLimits,
};
use trickle_edge::shutdown::{Shutdown, ShutdownTrigger};
use trickle_edge::trickle::{PublisherOptions, Subscriber, SubscriberOptions};

const FPS: u32 = 15;
const USER: &str = "viewer";
/// Unusual enough that finding it anywhere in a log means it leaked.
const PASSWORD: &str = "pw-9c41e7d2";

fn spec(port: u16, credentials: bool) -> RtspCameraSpec {
    RtspCameraSpec {
        port,
        credentials: credentials.then(|| (USER.to_owned(), PASSWORD.to_owned())),
        width: 320,
        height: 240,
        fps: FPS,
        gop_frames: FPS,
        bitrate_kbps: 500,
    }
}

/// Factory name and klass of every element of the running pipeline,
/// recursing into bins (parsebin's depayloader and parser included). Called
/// once segments arrive, when every dynamic link has been made.
fn running_elements(handle: &CameraHandle) -> Vec<(String, String)> {
    element_kinds(&handle.pipeline().expect("the pipeline is running"))
}

fn element_kinds(pipeline: &gst::Pipeline) -> Vec<(String, String)> {
    pipeline
        .iterate_recurse()
        .into_iter()
        .filter_map(|e| {
            let factory = e.ok()?.factory()?;
            let klass = factory
                .metadata(gst::ELEMENT_METADATA_KLASS)
                .unwrap_or_default()
                .to_string();
            Some((factory.name().to_string(), klass))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtsp_h264_reaches_the_trickle_server_without_an_encoder() {
    let rtsp = RtspCamera::start(spec(free_port(), false));
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
    let (cam, queue) = camera(&rtsp.url(false), 320, 240, FPS, EncoderKind::X264);
    let handle = cam.handle();
    let cam_task = tokio::spawn(cam.run(Shutdown::never()));
    let (_agent, shutdown) = ShutdownTrigger::new();
    let publisher = SegmentPublisher {
        queue,
        url,
        options: PublisherOptions::default(),
        stats: Arc::new(MediaPathStats::default()),
        close_on_exit: false,
        watch: None,
    }
    .spawn(&shutdown);

    for i in 0..3 {
        let seg = within_for(
            MEDIA_PATIENCE,
            "a segment from the server",
            sub.next_segment(),
        )
        .await
        .unwrap()
        .unwrap();
        let bytes = seg.collect(8 << 20).await.unwrap();
        let decoded = tokio::task::spawn_blocking(move || decode_alone(&bytes))
            .await
            .unwrap();
        // The first segment may start at the camera's first keyframe after
        // the agent joined; the ones after are one camera GOP each.
        assert!(
            decoded.frames.abs_diff(FPS as usize) <= 1 || (i == 0 && decoded.frames > 0),
            "segment {i} decoded alone to {} frames, want {FPS}±1",
            decoded.frames
        );
    }
    let elements = running_elements(&handle);
    let names: Vec<&str> = elements.iter().map(|(n, _)| n.as_str()).collect();
    for (name, klass) in &elements {
        assert!(
            !klass.contains("Encoder") && !klass.contains("Decoder"),
            "{name} ({klass}) in an RTSP H.264 pipeline: {names:?}"
        );
    }
    for expected in ["rtspsrc", "rtph264depay", "h264parse", "mpegtsmux"] {
        assert!(names.contains(&expected), "{expected} missing: {names:?}");
    }
    publisher.stop(Duration::from_secs(5)).await;
    cam_task.abort();
    rtsp.stop();
}

/// `camera.passthrough = false`: a camera whose keyframes are 4 s apart is
/// decoded and re-encoded, so segments follow `[encoder]`'s 1 s GOP.
/// (Passed through, each segment would be one 4 s camera GOP.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtsp_reencoded_when_passthrough_is_off() {
    let rtsp = RtspCamera::start(RtspCameraSpec {
        gop_frames: 4 * FPS,
        ..spec(free_port(), false)
    });
    support::media::init();
    let (cam, mut queue) = Camera::new(
        CameraConfig {
            source: rtsp.url(false),
            width: 320,
            height: 240,
            fps: FPS,
            passthrough: false,
        },
        EncoderConfig {
            kind: EncoderKind::X264,
            bitrate_kbps: 500,
            gop_seconds: 1.0,
        },
        GopQueueLimits::default(),
    )
    .unwrap();
    let handle = cam.handle();
    let task = tokio::spawn(cam.run(Shutdown::never()));
    let mut frames = Vec::new();
    for _ in 0..3 {
        let mut seg = next_segment(&mut queue).await;
        let bytes = read_segment(&mut seg).await;
        let decoded = tokio::task::spawn_blocking(move || decode_alone(&bytes))
            .await
            .unwrap();
        frames.push(decoded.frames);
    }
    let elements = running_elements(&handle);
    let klasses: Vec<&str> = elements.iter().map(|(_, k)| k.as_str()).collect();
    assert!(
        klasses.iter().any(|k| k.contains("Decoder"))
            && klasses.iter().any(|k| k.contains("Encoder")),
        "decoded and re-encoded: {elements:?}"
    );
    // Cut by the agent's forced keyframes, not the camera's: far shorter
    // than its 4 s GOP. (On a loaded machine a re-encoded RTSP GOP comes out
    // at 9-15 frames rather than exactly 15: the forced keyframe's running
    // time is taken from the appsink's PTS, which lags a live network source.)
    assert!(
        frames.iter().all(|f| (1..=2 * FPS as usize).contains(f)),
        "segments of {frames:?} frames, want about {FPS} (1 s GOPs), not the camera's {}",
        4 * FPS
    );
    task.abort();
    rtsp.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtsp_outage_rebuilds_logs_once_and_never_shows_the_password() {
    let logs = LogCapture::new(Level::DEBUG);
    tracing::subscriber::set_global_default(logs.clone()).unwrap();
    let port = free_port();
    let rtsp = RtspCamera::start(spec(port, true));

    // A wrong password: refused, and the error says so without either password.
    let wrong = format!("rtsp://{USER}:wrong-{PASSWORD}@127.0.0.1:{port}/cam");
    let (cam, _queue) = camera(&wrong, 320, 240, FPS, EncoderKind::X264);
    let cam = cam.with_backoff(Backoff::new(
        Duration::from_millis(20),
        Duration::from_millis(200),
    ));
    let stats = cam.handle().stats();
    let task = tokio::spawn(cam.run(Shutdown::never()));
    wait_for_stats(&stats, "the wrong password refused twice", |s| {
        load(&s.pipeline_failures) >= 2
    })
    .await;
    task.abort();
    let refused = stats.camera_error().expect("a refused camera says why");
    assert!(!refused.contains(PASSWORD), "{refused}");
    assert!(refused.contains("rtsp://viewer:***@127.0.0.1"), "{refused}");

    // The right one: segments, then an outage, then segments again.
    let (cam, mut queue) = camera(&rtsp.url(true), 320, 240, FPS, EncoderKind::X264);
    let cam = cam.with_backoff(Backoff::new(
        Duration::from_millis(20),
        Duration::from_millis(200),
    ));
    let stats = cam.handle().stats();
    let task = tokio::spawn(cam.run(Shutdown::never()));
    let mut seg = next_segment(&mut queue).await;
    let bytes = read_segment(&mut seg).await;
    let first_generation = seg.generation;
    tokio::task::spawn_blocking(move || decode_alone(&bytes))
        .await
        .unwrap();
    // Counted per outage from here; the start's logs are checked for the password below.
    let start = logs.take();

    rtsp.stop();
    wait_for_stats(&stats, "rebuilds failing while the camera is away", |s| {
        load(&s.pipeline_failures) >= 3
    })
    .await;
    let down = stats.camera_error().expect("an outage says why");
    assert!(!down.contains(PASSWORD), "{down}");
    let rtsp = RtspCamera::start(spec(port, true));

    // A GOP of a pipeline built after the camera returned decodes alone.
    let decoded = within_for(
        MEDIA_PATIENCE,
        "a segment after the camera returned",
        async {
            loop {
                let mut seg = next_segment(&mut queue).await;
                let bytes = read_segment(&mut seg).await;
                if seg.generation > first_generation && stats.camera_error().is_none() {
                    break tokio::task::spawn_blocking(move || decode_alone(&bytes))
                        .await
                        .unwrap();
                }
            }
        },
    )
    .await;
    assert!(decoded.frames.abs_diff(FPS as usize) <= 1, "{decoded:?}");
    task.abort();
    rtsp.stop();

    let outage = logs.events();
    let texts: Vec<String> = outage.iter().map(|e| e.text()).collect();
    assert_eq!(
        logs.count(Level::WARN, "camera pipeline failed"),
        1,
        "one warning per outage: {texts:#?}"
    );
    assert_eq!(logs.count(Level::INFO, "camera recovered"), 1, "{texts:#?}");
    let failures = load(&stats.pipeline_failures);
    assert!(failures >= 3, "{failures} failed rebuilds");
    let start: Vec<String> = start.iter().map(|e| e.text()).collect();
    for text in start.iter().chain(&texts).chain(&logs.span_texts()) {
        assert!(!text.contains(PASSWORD), "the password was logged: {text}");
    }
    assert!(
        logs.span_texts()
            .iter()
            .any(|s| s.contains("rtsp://viewer:***@127.0.0.1")),
        "the camera's span names its source, redacted: {:?}",
        logs.span_texts()
    );
}
