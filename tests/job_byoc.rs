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
    config_with(orch, params, log, "")
}

/// [`config`] with more `[job]` lines (a signer, a payment interval).
fn config_with(orch: &str, params: &str, log: &std::path::Path, job: &str) -> ResolvedConfig {
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
{job}
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
    byoc_mode_with(orch, "")
}

fn byoc_mode_with(orch: &str, job: &str) -> JobMode {
    let dir = temp_dir("byoc-mode");
    let mode = config_with(orch, "{}", &dir.join("x.jsonl"), job)
        .config
        .job;
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

/// `[job]` lines for a signer at `url`, paying every `interval`.
fn signer_lines(url: &str, interval: &str) -> String {
    format!(
        "signer_url = \"{url}\"\nsigner_headers = {{ Authorization = \"Bearer signer-secret\" }}\npayment_interval = \"{interval}\""
    )
}

/// A priced offer whose balance is checked every 200 ms.
fn priced(worker_url: &str, debit_seconds_per_check: i64) -> Offer {
    Offer {
        price_per_unit: 10,
        credit_seconds: 300,
        check_every: std::time::Duration::from_millis(200),
        debit_seconds_per_check,
        ..offer(worker_url)
    }
}

/// A priced stream through `trickle-edge`'s agent: a worker, the stand-in
/// orchestrator debiting `debit_seconds_per_check`, the stand-in signer,
/// and payments every second. Every part lives as long as the value.
struct PaidStream {
    worker: WorkerHandle,
    orch: ByocOrchestrator,
    signer: support::livepeer::StandInSigner,
    _dir: support::tmp::TempDir,
    r: support::agent::RunningAgent,
}

impl PaidStream {
    async fn start(tag: &str, debit_seconds_per_check: i64) -> PaidStream {
        let worker = WorkerHandle::start("127.0.0.1:0".parse().unwrap(), WorkerConfig::default())
            .await
            .unwrap();
        let orch = ByocOrchestrator::start(priced(&worker.url(), debit_seconds_per_check)).await;
        let signer = support::livepeer::StandInSigner::start(vec![]).await;
        let dir = temp_dir(tag);
        let r = start_agent(config_with(
            &orch.url,
            "{}",
            &dir.join("events.jsonl"),
            &signer_lines(&signer.url, "1s"),
        ))
        .await;
        PaidStream {
            worker,
            orch,
            signer,
            _dir: dir,
            r,
        }
    }
}

fn decoded_eth_address(h: &http::HeaderMap) -> serde_json::Value {
    let raw = h.get("livepeer-eth-address").unwrap().to_str().unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(raw)
            .unwrap(),
    )
    .unwrap()
}

/// A priced capability, a remote signer: the start carries a payment, the
/// stream pays `/ai/stream/payment` every `payment_interval` (1 s here),
/// every request is signed by the signer's sender, and the stream stays up
/// with detections reaching a rule; `/metrics` and `/healthz` count the
/// payments and show the balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_priced_stream_pays_at_start_and_on_its_cadence_and_stays_up() {
    use support::livepeer::SIGNER_ADDRESS;
    let PaidStream {
        worker,
        orch,
        signer,
        r,
        _dir,
    } = PaidStream::start("byoc-priced", 1).await;
    let h = r.handles.clone();
    wait_until("a GPIO activation from a paid BYOC stream", || {
        h.gpio.states_of("led").contains(&true)
    })
    .await;
    wait_until("three payments on the cadence", || {
        orch.payments()
            .iter()
            .filter(|p| p.path == "/ai/stream/payment")
            .count()
            >= 3
    })
    .await;

    // The start paid, and was signed by the signer's sender.
    let starts = orch.calls_to("/ai/stream/start");
    assert_eq!(starts.len(), 1);
    assert_eq!(starts[0].status, 200);
    let job = starts[0].job.clone().unwrap();
    assert_eq!(job.sender, SIGNER_ADDRESS);
    let payments = orch.payments();
    assert_eq!(payments[0].path, "/ai/stream/start");
    assert!(!payments[0].segment.is_empty(), "Livepeer-Segment sent");
    // Each payment names the stream, with Livepeer's gateway's timeout.
    for call in orch.calls_to("/ai/stream/payment") {
        assert_eq!(call.status, 200);
        let pay = call.job.unwrap();
        assert_eq!(pay.sender, SIGNER_ADDRESS);
        assert_eq!(pay.timeout_seconds, 70);
        assert_eq!(pay.parameters, "{}");
        let request: serde_json::Value = serde_json::from_str(&pay.request).unwrap();
        assert_eq!(request["stream_id"], job.id.as_str());
    }
    // The token was asked as the signer's sender.
    let eth = decoded_eth_address(&orch.token_headers()[0]);
    assert_eq!(eth["addr"], SIGNER_ADDRESS);
    assert_eq!(eth["sig"], format!("0x{}", "ab".repeat(65)));
    // GetOrchestrator went to the orchestrator's own port, signed.
    let grpc = orch.grpc_requests();
    assert!(!grpc.is_empty());
    assert_eq!(
        grpc[0].address,
        vec![
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff, 0x00, 0x11, 0x22, 0x33
        ]
    );
    // The signer was asked as the SDK asks, with our headers; its state
    // echoed from one payment to the next.
    let calls = signer.calls();
    assert!(calls.len() >= 4, "{calls:?}");
    for c in &calls {
        assert_eq!(c.status, 200);
        assert_eq!(c.body["type"], "lv2v");
        assert_eq!(c.body["capability"], CAPABILITY);
        assert_eq!(c.headers["livepeer-capability"], CAPABILITY);
        assert_eq!(c.headers["authorization"], "Bearer signer-secret");
    }
    assert!(calls[0].body.get("state").is_none());
    assert_eq!(calls[1].body["state"]["n"], 1);
    assert!(orch.closed_for_balance().is_empty());
    assert_eq!(orch.calls_to("/ai/stream/start").len(), 1, "no restart");

    let metrics = trickle_edge::agent::http::metrics(&h.stats);
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
            .parse()
            .unwrap()
    };
    assert!(
        value("trickle_edge_byoc_payments_total") >= 4.0,
        "{metrics}"
    );
    assert_eq!(value("trickle_edge_byoc_payment_failures_total"), 0.0);
    assert!(value("trickle_edge_byoc_balance") > 0.0, "{metrics}");
    let health = trickle_edge::agent::http::healthz(&h.stats).1;
    let pays = &health["job"]["byoc_payments"];
    assert!(pays["sent"].as_u64().unwrap() >= 4, "{health}");
    assert!(pays["balance"].is_string(), "{health}");

    // Stop: signed, and no payment after it.
    r.stop.trigger();
    within("agent stops", r.agent).await.unwrap().unwrap();
    let stops = orch.calls_to("/ai/stream/stop");
    assert_eq!(stops.len(), 1);
    assert_eq!(stops[0].job.clone().unwrap().sender, SIGNER_ADDRESS);
    orch.stop();
    signer.stop();
    worker.shutdown().await;
}

/// The signer stops paying (500): the payment loop warns and streams on,
/// the orchestrator's balance runs out and it closes the stream's
/// channels, the agent restarts the job saying why (the closed channel and
/// the failing payments), and once the signer pays again the restarted job
/// streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_that_stop_let_the_orchestrator_close_the_stream_and_the_job_restarts() {
    let logs = support::tracing::LogCapture::new(tracing::Level::WARN);
    tracing::subscriber::set_global_default(logs.clone()).unwrap();
    // No debit yet: the stream stays up until the test lets it run dry.
    let PaidStream {
        worker,
        orch,
        signer,
        r,
        _dir,
    } = PaidStream::start("byoc-unpaid", 0).await;
    let counters = r.handles.stats.byoc.get().unwrap().clone();
    signer.fail("/generate-live-payment", Some(500));
    wait_until("a payment failed", || {
        counters
            .payment_failures
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    })
    .await;
    let first = orch.calls_to("/ai/stream/start")[0].job.clone().unwrap().id;
    orch.set_offer(|o| o.debit_seconds_per_check = 200);
    wait_until("the orchestrator closes the unpaid stream", || {
        orch.closed_for_balance() == vec![first.clone()]
    })
    .await;
    orch.set_offer(|o| o.debit_seconds_per_check = 0);
    let why = wait_for_some("the restart, logged with its reason", || {
        let found = logs
            .events()
            .into_iter()
            .find(|e| e.message().contains("the job cannot go on"))
            .map(|e| e.text());
        async move { found }
    })
    .await;
    assert!(why.contains("closed"), "{why}");
    assert!(why.contains("payments were failing"), "{why}");
    assert!(why.contains("answered 500"), "{why}");
    assert!(why.contains(&signer.url), "{why}");
    let warned = logs
        .events()
        .into_iter()
        .find(|e| e.message().contains("byoc payment failed"))
        .map(|e| e.text())
        .expect("the failed payment was warned about");
    assert!(warned.contains("/generate-live-payment"), "{warned}");
    // The signer pays again: a new stream starts and streams.
    signer.fail("/generate-live-payment", None);
    wait_until("the job restarted on a new stream", || {
        orch.calls_to("/ai/stream/start")
            .iter()
            .filter(|c| c.status == 200)
            .count()
            == 2
    })
    .await;
    let restarted = orch
        .calls_to("/ai/stream/start")
        .into_iter()
        .rfind(|c| c.status == 200)
        .unwrap()
        .job
        .unwrap()
        .id;
    assert_ne!(restarted, first);
    let h = r.handles.clone();
    wait_until("the restarted stream pays on its cadence", || {
        orch.payments()
            .iter()
            .any(|p| p.path == "/ai/stream/payment" && p.stream_id == restarted)
    })
    .await;
    assert!(
        h.stats
            .job_restarts
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    r.stop.trigger();
    within("agent stops", r.agent).await.unwrap().unwrap();
    orch.stop();
    signer.stop();
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_priced_capability_without_a_signer_is_refused_naming_the_price_and_signer_url() {
    let orch = ByocOrchestrator::start(priced("http://127.0.0.1:9", 0)).await;
    let e = start_job(&byoc_mode(&orch.url))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("priced (10 wei per 1 units)"), "{e}");
    assert!(e.contains("`job.signer_url`"), "{e}");
    assert!(orch.calls_to("/ai/stream/start").is_empty());
    orch.stop();
}

/// Starts `mode`'s job as the agent's first start, default params and
/// client.
async fn start_job(mode: &JobMode) -> Result<trickle_edge::job::Job, JobError> {
    trickle_edge::job::start(
        mode,
        &Default::default(),
        None,
        1,
        &ClientOptions::default(),
    )
    .await
}

/// Starts a byoc job on `orch` signed through `signer`; the start must be
/// refused with the signer's `status`. Returns the error as users read it.
async fn refused_by_signer(
    orch: &ByocOrchestrator,
    signer: &support::livepeer::StandInSigner,
    status: u16,
) -> String {
    let mode = byoc_mode_with(&orch.url, &signer_lines(&signer.url, "50s"));
    let e = start_job(&mode).await.unwrap_err();
    assert!(
        matches!(&e, JobError::Signer { status: Some(s), .. } if *s == status),
        "{e:?}"
    );
    e.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_above_the_signers_limit_is_refused_naming_the_limit() {
    use support::livepeer::StandInSigner;
    let orch = ByocOrchestrator::start(priced("http://127.0.0.1:9", 0)).await;
    let signer = StandInSigner::start(vec![]).await;
    signer.set_price_limit(Some(2));
    let e = refused_by_signer(&orch, &signer, 481).await;
    assert!(e.contains("exceeds the max price 2 wei"), "{e}");
    assert!(e.contains("priced (10 wei per 1 units)"), "{e}");
    assert!(e.contains(&signer.url), "{e}");
    assert!(orch.calls_to("/ai/stream/start").is_empty());
    orch.stop();
    signer.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_job_signature_names_the_signer_and_its_status() {
    use support::livepeer::StandInSigner;
    let orch = ByocOrchestrator::start(offer("http://127.0.0.1:9")).await;
    let signer = StandInSigner::start(vec![]).await;
    signer.fail("/sign-byoc-job", Some(403));
    let e = refused_by_signer(&orch, &signer, 403).await;
    assert!(
        e.contains(&format!("{}/sign-byoc-job answered 403", signer.url)),
        "{e}"
    );
    assert!(
        e.contains("is failing (403)"),
        "the signer's own words: {e}"
    );
    assert!(orch.calls_to("/ai/stream/start").is_empty());
    orch.stop();
    signer.stop();
}

/// An off-chain capability with a signer configured: every request is
/// signed, and nothing is paid (no GetOrchestrator, no payment asked of
/// the signer, none sent to the orchestrator).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_chain_with_a_signer_signs_every_request_and_pays_nothing() {
    use support::livepeer::{SIGNER_ADDRESS, StandInSigner};
    let worker = WorkerHandle::start("127.0.0.1:0".parse().unwrap(), WorkerConfig::default())
        .await
        .unwrap();
    let orch = ByocOrchestrator::start(offer(&worker.url())).await;
    let signer = StandInSigner::start(vec![]).await;
    let mode = byoc_mode_with(&orch.url, &signer_lines(&signer.url, "1s"));
    let job = start_job(&mode).await.unwrap();
    let mut params = serde_json::Map::new();
    params.insert("note".into(), 9.into());
    job.update_params(&params).await.unwrap();
    job.stop().await.unwrap();
    for path in ["/ai/stream/start", "/ai/stream/update", "/ai/stream/stop"] {
        let calls = orch.calls_to(path);
        assert_eq!(calls.len(), 1, "{path}");
        assert_eq!(calls[0].status, 200, "{path}");
        assert_eq!(
            calls[0].job.clone().unwrap().sender,
            SIGNER_ADDRESS,
            "{path}"
        );
    }
    // What the signer signed is what went in the headers (the stand-in
    // orchestrator checks each signature against its fields).
    assert_eq!(signer.byoc_signs().len(), 3);
    assert!(signer.calls().is_empty(), "a payment was asked for");
    assert!(orch.grpc_requests().is_empty());
    assert!(orch.payments().is_empty());
    assert!(orch.calls_to("/ai/stream/payment").is_empty());
    orch.stop();
    signer.stop();
    worker.shutdown().await;
}

/// A payment that buys less than the orchestrator's minimum balance: its
/// 402 and its own words come through, naming the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orchestrator_402_is_shown_with_its_status_and_body() {
    use support::livepeer::StandInSigner;
    let orch = ByocOrchestrator::start(Offer {
        credit_seconds: support::byoc::MIN_BALANCE_SECONDS / 2,
        ..priced("http://127.0.0.1:9", 0)
    })
    .await;
    let signer = StandInSigner::start(vec![]).await;
    let mode = byoc_mode_with(&orch.url, &signer_lines(&signer.url, "50s"));
    let e = start_job(&mode).await.unwrap_err();
    match &e {
        JobError::Refused {
            status, body, url, ..
        } => {
            assert_eq!(*status, 402);
            assert_eq!(body, "Insufficient balance for request");
            assert!(url.ends_with("/ai/stream/start"), "{url}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(orch.payments().len(), 1, "the start's payment was sent");
    orch.stop();
    signer.stop();
}
