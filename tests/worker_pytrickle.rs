//! `trickle-edge run` against a real pytrickle 0.1.6 worker
//! (`tests/interop/pytrickle_worker.py`: a `StreamServer` and a
//! `FrameProcessor` that finds the test camera's ball and publishes one
//! detection per frame through the stream client's `publish_data`).
//! `ci/test.sh` makes the venv (`ci/pytrickle-venv.sh`) and exports
//! `TRICKLE_EDGE_PYTRICKLE_PYTHON`; without it the tests fail, never skip.
//!
//! Also, without Python: a worker that answers 404 on every start path
//! gives an error that names the paths tried.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use support::http::{post, simple};
use support::net::{free_port, start_server, test_config};
use support::time::{PATIENCE, wait_for_some, wait_until, wait_until_for, within};
use support::tmp::temp_dir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use trickle_edge::config::{JobMode, WorkerJob};
use trickle_edge::job::JobRunner;
use trickle_edge::media::CameraConfig;
use trickle_edge::trickle::ClientOptions;

const BIN: &str = env!("CARGO_BIN_EXE_trickle-edge");

/// The Python that has pytrickle 0.1.6: `TRICKLE_EDGE_PYTRICKLE_PYTHON`, or
/// else the venv `ci/pytrickle-venv.sh` makes under `target/`. Without
/// either the test fails: passing without the worker would test nothing.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("TRICKLE_EDGE_PYTRICKLE_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pytrickle-venv/bin/python");
    assert!(
        venv.exists(),
        "pytrickle 0.1.6 (the real worker) is missing: TRICKLE_EDGE_PYTRICKLE_PYTHON is unset and \
         target/pytrickle-venv does not exist. `bash ci/test.sh` installs it and runs every test; \
         or `export TRICKLE_EDGE_PYTRICKLE_PYTHON=$(bash ci/pytrickle-venv.sh)`"
    );
    venv
}

/// One test at a time: ports are picked with `free_port` (bind, release),
/// and two agents plus two torch processes would crowd two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A process whose stdout (or stderr) lines are collected as they come.
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn follow(stream: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> Self {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        tokio::spawn(async move {
            let mut r = BufReader::new(stream).lines();
            while let Ok(Some(l)) = r.next_line().await {
                sink.lock().unwrap().push(l);
            }
        });
        Self(lines)
    }

    fn starting_with(&self, prefix: &str) -> Vec<String> {
        let lines = self.0.lock().unwrap();
        lines
            .iter()
            .filter(|l| l.starts_with(prefix))
            .cloned()
            .collect()
    }

    fn all(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

struct Worker {
    child: Child,
    out: Lines,
    addr: SocketAddr,
}

/// Starts the pytrickle worker, with `route_prefix="/api"` when `api`, and
/// waits for it to listen.
async fn start_worker(api: bool) -> Worker {
    let port = free_port();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/pytrickle_worker.py");
    let mut cmd = Command::new(python());
    cmd.arg(script).arg(port.to_string());
    if api {
        cmd.arg("--api");
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the pytrickle worker");
    let out = Lines::follow(child.stdout.take().unwrap());
    // Importing torch takes a while on a busy machine.
    wait_until_for(PATIENCE * 2, "the pytrickle worker listens", || {
        !out.starting_with("READY").is_empty()
    })
    .await;
    Worker {
        child,
        out,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    }
}

struct Agent {
    child: Child,
    err: Lines,
    supervisor: SocketAddr,
    /// The agent's trickle server port, kept for a rewritten config.
    trickle: u16,
    config: PathBuf,
    log: PathBuf,
}

/// Pipeline-dead timeout: pytrickle sends a heartbeat event every 10 s.
const DEAD_AFTER: &str = "15s";

#[allow(clippy::too_many_arguments)]
fn write_config(
    path: &Path,
    worker: SocketAddr,
    trickle: u16,
    supervisor: u16,
    log: &Path,
    label: &str,
    dead_after: &str,
) {
    let text = format!(
        r#"
[camera]
source = "test"
width = 320
height = 240
fps = 15
[encoder]
bitrate_kbps = 500
[job]
mode = "worker"
worker_url = "http://{worker}"
listen = "127.0.0.1:{trickle}"
channel_prefix = "pt"
params = {{ label = "{label}" }}
[supervisor]
listen = "127.0.0.1:{supervisor}"
pipeline_dead_after = "{dead_after}"
keepalive_interval = "1s"
[outputs.led]
type = "gpio"
backend = "simulated"
line = "led"
[outputs.events]
type = "log"
path = "{log}"
fsync_interval = "100ms"
[[rules]]
name = "ball-seen"
match = {{ type = "detection", label = "ball" }}
then = [{{ output = "led", action = "set" }}, {{ output = "events" }}]
[[rules]]
name = "cup-seen"
match = {{ type = "detection", label = "cup" }}
then = [{{ output = "events" }}]
"#,
        log = log.display()
    );
    std::fs::write(path, text).unwrap();
}

async fn start_agent(dir: &Path, worker: SocketAddr, dead_after: &str) -> Agent {
    let (trickle, supervisor) = (free_port(), free_port());
    let config = dir.join("agent.toml");
    let log = dir.join("events.jsonl");
    write_config(
        &config, worker, trickle, supervisor, &log, "ball", dead_after,
    );
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let err = Lines::follow(child.stderr.take().unwrap());
    Agent {
        child,
        err,
        supervisor: SocketAddr::from(([127, 0, 0, 1], supervisor)),
        trickle,
        config,
        log,
    }
}

/// The `item.payload`s the log output wrote for `rule`.
fn logged(log: &Path, rule: &str) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["rule"] == rule)
        .map(|v| v["item"]["payload"].clone())
        .collect()
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

/// One counter from the agent's `/metrics`.
async fn metric(addr: SocketAddr, name: &str) -> f64 {
    let (h, body) = simple(addr, "GET", "/metrics", &[]).await;
    assert_eq!(h.status, 200);
    let text = String::from_utf8(body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

/// The worker's `GET <prefix>/stream/status`.
async fn worker_status(w: &Worker, prefix: &str) -> Value {
    let (h, body) = simple(w.addr, "GET", &format!("{prefix}/stream/status"), &[]).await;
    assert_eq!(h.status, 200);
    serde_json::from_slice(&body).unwrap()
}

/// SIGTERM to the agent: it exits 0 and leaves the worker idle; then the
/// worker exits on its own SIGTERM, which it does not when its stream was
/// stopped while an ingest segment still streamed.
async fn stop_both(mut agent: Agent, mut worker: Worker, prefix: &str) {
    signal(&agent.child, "-TERM");
    let status = within("agent exit", agent.child.wait()).await.unwrap();
    assert!(
        status.success(),
        "agent exit status {status}:\n{}",
        agent.err.all()
    );
    // The stream no longer runs: its client is gone (`client_active` false)
    // or its loops ended (`client_running` false). pytrickle's own
    // bookkeeping can keep `client_active` when the ingest's end already
    // stopped the client and the stop request only cancels what is left.
    let s = worker_status(&worker, prefix).await;
    assert!(
        s["client_active"] == false || s["client_running"] == false,
        "the worker's stream is stopped: {s}"
    );
    signal(&worker.child, "-TERM");
    let status = within("the worker exits on SIGTERM", worker.child.wait())
        .await
        .unwrap();
    assert!(status.success(), "worker exit status {status}");
    assert_eq!(worker.out.starting_with("EXITING").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_routes_detections_reach_a_rule_and_a_reload_sends_params_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = temp_dir("pytrickle-default");
    let worker = start_worker(false).await;
    let agent = start_agent(&dir, worker.addr, DEAD_AFTER).await;

    wait_until("a detection fires the rule", || {
        !logged(&agent.log, "ball-seen").is_empty()
    })
    .await;
    // The agent found pytrickle's default `/stream/start` and told it the
    // camera's size, so frames reach the processor unscaled.
    let first = &logged(&agent.log, "ball-seen")[0];
    assert_eq!(
        (&first["frame_w"], &first["frame_h"]),
        (&320.into(), &240.into()),
        "{first}"
    );
    assert_eq!(first["start_params"]["fps"], 15, "{first}");
    // The ball is a disc: its box is about as wide as it is tall (in pixels).
    let b = first["box"].as_array().unwrap();
    let (bw, bh) = (
        (b[2].as_f64().unwrap() - b[0].as_f64().unwrap()) * 320.0,
        (b[3].as_f64().unwrap() - b[1].as_f64().unwrap()) * 240.0,
    );
    assert!((bw - bh).abs() <= 4.0, "box {b:?} is {bw}x{bh} px");
    // pytrickle's publish_data(json.dumps(...)) sends strings in the batch.
    let supervisor = agent.supervisor;
    wait_for_some("items counted as JSON strings", || async move {
        let n = metric(supervisor, "trickle_edge_data_json_strings_total").await;
        (n >= 1.0).then_some(())
    })
    .await;

    // SIGHUP with a new label: the worker gets exactly one update.
    write_config(
        &agent.config,
        worker.addr,
        agent.trickle,
        agent.supervisor.port(),
        &agent.log,
        "cup",
        DEAD_AFTER,
    );
    signal(&agent.child, "-HUP");
    wait_until("detections labelled by the new params", || {
        logged(&agent.log, "cup-seen").len() >= 30
    })
    .await;
    let updates: Vec<_> = logged(&agent.log, "cup-seen")
        .iter()
        .map(|p| p["param_updates"].clone())
        .collect();
    assert!(updates.iter().all(|u| *u == 1), "{updates:?}");
    assert_eq!(
        worker.out.starting_with("PARAMS").len(),
        1,
        "{}",
        worker.out.all()
    );
    assert_eq!(
        metric(agent.supervisor, "trickle_edge_job_restarts_total").await,
        0.0
    );

    stop_both(agent, worker, "").await;
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_routes_a_stream_stopped_from_outside_is_restarted_once_on_fresh_channels() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = temp_dir("pytrickle-api");
    let mut worker = start_worker(true).await;
    let mut agent = start_agent(&dir, worker.addr, DEAD_AFTER).await;
    wait_until("a detection fires the rule", || {
        !logged(&agent.log, "ball-seen").is_empty()
    })
    .await;
    assert_eq!(worker_status(&worker, "/api").await["client_active"], true);

    // Someone else stops the worker's stream: no more events, so the
    // pipeline is declared dead and the job restarted, once.
    let (h, _) = post(
        worker.addr,
        "/api/stream/stop",
        b"{}",
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(h.status, 200);
    let supervisor = agent.supervisor;
    wait_for_some("the job restarted", || async move {
        (metric(supervisor, "trickle_edge_job_restarts_total").await >= 1.0).then_some(())
    })
    .await;
    let before = logged(&agent.log, "ball-seen").len();
    wait_until("detections again after the restart", || {
        logged(&agent.log, "ball-seen").len() > before + 10
    })
    .await;
    assert_eq!(
        metric(supervisor, "trickle_edge_job_restarts_total").await,
        1.0
    );
    // The second stream was started on new channels.
    let starts = worker.out.starting_with("STREAM_START");
    assert_eq!(starts.len(), 2, "{}", worker.out.all());
    let err = agent.err.all();
    assert!(err.contains("pt-2-in"), "restart on fresh channels:\n{err}");

    // The stop from outside came while an ingest segment streamed, which
    // leaves pytrickle's decoder blocked: this worker is not stopped
    // gracefully here (see stop_both for the agent's own stop).
    signal(&agent.child, "-TERM");
    let status = within("agent exit", agent.child.wait()).await.unwrap();
    assert!(status.success(), "agent exit status {status}");
    let s = worker_status(&worker, "/api").await;
    assert!(
        s["client_active"] == false || s["client_running"] == false,
        "the worker's stream is stopped: {s}"
    );
    worker.child.kill().await.ok();
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_routes_sigterm_stops_the_stream_and_the_worker_then_exits() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = temp_dir("pytrickle-stop");
    let worker = start_worker(true).await;
    let agent = start_agent(&dir, worker.addr, DEAD_AFTER).await;
    wait_until("a detection fires the rule", || {
        logged(&agent.log, "ball-seen").len() >= 10
    })
    .await;
    stop_both(agent, worker, "/api").await;
    std::fs::remove_dir_all(&dir).ok();
}

/// A "worker" that answers 404 everywhere (a trickle server has no stream
/// API): the start error lists every path auto tried.
#[tokio::test]
async fn a_worker_without_a_stream_api_is_named_with_the_paths_tried() {
    let not_a_worker = start_server(test_config(), &[]).await;
    let camera = CameraConfig::default();
    for (prefix, tried) in [
        (
            "auto",
            "/api/stream/start, /stream/start, /live-video-to-video",
        ),
        ("/v2", "/v2/stream/start"),
    ] {
        let mode = JobMode::Worker(WorkerJob {
            worker_url: format!("http://{}", not_a_worker.local_addr()),
            api_prefix: prefix.into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        });
        let runner = JobRunner::prepare(&mode).await.unwrap();
        let err = runner
            .start(&mode, &camera, &ClientOptions::default())
            .await
            .expect_err("no stream API")
            .to_string();
        assert!(
            err.contains(tried) && err.contains("404"),
            "{prefix}: {err}"
        );
        assert!(err.contains("job.api_prefix"), "{err}");
    }
}

/// A pipeline declared dead while the worker still streams (the agent waits
/// less than pytrickle's 10 s heartbeat): each restart stops a running
/// stream. Ending the ingest before each stop keeps the worker able to exit
/// on SIGTERM afterwards; a stop mid-segment would wedge its decoder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_that_stop_a_streaming_worker_leave_it_able_to_exit() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = temp_dir("pytrickle-restarts");
    let worker = start_worker(false).await;
    let agent = start_agent(&dir, worker.addr, "6s").await;
    // The third stream decodes frames: two running streams were stopped.
    // SIGTERM then comes while the third runs (a stop racing pytrickle's
    // own start leaves it half started, which is not what this checks).
    wait_until_for(PATIENCE * 2, "frames of the third stream", || {
        worker.out.starting_with("FIRST_FRAME").len() >= 3
    })
    .await;
    stop_both(agent, worker, "").await;
    std::fs::remove_dir_all(&dir).ok();
}

/// `job.mode = "byoc"` (issue 12): the agent starts a stream on an
/// orchestrator — the stand-in of `tests/support/byoc.rs`, written from
/// go-livepeer's BYOC handlers — which hosts the channels and forwards the
/// start, params and stop to this real pytrickle worker on its default
/// `/stream/*` routes. The whole path is real except the orchestrator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byoc_stream_through_an_orchestrator_to_a_real_pytrickle_worker() {
    use support::agent::{resolved, start_agent};
    use support::byoc::{ByocOrchestrator, Offer};
    let _one = ONE_AT_A_TIME.lock().await;
    let mut worker = start_worker(false).await;
    let orch = ByocOrchestrator::start(Offer::new(
        "ball-detector",
        &format!("http://{}", worker.addr),
    ))
    .await;
    let config = |params: &str| {
        resolved(&format!(
            r#"
[camera]
source = "test"
width = 320
height = 240
fps = 15
[encoder]
kind = "auto"
bitrate_kbps = 500
[job]
mode = "byoc"
orchestrator_url = "{}"
capability = "ball-detector"
params = {params}
[supervisor]
listen = "127.0.0.1:0"
pipeline_dead_after = "{DEAD_AFTER}"
keepalive_interval = "1s"
[outputs.led]
type = "gpio"
backend = "simulated"
line = "led"
[[rules]]
name = "ball-seen"
match = {{ type = "detection", label = "ball" }}
then = [{{ output = "led", action = "set" }}]
"#,
            orch.url
        ))
    };
    let r = start_agent(config(r#"{ label = "ball" }"#)).await;
    let h = r.handles.clone();
    wait_until_for(
        PATIENCE * 2,
        "a pytrickle detection, through the orchestrator's data channel, sets the line",
        || h.gpio.states_of("led").contains(&true),
    )
    .await;
    // The worker was started through the orchestrator, with the camera's
    // size added to the params.
    let starts = worker.out.starting_with("STREAM_START");
    assert_eq!(starts.len(), 1, "{}", worker.out.all());
    assert!(
        starts[0].contains("\"width\": 320") && starts[0].contains("\"label\": \"ball\""),
        "{}",
        starts[0]
    );
    assert_eq!(orch.calls_to("/ai/stream/start").len(), 1);

    // New params: through /ai/stream/update to the worker's /stream/params,
    // once (the control channel carries only keepalives).
    r.reload
        .send(config(r#"{ label = "ball", note = 1 }"#))
        .await
        .unwrap();
    wait_until("the worker got the new params", || {
        !worker.out.starting_with("PARAMS").is_empty()
    })
    .await;
    assert_eq!(orch.calls_to("/ai/stream/update").len(), 1);
    // Keepalives go out every second: three more of them show whether the
    // control channel also carried the update.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        worker.out.starting_with("PARAMS").len(),
        1,
        "params delivered once:\n{}",
        worker.out.all()
    );

    // Stop: the orchestrator is told and stops the worker's stream; the
    // worker then exits on its own SIGTERM.
    r.stop.trigger();
    within("agent stops", r.agent).await.unwrap().unwrap();
    assert_eq!(orch.calls_to("/ai/stream/stop").len(), 1);
    wait_until("the worker's stream stopped", || {
        !worker.out.starting_with("STREAM_STOP").is_empty()
    })
    .await;
    signal(&worker.child, "-TERM");
    let status = within("the worker exits on SIGTERM", worker.child.wait())
        .await
        .unwrap();
    assert!(status.success(), "worker exit status {status}");
    orch.stop();
}
