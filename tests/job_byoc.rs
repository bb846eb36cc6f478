//! `job.mode = "byoc"` end to end, in process: test camera → the
//! orchestrator stand-in's trickle channels → the reference worker (behind
//! the stand-in, reached on its `/stream/*` routes as an orchestrator
//! reaches a registered container) → `X-Data-Url` → rules → simulated GPIO;
//! parameter updates through `/ai/stream/update`; stop through
//! `/ai/stream/stop`; refusals with their status and body.

mod support;

use support::agent::{resolved, start_agent};

use base64::Engine;
use support::byoc::{ByocOrchestrator, Offer};
use support::time::{wait_for_some, wait_until, within};
use support::tmp::temp_dir;
use trickle_edge::config::{JobMode, ResolvedConfig};
use trickle_edge::job::JobError;
use trickle_edge::trickle::ClientOptions;
use trickle_edge::worker::{WorkerConfig, WorkerHandle};

const CAPABILITY: &str = "ball-detector";

fn config(orch: &str, params: &str, log: &std::path::Path) -> ResolvedConfig {
    let text = format!(
        r#"
[camera]
source = "test"
width = 320
height = 240
fps = 30
[encoder]
kind = "auto"
bitrate_kbps = 500
[job]
mode = "byoc"
orchestrator_url = "{orch}"
capability = "{CAPABILITY}"
params = {params}
[supervisor]
listen = "127.0.0.1:0"
pipeline_dead_after = "30s"
keepalive_interval = "1s"
[outputs.led]
type = "gpio"
backend = "simulated"
line = "led"
[outputs.events]
type = "log"
path = "{log}"
[[rules]]
name = "ball-seen"
match = {{ type = "detection", label = "ball" }}
then = [{{ output = "led", action = "set" }}, {{ output = "events" }}]
"#,
        log = log.display()
    );
    resolved(&text)
}

fn offer(worker_url: &str) -> Offer {
    Offer::new(CAPABILITY, worker_url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byoc_stream_drives_a_rule_takes_params_and_stops_at_the_orchestrator() {
    let worker = WorkerHandle::start("127.0.0.1:0".parse().unwrap(), WorkerConfig::default())
        .await
        .unwrap();
    let orch = ByocOrchestrator::start(offer(&worker.url())).await;
    let dir = temp_dir("byoc");
    let log = dir.join("events.jsonl");
    let r = start_agent(config(&orch.url, r#"{ note = 5 }"#, &log)).await;
    let h = r.handles.clone();
    wait_until("a GPIO activation from a BYOC detection", || {
        h.gpio.states_of("led").contains(&true)
    })
    .await;

    // The start as the orchestrator decoded it: JSON strings where Go
    // expects strings, a timeout, the data channel asked for.
    let tokens = orch.calls_to("/process/token");
    assert_eq!(tokens.len(), 1, "one token fetch per start");
    let starts = orch.calls_to("/ai/stream/start");
    assert_eq!(starts.len(), 1);
    assert_eq!(starts[0].status, 200);
    let job = starts[0].job.clone().expect("Livepeer header decoded");
    assert_eq!(job.capability, CAPABILITY);
    assert_eq!(job.timeout_seconds, 30);
    assert_eq!(job.request, "{}");
    let parameters: serde_json::Value = serde_json::from_str(&job.parameters).unwrap();
    assert_eq!(parameters["enable_video_ingress"], true);
    assert_eq!(parameters["enable_data_output"], true);
    assert_eq!(starts[0].body["params"]["note"], 5);
    // The stream id names the orchestrator's channels.
    assert!(
        orch.trickle()
            .state
            .channel(&format!("{}-data", job.id))
            .is_some()
    );
    assert_eq!(
        worker.worker().status().await.params["note"],
        serde_json::json!(5)
    );

    // A params-only reload goes to /ai/stream/update, once, for this stream.
    r.reload
        .send(config(&orch.url, r#"{ note = 7 }"#, &log))
        .await
        .unwrap();
    let update = wait_for_some("the params update at the orchestrator", || {
        let first = orch.calls_to("/ai/stream/update").into_iter().next();
        async move { first }
    })
    .await;
    assert_eq!(update.status, 200);
    assert_eq!(update.body["note"], 7);
    let request: serde_json::Value = serde_json::from_str(&update.job.unwrap().request).unwrap();
    assert_eq!(request["stream_id"], job.id.as_str());
    let w = worker.worker().clone();
    wait_for_some("the worker has the new params", || {
        let w = w.clone();
        async move { (w.status().await.params["note"] == serde_json::json!(7)).then_some(()) }
    })
    .await;
    assert_eq!(orch.calls_to("/ai/stream/start").len(), 1, "no restart");
    // Delivered once: not also on the control channel (whose keepalives the
    // worker reads, so one more second would show a second delivery).
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(worker.worker().status().await.control_updates, 0);

    // Stop: the orchestrator is told, names the stream, stops the worker.
    r.stop.trigger();
    within("agent stops", r.agent).await.unwrap().unwrap();
    let stops = orch.calls_to("/ai/stream/stop");
    assert_eq!(stops.len(), 1);
    let request: serde_json::Value =
        serde_json::from_str(&stops[0].job.clone().unwrap().request).unwrap();
    assert_eq!(request["stream_id"], job.id.as_str());
    let state = serde_json::to_value(worker.worker().status().await.state).unwrap();
    assert_eq!(state, "idle", "the worker's stream was stopped");
    assert_eq!(h.gpio.states_of("led").last(), Some(&false));
    orch.stop();
    worker.shutdown().await;
    std::fs::remove_dir_all(dir).ok();
}

fn byoc_mode(orch: &str) -> JobMode {
    let dir = temp_dir("byoc-mode");
    let mode = config(orch, "{}", &dir.join("x.jsonl")).config.job;
    std::fs::remove_dir_all(dir).ok();
    mode
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_shown_with_their_status_and_body() {
    let worker = WorkerHandle::start("127.0.0.1:0".parse().unwrap(), WorkerConfig::default())
        .await
        .unwrap();
    let orch = ByocOrchestrator::start(offer(&worker.url())).await;
    let mode = byoc_mode(&orch.url);
    let opts = ClientOptions::default();
    let camera = trickle_edge::media::CameraConfig::default();

    // No capacity: the orchestrator's own words come through.
    orch.set_offer(|o| o.capacity = 0);
    let e = trickle_edge::job::start(&mode, &camera, None, 1, &opts)
        .await
        .unwrap_err();
    match &e {
        JobError::Refused { status, body, .. } => {
            assert_eq!(*status, 400);
            assert_eq!(body, "No capacity available for capability");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(
        e.to_string().contains("/ai/stream/start answered 400"),
        "{e}"
    );

    // A capability the orchestrator does not have: refused at the token.
    orch.set_offer(|o| {
        o.capacity = 1;
        o.capability = "something-else".into();
    });
    let e = trickle_edge::job::start(&mode, &camera, None, 1, &opts)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, JobError::Refused { status: 400, url, .. } if url.ends_with("/process/token")),
        "{e}"
    );

    // Priced: refused here, before any start, with the price.
    orch.set_offer(|o| {
        o.capability = CAPABILITY.into();
        o.price_per_unit = 3;
    });
    let starts_before = orch.calls_to("/ai/stream/start").len();
    let e = trickle_edge::job::start(&mode, &camera, None, 1, &opts)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("priced (3 wei per 1 units)"), "{e}");
    assert_eq!(orch.calls_to("/ai/stream/start").len(), starts_before);

    // The registered container not answering: the orchestrator's 500 and
    // its text come through.
    orch.set_offer(|o| {
        o.price_per_unit = 0;
        o.worker_url = "http://127.0.0.1:9".into();
    });
    let e = trickle_edge::job::start(&mode, &camera, None, 1, &opts)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, JobError::Refused { status: 500, body, .. } if body.starts_with("Error sending request to worker")),
        "{e}"
    );

    // An orchestrator that is not there: the address, not a hang.
    let gone = byoc_mode("http://127.0.0.1:9");
    let e = trickle_edge::job::start(&gone, &camera, None, 1, &opts)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("127.0.0.1:9"), "{e}");
    orch.stop();
    worker.shutdown().await;
}

#[test]
fn the_livepeer_header_decodes_as_go_livepeer_decodes_it() {
    let h = trickle_edge::job::byoc::job_request_header(
        "s-1",
        CAPABILITY,
        &serde_json::json!({"stream_id": "s-1"}),
        &serde_json::json!({}),
        30,
    );
    let bytes = base64::engine::general_purpose::STANDARD.decode(h).unwrap();
    let job: support::byoc::JobRequest = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(job.request, r#"{"stream_id":"s-1"}"#);
    assert_eq!(job.parameters, "{}");
}

/// `probe --job` asks, and starts nothing: the orchestrator's token is
/// shown with its price and capacity, and no stream is started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_job_shows_the_orchestrator_answer_and_starts_nothing() {
    let worker = WorkerHandle::start("127.0.0.1:0".parse().unwrap(), WorkerConfig::default())
        .await
        .unwrap();
    let orch = ByocOrchestrator::start(offer(&worker.url())).await;
    let dir = temp_dir("byoc-probe");
    let file = support::config::write(
        &dir,
        "agent.toml",
        &format!(
            "[job]\nmode = \"byoc\"\norchestrator_url = \"{}\"\ncapability = \"{CAPABILITY}\"\n",
            orch.url
        ),
    );
    let probe = |file: std::path::PathBuf| async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_trickle-edge"))
            .args(["probe", "--job", "--config"])
            .arg(file)
            .output()
            .await
            .unwrap()
    };
    let out = within("probe --job", probe(file.clone())).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.contains("/process/token"))
        .unwrap_or_else(|| panic!("no token line in:\n{stdout}"));
    assert!(line.trim_start().starts_with("ok"), "{line}");
    assert!(line.contains("-> 200 service_addr="), "{line}");
    assert!(line.contains("capacity=1 price=0/1"), "{line}");
    assert_eq!(orch.calls_to("/process/token").len(), 1);
    assert!(
        orch.calls_to("/ai/stream/start").is_empty(),
        "probe started a stream"
    );

    // A capability the orchestrator lacks: its refusal, and a failing exit.
    orch.set_offer(|o| o.capability = "other".into());
    let out = within("probe --job (refused)", probe(file)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("FAIL") && stdout.contains("-> 400 Could not get price"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no endpoint of the byoc job answered"));
    orch.stop();
    worker.shutdown().await;
    std::fs::remove_dir_all(dir).ok();
}
