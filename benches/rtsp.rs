//! An IP camera's cost (`cargo bench --bench rtsp`): CPU and peak RSS of
//! `trickle-edge publish --source rtsp://…` passing the camera's H.264
//! through, against the same stream decoded and re-encoded with x264
//! (`--reencode`, i.e. `camera.passthrough = false`), in one run. The camera
//! is gst-rtsp-server in this process (the tests' `support::rtsp`), serving
//! 1280x720 30 fps at 2 Mbit/s with a 1 s GOP; only the agent's process is
//! measured.

#[allow(dead_code)] // the tests' kit: not all of it is used here
#[path = "../tests/support/rtsp.rs"]
mod rtsp;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rtsp::{RtspCamera, RtspCameraSpec};

const SECONDS: u64 = 20;
const BIN: &str = env!("CARGO_BIN_EXE_trickle-edge");

fn cpu_seconds(pid: u32) -> f64 {
    let (user, system) = trickle_edge::procfs::Proc::Pid(pid)
        .cpu_ticks()
        .unwrap_or((0, 0));
    // CLK_TCK is 100 on every Linux this runs on.
    (user + system) as f64 / 100.0
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Lets the agent run for SECONDS after 3 s of start-up; CPU %, peak RSS
/// (MB) and its closing `segments=… bytes=…` line, which shows it published.
fn measure(mut child: Child) -> (f64, f64, String) {
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(3));
    let (c0, t0) = (cpu_seconds(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(SECONDS));
    let cpu = cpu_seconds(pid) - c0;
    let wall = t0.elapsed().as_secs_f64();
    let hwm = trickle_edge::procfs::Proc::Pid(pid)
        .status_kib("VmHWM")
        .unwrap_or(0);
    let _ = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
    let _ = child.wait();
    let mut stderr = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
    let summary = stderr
        .lines()
        .rfind(|l| l.starts_with("segments="))
        .unwrap_or("no summary: the agent failed")
        .to_owned();
    (100.0 * cpu / wall, hwm as f64 / 1024.0, summary)
}

fn main() {
    let camera = RtspCamera::start(RtspCameraSpec {
        port: free_port(),
        credentials: None,
        width: 1280,
        height: 720,
        fps: 30,
        gop_frames: 30,
        bitrate_kbps: 2000,
    });
    let port = free_port();
    let mut server = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--channel", "cam"])
        .env("TRICKLE_EDGE_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    println!(
        "# RTSP camera (gst-rtsp-server, 1280x720 30 fps H.264, 2 Mbit/s, 1 s GOP) -> trickle-edge publish, {SECONDS} s each"
    );
    let mut results = Vec::new();
    for (mode, extra) in [
        ("passthrough", &[][..]),
        ("re-encode x264", &["--reencode", "--encoder", "x264"][..]),
    ] {
        let agent = Command::new(BIN)
            .args([
                "publish",
                &format!("http://127.0.0.1:{port}/ai/trickle/cam"),
            ])
            .args(["--source", &camera.url(false)])
            .args(["--width", "1280", "--height", "720", "--fps", "30"])
            .args(["--bitrate-kbps", "2000"])
            .args(extra)
            .env("TRICKLE_EDGE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (cpu, rss, summary) = measure(agent);
        println!("{mode:>15}: {cpu:5.1}% CPU, peak RSS {rss:5.1} MB | {summary}");
        results.push(cpu);
    }
    println!(
        "passthrough saves {:.1} CPU points ({:.0}% of the re-encoding agent's CPU)",
        results[1] - results[0],
        100.0 * (results[1] - results[0]) / results[1]
    );
    let _ = server.kill();
    let _ = server.wait();
    camera.stop();
}
