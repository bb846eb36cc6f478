//! `trickle-edge run` as systemd runs it, in a real process: SIGHUP reloads
//! a changed rule without a restart, SIGTERM stops the job, puts outputs in
//! failsafe and exits 0 (the CLI itself fails if that takes over 5 s).
//! Also `demo --duration 10`.

mod support;

use std::path::Path;
use std::process::Stdio;

use support::http::simple;
use support::net::free_port;
use support::time::{wait_until, within};
use support::tmp::temp_dir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_trickle-edge");

fn write_config(path: &Path, worker: u16, trickle: u16, supervisor: u16, log: &Path, rule: &str) {
    let text = format!(
        r#"
[camera]
source = "test"
width = 320
height = 240
fps = 30
[encoder]
bitrate_kbps = 500
[job]
mode = "worker"
worker_url = "http://127.0.0.1:{worker}"
listen = "127.0.0.1:{trickle}"
channel_prefix = "sig"
[supervisor]
listen = "127.0.0.1:{supervisor}"
[outputs.led]
type = "gpio"
backend = "simulated"
line = "led"
[outputs.events]
type = "log"
path = "{log}"
fsync_interval = "100ms"
[[rules]]
name = "{rule}"
match = {{ type = "detection", label = "ball" }}
then = [{{ output = "led", action = "set" }}, {{ output = "events" }}]
"#,
        log = log.display()
    );
    std::fs::write(path, text).unwrap();
}

fn log_mentions(log: &Path, rule: &str) -> bool {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .any(|l| l.contains(&format!("\"rule\":\"{rule}\"")))
}

/// The worker's stream state from `GET /api/stream/status`, lowercased.
async fn worker_state(addr: std::net::SocketAddr) -> String {
    let (h, body) = simple(addr, "GET", "/api/stream/status", &[]).await;
    assert_eq!(h.status, 200);
    let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
    status["state"]
        .as_str()
        .unwrap_or_else(|| panic!("no state in {status}"))
        .to_lowercase()
}

fn signal(child: &Child, sig: &str) {
    let pid = child.id().expect("child running").to_string();
    let ok = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// One test of this binary at a time: the SIGHUP test picks its ports with
/// `free_port` (bind, then release), and a demo started meanwhile binds
/// ephemeral ports that can land on one of them.
static PORTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_a_changed_rule_and_sigterm_stops_cleanly() {
    let _ports = PORTS.lock().await;
    let dir = temp_dir("signals");
    let (wp, tp, sp) = (free_port(), free_port(), free_port());
    let cfg = dir.join("agent.toml");
    let log = dir.join("events.jsonl");
    write_config(&cfg, wp, tp, sp, &log, "first-rule");

    let mut worker = Command::new(BIN)
        .args(["worker", "--listen", &format!("127.0.0.1:{wp}")])
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut agent = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&cfg)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stderr = agent.stderr.take().unwrap();
    let lines = tokio::spawn(async move {
        let mut out = Vec::new();
        let mut r = BufReader::new(stderr).lines();
        while let Ok(Some(l)) = r.next_line().await {
            out.push(l);
        }
        out
    });

    wait_until("the first rule fires", || log_mentions(&log, "first-rule")).await;

    // Change the rule's name and reload: the agent keeps running (same pid,
    // no new job) and the new rule fires.
    write_config(&cfg, wp, tp, sp, &log, "second-rule");
    signal(&agent, "-HUP");
    wait_until("the reloaded rule fires", || {
        log_mentions(&log, "second-rule")
    })
    .await;
    assert!(
        agent.try_wait().unwrap().is_none(),
        "reload must not restart the process"
    );
    let (h, body) = simple(
        format!("127.0.0.1:{sp}").parse().unwrap(),
        "GET",
        "/metrics",
        &[],
    )
    .await;
    assert_eq!(h.status, 200);
    assert!(String::from_utf8_lossy(&body).contains("trickle_edge_job_restarts_total 0"));

    // SIGTERM: exit 0, and the worker's stream is stopped by the agent.
    let worker_addr = format!("127.0.0.1:{wp}").parse().unwrap();
    assert_eq!(
        worker_state(worker_addr).await,
        "running",
        "the job runs at the worker before SIGTERM"
    );
    signal(&agent, "-TERM");
    let status = within("agent exit", agent.wait()).await.unwrap();
    assert!(status.success(), "agent exit status {status}");
    let stderr = lines.await.unwrap().join("\n");
    // Failsafe is applied at start-up too; the last one must follow the stop.
    let stopping = stderr
        .find("stopping: outputs to failsafe")
        .expect("stop sequence logged");
    let failsafe = stderr
        .rfind("GPIO failsafe applied")
        .expect("failsafe logged");
    assert!(
        stopping < failsafe,
        "failsafe applied during the stop sequence:\n{stderr}"
    );
    // Only `POST /api/stream/stop` makes the worker idle: without it, the
    // stream whose ingest channel went away with the agent reads "ended".
    assert_eq!(
        worker_state(worker_addr).await,
        "idle",
        "the agent's stop request reached the worker"
    );
    worker.kill().await.ok();
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_for_ten_seconds_exits_zero_with_a_gpio_transition() {
    let _ports = PORTS.lock().await;
    let out = within(
        "demo exit",
        Command::new(BIN)
            .args(["demo", "--duration", "10"])
            .stderr(Stdio::null())
            .output(),
    )
    .await
    .unwrap();
    assert!(out.status.success(), "demo exit status {}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("summary:"))
        .expect("summary line");
    let transitions: u64 = summary
        .split_whitespace()
        .find_map(|w| w.strip_prefix("gpio_transitions="))
        .and_then(|v| v.parse().ok())
        .expect("gpio_transitions in the summary");
    assert!(transitions >= 1, "{summary}");
}

/// With no GStreamer plugin at all (an empty plugin path and registry) the
/// camera cannot start: the demo must still end at `--duration`, say why on
/// the live view and in the summary, and exit non-zero instead of printing
/// `segments=0` and succeeding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_whose_camera_cannot_start_ends_on_time_and_fails_naming_the_reason() {
    let _ports = PORTS.lock().await;
    let dir = temp_dir("demo-noplugins");
    std::fs::create_dir(dir.join("plugins")).unwrap();
    let out = within(
        "demo exit",
        Command::new(BIN)
            .args(["demo", "--duration", "3"])
            .env("GST_PLUGIN_SYSTEM_PATH", dir.join("plugins"))
            .env("GST_PLUGIN_PATH", dir.join("plugins"))
            .env("GST_REGISTRY", dir.join("registry.bin"))
            .output(),
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("summary:"))
        .unwrap_or_else(|| panic!("summary line:\n{stdout}"));
    assert!(summary.contains(" segments=0 "), "{summary}");
    assert!(
        stdout.contains("!! camera: no working H.264 encoder found"),
        "the live view names the camera's problem:\n{stdout}"
    );
    assert!(
        stdout.contains("problem: camera: no working H.264 encoder found"),
        "{stdout}"
    );
    assert!(
        stderr.contains(
            "demo failed: no media segment was published (camera: no working H.264 encoder found"
        ),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
