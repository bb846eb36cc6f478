//! The service loop in-process: reload and stop arrive as `ServiceSignal`s,
//! exactly as SIGHUP and SIGTERM become them, so the reload path is tested
//! without a process or a real signal. A refused config keeps the running
//! one; a good one swaps the rules; stop puts outputs in failsafe.

mod support;

use std::path::Path;

use support::time::{wait_until, within};
use support::tmp::temp_dir;
use tokio::sync::{mpsc, oneshot};
use trickle_edge::agent::service::{ConfigSource, ServiceSignal, run_service};
use trickle_edge::config::{LoadOptions, load_with};
use trickle_edge::worker::{WorkerConfig, WorkerHandle};

fn write_config(path: &Path, worker_url: &str, log: &Path, rule: &str) {
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
worker_url = "{worker_url}"
listen = "127.0.0.1:0"
channel_prefix = "svc"
[supervisor]
listen = "127.0.0.1:0"
[outputs.led]
type = "gpio"
backend = "simulated"
line = "led"
failsafe = "inactive"
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

/// A service started from a config file in its own directory, against an
/// in-process reference worker.
struct Started {
    config: std::path::PathBuf,
    log: std::path::PathBuf,
    worker: WorkerHandle,
    signals: mpsc::Sender<ServiceSignal>,
    handles: trickle_edge::agent::runtime::AgentHandles,
    service: tokio::task::JoinHandle<Result<(), trickle_edge::agent::service::ServiceError>>,
    /// Holds the config's and the log's directory while the service runs.
    _dir: support::tmp::TempDir,
}

async fn start(tag: &str, rule: &str) -> Started {
    let dir = temp_dir(tag);
    let config = dir.join("config.toml");
    let log = dir.join("events.jsonl");
    let worker = WorkerHandle::start(([127, 0, 0, 1], 0).into(), WorkerConfig::default())
        .await
        .unwrap();
    write_config(&config, &worker.url(), &log, rule);
    let source = ConfigSource {
        path: config.clone(),
        options: LoadOptions::default(),
    };
    let resolved = load_with(&config, &source.options).unwrap();
    let (signals, signals_rx) = mpsc::channel(4);
    let (ready_tx, ready_rx) = oneshot::channel();
    let service = tokio::spawn(run_service(resolved, source, signals_rx, Some(ready_tx)));
    let handles = within("agent ready", ready_rx).await.expect("agent starts");
    Started {
        config,
        log,
        worker,
        signals,
        handles,
        service,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_reload_keeps_the_running_config_and_a_good_one_swaps_the_rules() {
    let Started {
        config,
        log,
        worker,
        signals,
        handles,
        service,
        _dir,
    } = start("service-reload", "first-rule").await;
    wait_until("the first rule fires", || log_mentions(&log, "first-rule")).await;

    // A broken file first: refused, not counted as a reload.
    std::fs::write(&config, "[job]\nmode = \"worker\"\nworker_url = 7\n").unwrap();
    signals.send(ServiceSignal::Reload).await.unwrap();
    // Then a good one, handled after it (signals are taken in order).
    write_config(&config, &worker.url(), &log, "second-rule");
    signals.send(ServiceSignal::Reload).await.unwrap();
    wait_until("the reloaded rule fires", || {
        log_mentions(&log, "second-rule")
    })
    .await;
    let reloads = handles
        .stats
        .reloads
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(reloads, 1, "only the good config is applied");
    // Only the rule changed: the output was kept as it ran, so the line,
    // active since the first detection, never passed through failsafe.
    assert_eq!(
        handles.gpio.states_of("led"),
        [false, true],
        "the reload glitched the line"
    );
    assert!(
        !service.is_finished(),
        "a refused config must not stop the agent"
    );

    signals.send(ServiceSignal::Stop).await.unwrap();
    let stopped = within("the service stops", service).await.unwrap();
    assert!(stopped.is_ok(), "stop: {stopped:?}");
    assert_eq!(
        handles.gpio.states_of("led").last(),
        Some(&false),
        "the line ends in its failsafe state"
    );
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_signal_channel_stops_the_service() {
    let Started {
        worker,
        signals,
        service,
        _dir,
        ..
    } = start("service-closed", "r").await;
    drop(signals);
    let stopped = within("the service stops", service).await.unwrap();
    assert!(stopped.is_ok(), "stop: {stopped:?}");
    worker.shutdown().await;
}
