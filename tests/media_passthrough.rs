//! Sources that already deliver H.264 are segmented without re-encoding.

mod support;

use support::media::{
    camera, decode_alone, factory_names, make_h264_file, make_mjpeg_file, next_segment,
    read_segment,
};
use support::tmp::temp_dir;
use trickle_edge::media::{EncoderKind, all_element_names};
use trickle_edge::shutdown::Shutdown;

async fn passthrough(container: &str) {
    let dir = temp_dir(&format!("passthrough-{container}"));
    let path = dir.join(format!("camera.{container}"));
    make_h264_file(&path, 2, 15, container);
    let (camera, mut queue) = camera(
        &format!("file:{}", path.display()),
        320,
        240,
        15,
        EncoderKind::X264,
    );
    let handle = camera.handle();
    // Paced (real time), so the pipeline is there to inspect between loops.
    let task = tokio::spawn(camera.run(Shutdown::never()));
    let mut inspected = 0;

    for _ in 0..3 {
        let mut seg = next_segment(&mut queue).await;
        let bytes = read_segment(&mut seg).await;
        let decoded = tokio::task::spawn_blocking(move || decode_alone(&bytes))
            .await
            .unwrap();
        assert!(decoded.frames.abs_diff(15) <= 1, "{container}: {decoded:?}");
        if let Some(pipeline) = handle.pipeline() {
            let names = factory_names(&pipeline);
            assert!(names.iter().any(|n| n == "h264parse"), "{names:?}");
            assert!(
                !names.iter().any(|n| all_element_names().any(|e| e == n)),
                "no encoder in a passthrough pipeline: {names:?}"
            );
            inspected += 1;
        }
    }
    assert!(inspected > 0, "the running pipeline was inspected");
    task.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_mpegts_file_is_passed_through() {
    passthrough("ts").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_h264_file_is_passed_through() {
    passthrough("h264").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_h264_file_is_decoded_and_encoded() {
    let dir = temp_dir("mjpeg");
    let path = dir.join("camera.avi");
    make_mjpeg_file(&path, 2, 15);
    let (camera, mut queue) = camera(
        &format!("file:{}", path.display()),
        320,
        240,
        15,
        EncoderKind::Openh264,
    );
    let handle = camera.handle();
    let task = tokio::spawn(camera.run(Shutdown::never()));
    let mut inspected = 0;
    for _ in 0..3 {
        let mut seg = next_segment(&mut queue).await;
        let bytes = read_segment(&mut seg).await;
        let decoded = tokio::task::spawn_blocking(move || decode_alone(&bytes))
            .await
            .unwrap();
        assert!(decoded.frames.abs_diff(15) <= 1, "{decoded:?}");
        if let Some(pipeline) = handle.pipeline() {
            let names = factory_names(&pipeline);
            assert!(names.iter().any(|n| n == "openh264enc"), "{names:?}");
            inspected += 1;
        }
    }
    assert!(inspected > 0);
    task.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
