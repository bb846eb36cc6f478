//! `trickle-edge demo`: a trickle server, the reference worker and the agent
//! in one process, on the test camera, with a simulated GPIO line `ball-left`
//! driven by "ball in the left third" and a JSON Lines log of every fire.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::runtime::{AgentControl, AgentHandles, run};
use crate::config::{AgentConfig, ResolvedConfig};
use crate::worker::{WorkerConfig, WorkerHandle};

/// What the demo prints at the end (and tests read).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemoSummary {
    pub segments: u64,
    pub detections: u64,
    pub rule_fires: u64,
    /// Times `ball-left` went active.
    pub gpio_activations: u64,
    pub dropped_gops: u64,
}

/// The demo's config: test camera, worker job, `ball-left` rule and outputs.
pub fn demo_config(worker_url: &str, log_path: &std::path::Path) -> anyhow::Result<AgentConfig> {
    let text = format!(
        r#"
[camera]
source = "test"
width = 640
height = 360
# videotestsrc moves the ball per frame (a 200-frame cycle): at 30 fps it
# reaches the left third about 4 s after start, and every 6.7 s after that.
fps = 30

[encoder]
kind = "auto"
bitrate_kbps = 800
gop_seconds = 1.0

[job]
mode = "worker"
worker_url = "{worker_url}"
listen = "127.0.0.1:0"
channel_prefix = "demo"

[supervisor]
listen = "127.0.0.1:0"

[outputs.ball-left]
type = "gpio"
backend = "simulated"
line = "ball-left"
failsafe = "inactive"

[outputs.events]
type = "log"
path = "{log}"

[[rules]]
name = "ball-in-left-third"
match = {{ type = "detection", label = "ball", min_confidence = 0.3, zone = {{ rect = [0.0, 0.0, 0.333, 1.0] }} }}
hold = "700ms"
then = [{{ output = "ball-left", action = "hold" }}, {{ output = "events" }}]
"#,
        log = log_path.display()
    );
    Ok(toml::from_str(&text)?)
}

fn gpio_state(h: &AgentHandles) -> &'static str {
    match h.gpio.states_of("ball-left").last() {
        Some(true) => "ON ",
        _ => "off",
    }
}

/// Runs the demo for `duration` (or until Ctrl-C / SIGTERM) and returns its summary.
pub async fn run_demo(
    duration: Option<Duration>,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<DemoSummary> {
    let dir = std::env::temp_dir().join(format!("trickle-edge-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let log_path: PathBuf = dir.join("events.jsonl");
    let worker = WorkerHandle::start("127.0.0.1:0".parse()?, WorkerConfig::default()).await?;
    let config = demo_config(&worker.url(), &log_path)?;
    let resolved = ResolvedConfig {
        path: PathBuf::from("(built-in demo config)"),
        preset: None,
        config,
        token: None,
        warnings: Vec::new(),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let (_reload_tx, reload_rx) = mpsc::channel(1);
    let (ready_tx, ready_rx) = oneshot::channel();
    let agent = tokio::spawn(run(
        resolved,
        AgentControl {
            shutdown: stop_rx,
            reload: reload_rx,
        },
        Some(ready_tx),
    ));
    let handles = match ready_rx.await {
        Ok(h) => h,
        Err(_) => {
            // The agent ended before it was ready: report why.
            return match agent.await {
                Ok(Err(e)) => Err(e),
                _ => Err(anyhow::anyhow!("the agent stopped during start-up")),
            };
        }
    };
    let tty = std::io::stdout().is_terminal();
    writeln!(
        out,
        "trickle-edge demo: test camera -> trickle -> reference worker -> data channel -> rules -> GPIO `ball-left`"
    )?;
    if let Some(s) = &handles.server {
        writeln!(
            out,
            "trickle server: {}  (channels demo-in, demo-out, demo-control, demo-events, demo-data)",
            s.base_url()
        )?;
    }
    writeln!(
        out,
        "worker: {}   event log: {}",
        worker.url(),
        log_path.display()
    )?;
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_segments = 0;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
        let st = &handles.stats;
        let segments = st.media.segments_published.load(Ordering::Relaxed);
        let rate = segments - last_segments;
        last_segments = segments;
        let latency = st
            .data
            .item_to_effect
            .quantile(0.99)
            .map(|s| format!("{:.2} ms", s * 1e3))
            .unwrap_or_else(|| "-".into());
        let upload = st
            .media
            .segment_upload
            .quantile(0.5)
            .map(|s| format!("{:.0} ms", s * 1e3))
            .unwrap_or_else(|| "-".into());
        let line = format!(
            "t={:>3}s  segments {segments:>4} ({rate}/s, GOP upload p50 {upload})  detections {:>5}  rule fires {:>4}  item->action p99 {latency}  GPIO ball-left {}",
            started.elapsed().as_secs(),
            st.data.items.load(Ordering::Relaxed),
            st.data.effects.load(Ordering::Relaxed),
            gpio_state(&handles),
        );
        if tty {
            write!(out, "\r\x1b[2K{line}")?;
        } else {
            writeln!(out, "{line}")?;
        }
        out.flush()?;
        if duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
    }
    if tty {
        writeln!(out)?;
    }
    let _ = stop_tx.send(true);
    let result = agent.await;
    worker.shutdown().await;
    let st = &handles.stats;
    let summary = DemoSummary {
        segments: st.media.segments_published.load(Ordering::Relaxed),
        detections: st.data.items.load(Ordering::Relaxed),
        rule_fires: st.data.effects.load(Ordering::Relaxed),
        gpio_activations: handles
            .gpio
            .states_of("ball-left")
            .iter()
            .filter(|a| **a)
            .count() as u64,
        dropped_gops: st.dropped_gops(),
    };
    writeln!(
        out,
        "summary: segments={} detections={} rule_fires={} gpio_transitions={} dropped_gops={} (event log kept at {})",
        summary.segments,
        summary.detections,
        summary.rule_fires,
        summary.gpio_activations,
        summary.dropped_gops,
        log_path.display()
    )?;
    match result {
        Ok(Ok(())) => Ok(summary),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(anyhow::anyhow!("agent task failed: {e}")),
    }
}
