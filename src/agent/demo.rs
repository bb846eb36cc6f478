//! `trickle-edge demo`: a trickle server, the reference worker and the agent
//! in one process, on the test camera, with a simulated GPIO line `ball-left`
//! driven by "ball in the left third" and a JSON Lines log of every fire.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::runtime::{AgentControl, AgentHandles, JobStartStatus, run};
use crate::config::{AgentConfig, ResolvedConfig};
use crate::shutdown::ShutdownTrigger;
use crate::worker::{WorkerConfig, WorkerHandle};

/// What the demo prints at the end (and tests read).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemoSummary {
    /// How long the demo ran.
    pub ran_for: Duration,
    /// Media segments the trickle server confirmed.
    pub segments: u64,
    /// Items decoded from the data and events channels (detections, status).
    pub data_items: u64,
    /// Times the rule fired.
    pub rule_fires: u64,
    /// Effects queued on outputs (two per fire here: GPIO and log, plus releases).
    pub effects: u64,
    /// Times `ball-left` went active.
    pub gpio_activations: u64,
    /// Level changes written to `ball-left` (on and off).
    pub gpio_transitions: u64,
    pub dropped_gops: u64,
    /// Why a stage was not working when the demo ended, one line each.
    pub problems: Vec<String>,
}

/// A demo this long has seen the ball enter the left third at least once
/// (about 4 s after the first frame, then every 6.7 s; see [`demo_config`]).
pub const GPIO_EXPECTED_AFTER: Duration = Duration::from_secs(10);

impl DemoSummary {
    /// The stages that never worked, as reasons; empty when the demo did
    /// what it shows. `demo` exits non-zero when this is not empty.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        let why = |out: &mut Vec<String>, what: &str| {
            let mut line = what.to_string();
            if !self.problems.is_empty() {
                line.push_str(" (");
                line.push_str(&self.problems.join("; "));
                line.push(')');
            }
            out.push(line);
        };
        if self.segments == 0 {
            why(&mut out, "no media segment was published");
        }
        if self.data_items == 0 {
            why(&mut out, "no data item was received from the worker");
        }
        if self.ran_for >= GPIO_EXPECTED_AFTER && self.gpio_transitions == 0 {
            why(
                &mut out,
                &format!("no GPIO transition in {} s", self.ran_for.as_secs()),
            );
        }
        out
    }
}

/// Why the demo could not run at all (a demo that runs but sees nothing
/// reports that in its [`DemoSummary`] instead).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo: {0}")]
    Io(#[from] std::io::Error),
    #[error("demo: cannot start the reference worker: {0}")]
    Worker(#[from] crate::worker::WorkerError),
    #[error("demo: built-in config does not parse: {0}")]
    Config(#[from] toml::de::Error),
}

/// The demo's config: test camera, worker job, `ball-left` rule and outputs.
pub fn demo_config(worker_url: &str, log_path: &std::path::Path) -> Result<AgentConfig, DemoError> {
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

/// The stages' current problems, one line each.
fn problems(job_start: &JobStartStatus, handles: Option<&AgentHandles>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(e) = job_start.error() {
        out.push(format!("job: {e}"));
    }
    if let Some(h) = handles {
        if let Some(e) = h.stats.camera_error() {
            out.push(format!("camera: {e}"));
        }
        if let Some(e) = h.stats.media.publish_error() {
            out.push(format!("publish: {e}"));
        }
    }
    out
}

/// Runs the demo for `duration` (or until Ctrl-C / SIGTERM) and returns its
/// summary. `duration` bounds the whole run, start-up included, whatever
/// fails: a job that never starts still ends the demo on time.
pub async fn run_demo(
    duration: Option<Duration>,
    out: &mut (dyn Write + Send),
) -> Result<DemoSummary, DemoError> {
    let started = Instant::now();
    let deadline = duration.map(|d| started + d);
    let dir = std::env::temp_dir().join(format!("trickle-edge-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let log_path: PathBuf = dir.join("events.jsonl");
    let worker = WorkerHandle::start(([127, 0, 0, 1], 0).into(), WorkerConfig::default()).await?;
    let config = demo_config(&worker.url(), &log_path)?;
    let resolved = ResolvedConfig {
        path: PathBuf::from("(built-in demo config)"),
        preset: None,
        config,
        token: None,
        warnings: Vec::new(),
    };
    let (stop, shutdown) = ShutdownTrigger::new();
    let (_reload_tx, reload_rx) = mpsc::channel(1);
    let (ready_tx, mut ready_rx) = oneshot::channel();
    let job_start = Arc::new(JobStartStatus::default());
    let mut agent = tokio::spawn(run(
        resolved,
        AgentControl {
            shutdown,
            reload: reload_rx,
            job_start: job_start.clone(),
        },
        Some(ready_tx),
    ));
    let tty = std::io::stdout().is_terminal();
    writeln!(
        out,
        "trickle-edge demo: test camera -> trickle -> reference worker -> data channel -> rules -> GPIO `ball-left`"
    )?;
    writeln!(
        out,
        "worker: {}   event log: {}",
        worker.url(),
        log_path.display()
    )?;
    let mut handles: Option<AgentHandles> = None;
    // A oneshot must not be polled again once it answered (even with Err).
    let mut ready_answered = false;
    let mut agent_result = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_segments = 0;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = sleep_until_opt(deadline) => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            h = &mut ready_rx, if !ready_answered => {
                ready_answered = true;
                if let Ok(h) = h {
                    if let Some(s) = &h.server {
                        writeln!(
                            out,
                            "{}trickle server: {}  (channels demo-<n>-in, -out, -control, -events, -data; n counts job starts)",
                            if tty { "\r\x1b[2K" } else { "" },
                            s.base_url()
                        )?;
                    }
                    if let Some(addr) = h.supervisor_addr {
                        writeln!(
                            out,
                            "{}status page: http://{addr}/  (live frame, boxes, zones, outputs, fires)",
                            if tty { "\r\x1b[2K" } else { "" },
                        )?;
                    }
                    handles = Some(h);
                }
                continue;
            }
            r = &mut agent, if agent_result.is_none() => {
                // The agent ended by itself: that is a failure to report.
                agent_result = Some(r);
                break;
            }
        }
        let line = match &handles {
            None => {
                let why = job_start.error().unwrap_or_else(|| "starting".into());
                format!(
                    "t={:>3}s  waiting for the job (attempt {}): {why}",
                    started.elapsed().as_secs(),
                    job_start.attempts()
                )
            }
            Some(h) => {
                let st = &h.stats;
                let segments = st.media.segments_published.load(Ordering::Relaxed);
                let rate = segments - last_segments;
                last_segments = segments;
                let latency = ms(st.data.item_to_effect.quantile(0.99), 2);
                let upload = ms(st.media.segment_upload.quantile(0.5), 0);
                let mut line = format!(
                    "t={:>3}s  segments {segments:>4} ({rate}/s, GOP upload p50 {upload})  data items {:>5}  rule fires {:>4}  item->action p99 {latency}  GPIO ball-left {}",
                    started.elapsed().as_secs(),
                    st.data.items.load(Ordering::Relaxed),
                    st.data.rule_fires.load(Ordering::Relaxed),
                    gpio_state(h),
                );
                for p in problems(&job_start, Some(h)) {
                    line.push_str("  !! ");
                    line.push_str(&p);
                }
                line
            }
        };
        if tty {
            write!(out, "\r\x1b[2K{line}")?;
        } else {
            writeln!(out, "{line}")?;
        }
        out.flush()?;
    }
    if tty {
        writeln!(out)?;
    }
    let problems_at_end = problems(&job_start, handles.as_ref());
    stop.trigger();
    let mut summary_problem = None;
    let result = match agent_result {
        Some(r) => r,
        // The agent's own stop is bounded (4 s); this bounds the rest.
        None => match tokio::time::timeout(Duration::from_secs(8), &mut agent).await {
            Ok(r) => r,
            Err(_) => {
                agent.abort();
                summary_problem = Some("agent: did not stop within 8 s".to_string());
                Ok(Ok(()))
            }
        },
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), worker.shutdown()).await;
    let mut summary = DemoSummary {
        ran_for: started.elapsed(),
        problems: problems_at_end,
        ..Default::default()
    };
    if let Some(h) = &handles {
        let st = &h.stats;
        let states = h.gpio.states_of("ball-left");
        summary.segments = st.media.segments_published.load(Ordering::Relaxed);
        summary.data_items = st.data.items.load(Ordering::Relaxed);
        summary.rule_fires = st.data.rule_fires.load(Ordering::Relaxed);
        summary.effects = st.data.effects.load(Ordering::Relaxed);
        summary.gpio_activations = states.iter().filter(|a| **a).count() as u64;
        summary.gpio_transitions = states.windows(2).filter(|w| w[0] != w[1]).count() as u64;
        summary.dropped_gops = st.dropped_gops();
    }
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => summary.problems.push(format!(
            "agent: {}",
            crate::trickle::client::error_chain(&e)
        )),
        Err(e) => summary.problems.push(format!("agent task failed: {e}")),
    }
    summary.problems.extend(summary_problem);
    writeln!(
        out,
        "summary: segments={} data_items={} rule_fires={} effects={} gpio_activations={} gpio_transitions={} dropped_gops={} ran_for={:.1}s (event log kept at {})",
        summary.segments,
        summary.data_items,
        summary.rule_fires,
        summary.effects,
        summary.gpio_activations,
        summary.gpio_transitions,
        summary.dropped_gops,
        summary.ran_for.as_secs_f64(),
        log_path.display()
    )?;
    if let Some(h) = &handles {
        for (name, c) in h.stats.outputs().counters() {
            writeln!(out, "output {name}: {c}")?;
        }
    }
    for p in &summary.problems {
        writeln!(out, "problem: {p}")?;
    }
    Ok(summary)
}

/// Seconds as milliseconds with `decimals` places, or `-` before any sample.
fn ms(seconds: Option<f64>, decimals: usize) -> String {
    seconds.map_or_else(|| "-".into(), |s| format!("{:.*} ms", decimals, s * 1e3))
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn working(ran_for: u64) -> DemoSummary {
        DemoSummary {
            ran_for: Duration::from_secs(ran_for),
            segments: 10,
            data_items: 300,
            rule_fires: 1,
            effects: 2,
            gpio_activations: 1,
            gpio_transitions: 2,
            ..Default::default()
        }
    }

    #[test]
    fn a_stage_that_never_worked_is_a_failure_with_its_reason() {
        assert!(working(10).failures().is_empty());
        let no_media = DemoSummary {
            segments: 0,
            problems: vec!["camera: no encoder".into()],
            ..working(10)
        };
        assert_eq!(
            no_media.failures(),
            ["no media segment was published (camera: no encoder)"]
        );
        let no_data = DemoSummary {
            data_items: 0,
            ..working(10)
        };
        assert_eq!(
            no_data.failures(),
            ["no data item was received from the worker"]
        );
    }

    #[test]
    fn no_gpio_transition_fails_only_a_run_long_enough_to_see_one() {
        let quiet = |secs| DemoSummary {
            gpio_activations: 0,
            gpio_transitions: 0,
            ..working(secs)
        };
        assert!(quiet(9).failures().is_empty());
        assert_eq!(quiet(10).failures(), ["no GPIO transition in 10 s"]);
    }
}
