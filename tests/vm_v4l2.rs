//! V4L2 cameras on a real kernel: Debian's `vivid` virtual camera driver,
//! loaded inside the QEMU VM of `bash ci/vm-gpio.sh`, captured through the
//! real `v4l2:` camera source (v4l2src), encoded, cut into segments and
//! published to a trickle server on loopback; each segment fetched back must
//! decode on its own. Built only with `--features vm-tests`; outside
//! that VM every test fails, naming the script.

mod support;
mod vm;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use support::media::{camera, decode_alone, load, next_segment, read_segment};
use support::net::{start_server, test_config};
use support::time::{wait_until_for, within_for};
use trickle_edge::agent::media_path::{MediaPathStats, SegmentPublisher};
use trickle_edge::backoff::Backoff;
use trickle_edge::media::EncoderKind;
use trickle_edge::shutdown::{Shutdown, ShutdownTrigger};
use trickle_edge::trickle::{PublisherOptions, Subscriber, SubscriberOptions};

const W: u32 = 320;
const H: u32 = 180;
const FPS: u32 = 15;

/// The vivid platform device and driver (sysfs), for unbinding and binding.
const VIVID_DRIVER: &str = "/sys/bus/platform/drivers/vivid";

/// Loads vivid with one video capture node and returns that node, as
/// `/dev/videoN` (the one whose sysfs name says `vid-cap`).
fn load_vivid() -> PathBuf {
    let ok = Command::new("modprobe")
        .args(["vivid", "n_devs=1", "node_types=0x1"])
        .status()
        .expect("run modprobe");
    assert!(ok.success(), "modprobe vivid failed");
    capture_node().expect("vivid's capture node after modprobe")
}

fn capture_node() -> Option<PathBuf> {
    let dir = std::fs::read_dir("/sys/class/video4linux").ok()?;
    for e in dir.flatten() {
        let name = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
        if name.contains("vivid") && name.contains("vid-cap") {
            let node = Path::new("/dev").join(e.file_name());
            if node.exists() {
                return Some(node);
            }
        }
    }
    None
}

/// The card name the kernel reports for `node` (`v4l2-ctl --info`).
fn card_of(node: &Path) -> String {
    let out = Command::new("v4l2-ctl")
        .arg("-d")
        .arg(node)
        .arg("--info")
        .output()
        .expect("run v4l2-ctl");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Card type")
                .map(|r| r.trim_start_matches([' ', ':']).trim().to_string())
        })
        .unwrap_or_else(|| panic!("no card type in v4l2-ctl --info:\n{text}"))
}

/// What udev would make: `/dev/v4l/by-id/NAME` pointing at `node` (the VM
/// runs no udev).
fn by_id_link(node: &Path) -> PathBuf {
    let dir = Path::new("/dev/v4l/by-id");
    std::fs::create_dir_all(dir).unwrap();
    let link = dir.join("platform-vivid-video-index0");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(node, &link).unwrap();
    link
}

/// The camera on `source` publishes to a trickle server on loopback; two
/// segments fetched back from it each decode alone.
async fn segments_decode_alone(source: &str) {
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
    let (cam, queue) = camera(source, W, H, FPS, EncoderKind::X264);
    let (_agent, shutdown) = ShutdownTrigger::new();
    let cam_task = tokio::spawn(cam.run(Shutdown::never()));
    let publisher = SegmentPublisher {
        queue,
        url: url.clone(),
        options: PublisherOptions::default(),
        stats: Arc::new(MediaPathStats::default()),
        close_on_exit: false,
        watch: None,
    }
    .spawn(&shutdown);
    for i in 0..2 {
        let seg = within_for(
            Duration::from_secs(120),
            "a segment from the server",
            sub.next_segment(),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(seg.content_type.as_deref(), Some("video/MP2T"));
        let bytes = seg.collect(8 << 20).await.unwrap();
        let decoded = tokio::task::spawn_blocking(move || decode_alone(&bytes))
            .await
            .unwrap();
        assert!(
            decoded.frames > 0,
            "{source}: segment {i} decodes alone: {decoded:?}"
        );
        println!(
            "{source}: segment {i} from the trickle server: {} frames decoded alone",
            decoded.frames
        );
    }
    publisher.stop(Duration::from_secs(5)).await;
    cam_task.abort();
    let _ = cam_task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vivid_by_path_by_id_and_by_card_gives_segments_that_decode_alone() {
    vm::inside_vm();
    let node = load_vivid();
    let card = card_of(&node);
    let link = by_id_link(&node);
    for source in [
        format!("v4l2:{}", node.display()),
        format!("v4l2:{}", link.display()),
        format!("v4l2:card={card}"),
    ] {
        segments_decode_alone(&source).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_that_disappears_and_returns_is_rebuilt() {
    vm::inside_vm();
    let node = load_vivid();
    let card = card_of(&node);
    let (cam, mut queue) = camera(&format!("v4l2:card={card}"), W, H, FPS, EncoderKind::X264);
    let cam = cam.with_backoff(Backoff::new(
        Duration::from_millis(100),
        Duration::from_secs(1),
    ));
    let handle = cam.handle();
    let task = tokio::spawn(cam.run(Shutdown::never()));
    let mut seg = next_segment(&mut queue).await;
    assert_eq!(seg.generation, 1);
    read_segment(&mut seg).await;

    // The device goes away (its driver unbound, as on a USB unplug) …
    let dev = std::fs::read_dir(VIVID_DRIVER)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("vivid."))
        .expect("a vivid.N device bound to the driver");
    std::fs::write(Path::new(VIVID_DRIVER).join("unbind"), &dev).unwrap();
    let stats = handle.stats();
    wait_until_for(
        Duration::from_secs(60),
        "the camera notices the device is gone",
        || load(&stats.pipeline_failures) >= 1,
    )
    .await;
    // … and comes back.
    std::fs::write(Path::new(VIVID_DRIVER).join("bind"), &dev).unwrap();
    let mut seg = loop {
        let mut seg = next_segment(&mut queue).await;
        if seg.generation > 1 {
            break seg;
        }
        seg.collect().await;
    };
    let bytes = read_segment(&mut seg).await;
    let decoded = tokio::task::spawn_blocking(move || decode_alone(&bytes))
        .await
        .unwrap();
    assert!(decoded.frames > 0, "{decoded:?}");
    println!(
        "device back: camera rebuilt (generation {}, {} failures, {} starts)",
        seg.generation,
        load(&stats.pipeline_failures),
        load(&stats.pipeline_starts)
    );
    task.abort();
}
