//! Camera publishing cost (`cargo bench --bench media`): CPU and peak RSS of
//! `trickle-edge publish --source test` at 1280x720 30 fps into a local
//! trickle server, against the same GStreamer pipeline run by gst-launch-1.0
//! into /dev/null, for x264 and openh264, in one run; plus keyframe → wire
//! latency and process start → first segment published.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Seconds measured per process; `MEDIA_SECONDS` shortens it (bench/run --quick).
fn seconds() -> u64 {
    std::env::var("MEDIA_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}
const BIN: &str = env!("CARGO_BIN_EXE_trickle-edge");

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn cpu_seconds(pid: u32) -> f64 {
    let (user, system) = trickle_edge::procfs::Proc::Pid(pid)
        .cpu_ticks()
        .unwrap_or((0, 0));
    (user + system) as f64 / clk_tck()
}

fn hwm_kb(pid: u32) -> u64 {
    trickle_edge::procfs::Proc::Pid(pid)
        .status_kib("VmHWM")
        .unwrap_or(0)
}

fn interrupt(child: &Child) {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
}

struct Sample {
    cpu_pct: f64,
    hwm_mb: f64,
}

/// Lets a process run for `seconds()`, samples CPU and peak RSS, stops it.
fn measure(mut child: Child) -> (Sample, Child) {
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(2)); // skip start-up
    let (c0, t0) = (cpu_seconds(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(seconds()));
    let cpu = cpu_seconds(pid) - c0;
    let wall = t0.elapsed().as_secs_f64();
    let hwm = hwm_kb(pid);
    interrupt(&child);
    let _ = child.try_wait();
    (
        Sample {
            cpu_pct: 100.0 * cpu / wall,
            hwm_mb: hwm as f64 / 1024.0,
        },
        child,
    )
}

fn gst_launch(encoder: &str) -> Child {
    let enc = match encoder {
        "x264" => {
            "x264enc bitrate=2000 key-int-max=30 speed-preset=superfast tune=zerolatency option-string=scenecut=0"
        }
        _ => {
            "openh264enc bitrate=2000000 rate-control=bitrate gop-size=30 scene-change-detection=false"
        }
    };
    let pipeline = format!(
        "videotestsrc pattern=ball is-live=true ! video/x-raw,format=I420,width=1280,height=720,framerate=30/1 ! clockoverlay valignment=top ! timeoverlay valignment=bottom ! videoconvert ! videoscale ! videorate ! video/x-raw,width=1280,height=720,framerate=30/1 ! {enc} ! h264parse config-interval=-1 ! mpegtsmux ! filesink location=/dev/null"
    );
    Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split_whitespace())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gst-launch-1.0 (package gstreamer1.0-tools)")
}

fn main() {
    let port = 29392;
    let mut server = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--channel",
            "cam",
        ])
        .env("TRICKLE_EDGE_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    println!(
        "# camera publishing, 1280x720 30 fps test source, 2 Mbit/s, 1 s GOP, {} s each",
        seconds()
    );
    for encoder in ["x264", "openh264"] {
        let spawned = Instant::now();
        let mut agent = Command::new(BIN)
            .args([
                "publish",
                &format!("http://127.0.0.1:{port}/ai/trickle/cam"),
                "--source",
                "test",
                "--width",
                "1280",
                "--height",
                "720",
                "--fps",
                "30",
                "--encoder",
                encoder,
                "--bitrate-kbps",
                "2000",
            ])
            .env("TRICKLE_EDGE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Start-up: time to the "first segment published" line.
        let stderr = agent.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send((Instant::now(), line));
            }
        });
        let (ours, mut agent) = measure(agent);
        let _ = agent.wait();
        let lines: Vec<(Instant, String)> = rx.try_iter().collect();
        let first = lines
            .iter()
            .find(|(_, l)| l.contains("first segment published"))
            .map(|(t, _)| t.duration_since(spawned).as_secs_f64());
        let summary = lines
            .iter()
            .rev()
            .find(|(_, l)| l.starts_with("segments="))
            .map(|(_, l)| l.clone())
            .unwrap_or_default();
        let field = |k: &str| {
            summary
                .split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .unwrap_or("?")
                .to_string()
        };

        let (bare, mut gst) = measure(gst_launch(encoder));
        let _ = gst.wait();
        println!(
            "{encoder:>9}: trickle-edge publish {:5.1}% CPU, peak RSS {:5.1} MB | gst-launch-1.0 alone {:5.1}% CPU, peak RSS {:5.1} MB | agent adds {:+.1} CPU points ({:+.1}%), {:+.1} MB",
            ours.cpu_pct,
            ours.hwm_mb,
            bare.cpu_pct,
            bare.hwm_mb,
            ours.cpu_pct - bare.cpu_pct,
            100.0 * (ours.cpu_pct - bare.cpu_pct) / bare.cpu_pct,
            ours.hwm_mb - bare.hwm_mb
        );
        println!(
            "{encoder:>9}: keyframe at appsink -> first byte to the HTTP connection p50 {} ms, p99 {} ms; start -> first segment published {}",
            field("keyframe_to_wire_ms_p50="),
            field("keyframe_to_wire_ms_p99="),
            first
                .map(|s| format!("{s:.2} s"))
                .unwrap_or_else(|| "not seen".into())
        );
        // For bench/run: the same numbers, one key=value line.
        println!(
            "BENCH media encoder={encoder} ours_cpu_pct={:.1} ours_hwm_mb={:.1} bare_cpu_pct={:.1} bare_hwm_mb={:.1} keyframe_to_wire_p50_ms={} keyframe_to_wire_p99_ms={} first_segment_s={}",
            ours.cpu_pct,
            ours.hwm_mb,
            bare.cpu_pct,
            bare.hwm_mb,
            field("keyframe_to_wire_ms_p50="),
            field("keyframe_to_wire_ms_p99="),
            first
                .map(|s| format!("{s:.2}"))
                .unwrap_or_else(|| "NaN".into())
        );
    }
    let _ = server.kill();
    let _ = server.wait();
}
