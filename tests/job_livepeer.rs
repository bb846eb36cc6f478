//! `job.mode = "livepeer"` end to end, in process, against the stand-in
//! orchestrator and remote signer that `tests/livepeer_sdk.rs` proves
//! against Livepeer's own client: test camera → the job's publish channel;
//! detections on the events channel (LV2V has no data channel) → rules →
//! simulated GPIO; payments through the signer; refusals (503 at start, 481
//! from the signer) sending the job to the next orchestrator; stop DELETEs
//! the publish and control channels. Failover as Livepeer's gateway does it:
//! events silent, a channel closed or 404 (also when the orchestrator closes
//! an unpaid job), output silent, the publisher 3 segments behind, and the
//! swap budget's back-off. Last, a real pytrickle worker as the stand-in's
//! runner, its detections reaching a rule through the events channel.

mod support;

use std::time::Duration;

use bytes::Bytes;
use support::agent::{resolved, start_agent};
use support::http::simple;
use support::livepeer::{OrchOffer, StandInOrchestrator, StandInSigner};
use support::time::{wait_until, wait_until_for, within};
use support::tmp::temp_dir;
use trickle_edge::config::ResolvedConfig;
use trickle_edge::trickle::{Publisher, PublisherOptions};

/// `job` is the `[job]` table's body after `mode = "livepeer"`.
fn config(job: &str) -> ResolvedConfig {
    resolved(&format!(
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
mode = "livepeer"
model_id = "noop"
params = {{ prompt = "edge" }}
{job}
[supervisor]
listen = "127.0.0.1:0"
pipeline_dead_after = "30s"
keepalive_interval = "1s"
[outputs.led]
type = "gpio"
backend = "simulated"
line = "led"
[[rules]]
name = "ball-seen"
match = {{ type = "detection", label = "ball" }}
then = [{{ output = "led", action = "set" }}]
"#
    ))
}

/// One sample of the agent's `/metrics`.
async fn metric(addr: std::net::SocketAddr, name: &str) -> f64 {
    let (_, body) = simple(addr, "GET", "/metrics", &[]).await;
    let text = String::from_utf8(body).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("valid exposition");
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name)
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
            _ => f64::NAN,
        })
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

/// Plays the orchestrator's runner: one Livepeer event envelope carrying a
/// detection, on the job's events channel.
async fn publish_detection(events_url: &str) {
    let mut p = Publisher::connect(
        events_url,
        PublisherOptions {
            content_type: "application/json".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let event = serde_json::json!({
        "queue_event_type": "ai_stream_events",
        "event": {
            "type": "detection",
            "boxes": [{"label": "ball", "confidence": 0.9, "box": [0.4, 0.4, 0.6, 0.6]}],
        },
    });
    let mut seg = p.next_segment().await.unwrap();
    seg.write(Bytes::from(event.to_string())).await.unwrap();
    seg.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offchain_job_starts_events_drive_a_rule_and_stop_deletes_the_channels() {
    let dir = temp_dir("lp-offchain");
    let orch = StandInOrchestrator::start(OrchOffer::default(), true).await;
    let r = start_agent(config(&format!(
        "orchestrators = [\"{}\"]\npins_dir = \"{}\"",
        orch.url,
        dir.display()
    )))
    .await;
    let mut first = r.handles.stats.media.first_published.subscribe();
    within("the first segment accepted", first.wait_for(|v| *v))
        .await
        .unwrap();
    let ready = std::time::Instant::now();
    println!(
        "job start (GetOrchestrator -> first segment accepted): {} ms",
        (ready - orch.grpc_at()[0]).as_millis()
    );
    let starts = orch.starts();
    assert_eq!(starts.len(), 1, "{:?}", orch.refused_starts());
    let job = &starts[0];
    assert_eq!(job.body["model_id"], "noop");
    assert_eq!(job.body["params"]["prompt"], "edge");
    assert_eq!(job.body["params"]["width"], 320);
    assert_eq!(job.payment, "", "off-chain: no payment");
    let mid = job.manifest_id.clone();
    let trickle = orch.trickle();
    assert!(trickle.state.channel(&mid).is_some());
    // The certificate was pinned on first use.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

    let h = r.handles.clone();
    publish_detection(&format!("{}{mid}-events", trickle.base_url())).await;
    wait_until(
        "a GPIO activation from a detection on the events channel",
        || h.gpio.states_of("led").contains(&true),
    )
    .await;
    assert!(orch.payments().is_empty(), "off-chain: nothing to pay");

    r.stop.trigger();
    within("agent stops", r.agent).await.unwrap().unwrap();
    wait_until("publish and control channels deleted", || {
        trickle.state.channel(&mid).is_none()
            && trickle.state.channel(&format!("{mid}-control")).is_none()
    })
    .await;
    orch.stop();
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priced_job_pays_through_the_signer_while_streaming() {
    let orch = StandInOrchestrator::start(
        OrchOffer {
            price_per_unit: 3,
            ..Default::default()
        },
        false,
    )
    .await;
    let signer = StandInSigner::start(vec![orch.url.clone()]).await;
    let headers = temp_dir("lp-signer-headers");
    let file = headers.join("signer.json");
    std::fs::write(&file, r#"{"Authorization": "Bearer from-file"}"#).unwrap();
    let r = start_agent(config(&format!(
        "signer_url = \"{}\"\nsigner_headers_file = \"{}\"\norchestrator_tls = \"insecure\"",
        signer.url,
        file.display()
    )))
    .await;
    let starts = orch.starts();
    assert_eq!(starts.len(), 1, "{:?}", orch.refused_starts());
    assert!(!starts[0].payment.is_empty(), "the start was paid");
    wait_until("three payments while streaming", || {
        orch.payments().len() >= 3
    })
    .await;
    let payments = orch.payments();
    let gaps: Vec<f64> = payments
        .windows(2)
        .map(|w| (w[1].at - w[0].at).as_secs_f64())
        .collect();
    println!("payment gaps (s): {gaps:.2?}");
    let calls = signer.calls();
    assert!(calls[0].body.get("ManifestID").is_none());
    for (i, c) in calls.iter().enumerate().skip(1) {
        assert_eq!(c.body["ManifestID"], starts[0].manifest_id.as_str());
        assert_eq!(c.body["state"]["n"], i as u64, "state echoed");
    }
    for c in &calls {
        assert_eq!(c.headers["authorization"], "Bearer from-file");
    }
    r.stop.trigger();
    within("agent stops", r.agent).await.unwrap().unwrap();
    let paid = orch.payments().len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(orch.payments().len(), paid, "payments end with the job");
    orch.stop();
    signer.stop();
    std::fs::remove_dir_all(headers).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_at_start_sends_the_job_to_the_next_orchestrator() {
    let (full, slow) = two_orchestrators(OrchOffer {
        refuse_start: Some((503, "insufficient capacity".into())),
        ..Default::default()
    })
    .await;
    let r = start_agent(config(&format!(
        "orchestrators = [\"{}\", \"{}\"]\norchestrator_tls = \"insecure\"",
        full.url, slow.url
    )))
    .await;
    assert_eq!(
        full.refused_starts(),
        [(503, "insufficient capacity".into())]
    );
    assert_eq!(slow.starts().len(), 1);
    let addr = r.handles.supervisor_addr.expect("supervisor endpoint");
    assert_eq!(
        metric(addr, "trickle_edge_livepeer_refusals_total").await,
        1.0
    );
    assert_eq!(metric(addr, "trickle_edge_livepeer_swaps_total").await, 0.0);
    r.stop.trigger();
    within("agent stops", r.agent).await.unwrap().unwrap();
    full.stop();
    slow.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_481_from_the_signer_sends_the_job_to_the_next_orchestrator() {
    let priced = || OrchOffer {
        price_per_unit: 9,
        ..Default::default()
    };
    let (first, second) = two_orchestrators_after(priced(), priced()).await;
    let signer = StandInSigner::start(Vec::new()).await;
    signer.inject(&[481]);
    let r = start_agent(config(&format!(
        "orchestrators = [\"{}\", \"{}\"]\nsigner_url = \"{}\"\norchestrator_tls = \"insecure\"",
        first.url, second.url, signer.url
    )))
    .await;
    assert!(first.starts().is_empty(), "{:?}", first.refused_starts());
    assert_eq!(second.starts().len(), 1);
    assert_eq!(signer.calls()[0].status, 481);
    r.stop.trigger();
    within("agent stops", r.agent).await.unwrap().unwrap();
    first.stop();
    second.stop();
    signer.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orchestrators_command_lists_answers_and_refusals() {
    let good = StandInOrchestrator::start(
        OrchOffer {
            price_per_unit: 4,
            ..Default::default()
        },
        false,
    )
    .await;
    let refusing = StandInOrchestrator::start(
        OrchOffer {
            refuse_grpc: Some("no capacity for noop".into()),
            ..Default::default()
        },
        false,
    )
    .await;
    let dir = temp_dir("lp-cli");
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[job]\nmode = \"livepeer\"\nmodel_id = \"noop\"\norchestrators = [\"{}\", \"{}\"]\norchestrator_tls = \"insecure\"\n",
            good.url, refusing.url
        ),
    )
    .unwrap();
    let out = within(
        "trickle-edge orchestrators",
        tokio::process::Command::new(env!("CARGO_BIN_EXE_trickle-edge"))
            .args(["orchestrators", "--config"])
            .arg(&cfg)
            .output(),
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |url: &str| {
        stdout
            .lines()
            .find(|l| l.contains(url))
            .unwrap_or_else(|| panic!("no line for {url}:\n{stdout}"))
            .to_string()
    };
    let ok = line(&good.url);
    assert!(
        ok.trim_start().starts_with("ok") && ok.contains("4 wei/1 px") && ok.contains(" ms"),
        "{ok}"
    );
    let refused = line(&refusing.url);
    assert!(
        refused.contains("FAIL") && refused.contains("no capacity for noop"),
        "{refused}"
    );
    good.stop();
    refusing.stop();
    std::fs::remove_dir_all(dir).ok();
}

/// 30 s (here 3 s) without events: outputs to failsafe, and a fresh job on
/// the next orchestrator, not the one that went silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_pipeline_fails_over_to_the_next_orchestrator_with_outputs_at_failsafe() {
    let (first, second) = two_orchestrators(OrchOffer::default()).await;
    let mut cfg = config(&format!(
        "orchestrators = [\"{}\", \"{}\"]\norchestrator_tls = \"insecure\"",
        first.url, second.url
    ));
    cfg.config.supervisor.pipeline_dead_after = Duration::from_secs(3);
    let r = start_agent(cfg).await;
    assert_eq!(first.starts().len(), 1);
    let mid = first.starts()[0].manifest_id.clone();
    publish_detection(&format!("{}{mid}-events", first.trickle().base_url())).await;
    let h = r.handles.clone();
    wait_until("the rule fires on the first orchestrator's events", || {
        h.gpio.states_of("led").contains(&true)
    })
    .await;
    // The first orchestrator's pipeline says nothing more.
    wait_until("a fresh job on the second orchestrator", || {
        second.starts().len() == 1
    })
    .await;
    assert_eq!(first.starts().len(), 1, "not restarted on the silent one");
    let states = h.gpio.states_of("led");
    let on = states.iter().position(|s| *s).unwrap();
    assert!(
        states[on..].contains(&false),
        "outputs at failsafe between the jobs: {states:?}"
    );
    assert!(
        r.handles
            .stats
            .pipeline_deaths
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    // /healthz names the orchestrator now in use; /metrics counts the swap.
    let addr = r.handles.supervisor_addr.expect("supervisor endpoint");
    let (_, body) = simple(addr, "GET", "/healthz", &[]).await;
    let health: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        health["job"]["orchestrator"],
        second.url.as_str(),
        "{health}"
    );
    assert_eq!(metric(addr, "trickle_edge_livepeer_swaps_total").await, 1.0);
    let status = trickle_edge::agent::runtime::status_line(&r.handles.stats);
    assert!(
        status.ends_with(&format!(" orchestrator={}", second.url)),
        "{status}"
    );
    r.stop.trigger();
    within("agent stops", r.agent).await.unwrap().unwrap();
    first.stop();
    second.stop();
}

/// A 481 from the signer mid-stream (the price went above the limit): the
/// job moves to the next orchestrator instead of streaming unpaid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_481_mid_stream_moves_the_job_to_the_next_orchestrator() {
    let priced = || OrchOffer {
        price_per_unit: 9,
        ..Default::default()
    };
    let (first, second) = two_orchestrators_after(priced(), priced()).await;
    let signer = StandInSigner::start(Vec::new()).await;
    let mut cfg = config(&format!(
        "orchestrators = [\"{}\", \"{}\"]\nsigner_url = \"{}\"\norchestrator_tls = \"insecure\"",
        first.url, second.url, signer.url
    ));
    // Only the 481 may end this job, not the events' silence.
    cfg.config.supervisor.pipeline_dead_after = Duration::from_secs(600);
    let r = start_agent(cfg).await;
    assert_eq!(first.starts().len(), 1);
    wait_until("a first payment while streaming", || {
        !first.payments().is_empty()
    })
    .await;
    signer.inject(&[481]);
    wait_until("a fresh job on the second orchestrator", || {
        second.starts().len() == 1
    })
    .await;
    assert_eq!(first.starts().len(), 1, "not restarted on the refused one");
    assert!(signer.calls().iter().any(|c| c.status == 481));
    r.stop.trigger();
    within("agent stops", r.agent).await.unwrap().unwrap();
    first.stop();
    second.stop();
    signer.stop();
}

/// `/healthz` as JSON.
async fn healthz(addr: std::net::SocketAddr) -> serde_json::Value {
    let (_, body) = simple(addr, "GET", "/healthz", &[]).await;
    serde_json::from_slice(&body).unwrap()
}

/// Two orchestrators, the second an off-chain one answering later so the
/// job starts on the first.
async fn two_orchestrators(first: OrchOffer) -> (StandInOrchestrator, StandInOrchestrator) {
    two_orchestrators_after(first, OrchOffer::default()).await
}

/// Two orchestrators, `second` answering GetOrchestrator 500 ms later so
/// the job starts on `first` and fails over to `second`.
async fn two_orchestrators_after(
    first: OrchOffer,
    second: OrchOffer,
) -> (StandInOrchestrator, StandInOrchestrator) {
    let first = StandInOrchestrator::start(first, false).await;
    let second = StandInOrchestrator::start(
        OrchOffer {
            grpc_delay: Some(Duration::from_millis(500)),
            ..second
        },
        false,
    )
    .await;
    (first, second)
}

/// The config for `orchs`, with `extra` job keys; the events' silence may
/// not end a job here (600 s), only the trigger under test.
fn failover_config(orchs: &[&StandInOrchestrator], extra: &str) -> ResolvedConfig {
    let urls: Vec<String> = orchs.iter().map(|o| format!("\"{}\"", o.url)).collect();
    let mut cfg = config(&format!(
        "orchestrators = [{}]\norchestrator_tls = \"insecure\"\n{extra}",
        urls.join(", ")
    ));
    cfg.config.supervisor.pipeline_dead_after = Duration::from_secs(600);
    cfg
}

/// A detection on `orch`'s first job drives the rule: the outputs are on.
async fn rule_fires_on(orch: &StandInOrchestrator, r: &support::agent::RunningAgent) {
    let mid = orch.starts()[0].manifest_id.clone();
    publish_detection(&format!("{}{mid}-events", orch.trickle().base_url())).await;
    let h = r.handles.clone();
    wait_until("the rule fires on the first orchestrator's events", || {
        h.gpio.states_of("led").contains(&true)
    })
    .await;
}

/// After the rule turned the output on, it went back to failsafe.
fn outputs_went_to_failsafe(r: &support::agent::RunningAgent) {
    let states = r.handles.gpio.states_of("led");
    let on = states.iter().position(|s| *s).unwrap();
    assert!(
        states[on..].contains(&false),
        "outputs at failsafe between the jobs: {states:?}"
    );
}

/// The job now runs on `second`, one swap counted, and `/healthz` says why
/// the first job was given up.
async fn failed_over_to(
    r: &support::agent::RunningAgent,
    first: &StandInOrchestrator,
    second: &StandInOrchestrator,
    why: &str,
) {
    wait_until("a fresh job on the second orchestrator", || {
        second.starts().len() == 1
    })
    .await;
    let counters = r.handles.stats.livepeer.get().unwrap().clone();
    wait_until("the agent runs the job on the second orchestrator", || {
        counters.orchestrator().as_deref() == Some(second.url.as_str())
    })
    .await;
    assert_eq!(first.starts().len(), 1, "not restarted on the first one");
    outputs_went_to_failsafe(r);
    let addr = r.handles.supervisor_addr.expect("supervisor endpoint");
    let health = healthz(addr).await;
    assert_eq!(
        health["job"]["orchestrator"],
        second.url.as_str(),
        "{health}"
    );
    let reason = health["job"]["last_failover"].as_str().unwrap_or_default();
    assert!(reason.contains(why), "last_failover: {health}");
    assert_eq!(metric(addr, "trickle_edge_livepeer_swaps_total").await, 1.0);
}

/// The orchestrator removes the job's publish channel (or its events
/// channel): the job fails over at once, not after 30 s of silence (here
/// the silence limit is 600 s, so only the closure can move it).
async fn closed_channel_fails_over(suffix: &str, why: &str) {
    let (first, second) = two_orchestrators(OrchOffer::default()).await;
    let r = start_agent(failover_config(&[&first, &second], "")).await;
    assert_eq!(first.starts().len(), 1);
    rule_fires_on(&first, &r).await;
    let mid = first.starts()[0].manifest_id.clone();
    first
        .trickle()
        .state
        .close_channel(&format!("{mid}{suffix}"));
    failed_over_to(&r, &first, &second, why).await;
    r.stop.trigger();
    within("agent stops", r.agent).await.unwrap().unwrap();
    first.stop();
    second.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_publish_channel_fails_over_at_once_not_after_the_silence() {
    closed_channel_fails_over("", "publish channel was closed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_events_channel_fails_over_at_once_not_after_the_silence() {
    closed_channel_fails_over("-events", "events channel").await;
}

/// Payments stop (the signer fails every call): the orchestrator closes
/// the job's four channels, as go-livepeer does when the balance runs out,
/// and the agent fails over to the next orchestrator with outputs at
/// failsafe in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withheld_payments_close_the_channels_and_the_job_fails_over() {
    let (first, second) = two_orchestrators(OrchOffer {
        price_per_unit: 9,
        close_unpaid_after: Some(Duration::from_secs(8)),
        ..Default::default()
    })
    .await;
    let signer = StandInSigner::start(Vec::new()).await;
    let r = start_agent(failover_config(
        &[&first, &second],
        &format!("signer_url = \"{}\"", signer.url),
    ))
    .await;
    assert_eq!(first.starts().len(), 1);
    wait_until("a first payment while streaming", || {
        !first.payments().is_empty()
    })
    .await;
    rule_fires_on(&first, &r).await;
    // The signer breaks: no payment reaches the orchestrator any more.
    signer.inject(&[500; 4096]);
    wait_until_for(
        Duration::from_secs(60),
        "the orchestrator closes the unpaid job",
        || first.closed_unpaid().len() == 1,
    )
    .await;
    failed_over_to(&r, &first, &second, "closed by the orchestrator").await;
    assert!(signer.calls().iter().any(|c| c.status == 500));
    r.stop.trigger();
    within("agent stops", r.agent).await.unwrap().unwrap();
    first.stop();
    second.stop();
    signer.stop();
}

/// Output expected (`output_expected`): output segments keep the job where
/// it is; once they stop for `output_silent_after` (here 3 s), the job
/// fails over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_output_segment_while_output_is_expected_fails_over() {
    let (first, second) = two_orchestrators(OrchOffer::default()).await;
    let r = start_agent(failover_config(
        &[&first, &second],
        "output_expected = true\noutput_silent_after = \"3s\"",
    ))
    .await;
    rule_fires_on(&first, &r).await;
    let mid = first.starts()[0].manifest_id.clone();
    // The runner publishes processed video for twice the limit.
    let mut out = Publisher::connect(
        &format!("{}{mid}-out", first.trickle().base_url()),
        PublisherOptions::default(),
    )
    .await
    .unwrap();
    for _ in 0..12 {
        let mut seg = out.next_segment().await.unwrap();
        seg.write(Bytes::from_static(&[0x47; 188])).await.unwrap();
        seg.finish().await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        second.starts().is_empty(),
        "failed over while output flowed: {:?}",
        r.handles
            .stats
            .livepeer
            .get()
            .and_then(|l| l.last_failover())
    );
    // The output stops.
    drop(out);
    failed_over_to(&r, &first, &second, "no output segment").await;
    r.stop.trigger();
    within("agent stops", r.agent).await.unwrap().unwrap();
    first.stop();
    second.stop();
}

/// The orchestrator stops taking the camera's segments (its ingest
/// freezes): once 3 segments wait, the job fails over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_three_segments_behind_fails_over() {
    let (first, second) = two_orchestrators(OrchOffer {
        ingest_relay: true,
        ..Default::default()
    })
    .await;
    let r = start_agent(failover_config(&[&first, &second], "")).await;
    rule_fires_on(&first, &r).await;
    let media = r.handles.stats.media.clone();
    let published = || {
        media
            .segments_published
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    wait_until("3 segments accepted through the relay", || published() >= 3).await;
    first.stall_ingest();
    failed_over_to(&r, &first, &second, "segments behind").await;
    r.stop.trigger();
    within("agent stops", r.agent).await.unwrap().unwrap();
    first.stop();
    second.stop();
}

/// More than `max_swaps` (here 1) swaps within `swap_window`: the agent
/// backs off (shown in `/healthz` and `/metrics` while it lasts, logged)
/// and starts over from discovery with every refusal forgotten, so the
/// fastest orchestrator is tried first again. Without the start-over, both
/// orchestrators that failed would wait behind the third.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_swaps_than_allowed_back_off_and_start_over_from_discovery() {
    let logs = support::tracing::LogCapture::new(tracing::Level::WARN);
    tracing::subscriber::set_global_default(logs.clone()).unwrap();
    let a = StandInOrchestrator::start(OrchOffer::default(), false).await;
    let later = |ms| OrchOffer {
        grpc_delay: Some(Duration::from_millis(ms)),
        ..Default::default()
    };
    let b = StandInOrchestrator::start(later(400), false).await;
    let c = StandInOrchestrator::start(later(800), false).await;
    let r = start_agent(failover_config(
        &[&a, &b, &c],
        "max_swaps = 1\nswap_window = \"10m\"\nswap_backoff = \"4s\"",
    ))
    .await;
    let close_publish = |o: &StandInOrchestrator, n: usize| {
        let mid = o.starts()[n].manifest_id.clone();
        o.trickle().state.close_channel(&mid);
    };
    assert_eq!(a.starts().len(), 1);
    close_publish(&a, 0);
    wait_until("first swap: to b", || b.starts().len() == 1).await;
    let addr = r.handles.supervisor_addr.expect("supervisor endpoint");
    assert_eq!(
        metric(addr, "trickle_edge_livepeer_swap_backoffs_total").await,
        0.0
    );
    close_publish(&b, 0);
    let counters = r.handles.stats.livepeer.get().unwrap().clone();
    wait_until("the back-off begins", || {
        counters
            .backing_off_until_unix_ms
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    })
    .await;
    let metrics = trickle_edge::agent::http::metrics(&r.handles.stats);
    assert!(
        metrics.contains("trickle_edge_livepeer_backing_off 1"),
        "{metrics}"
    );
    let health = trickle_edge::agent::http::healthz(&r.handles.stats).1;
    assert!(
        health["job"]["backing_off_until_unix_ms"]
            .as_u64()
            .is_some(),
        "{health}"
    );
    assert_eq!(health["job"]["swap_backoffs"], 1, "{health}");
    wait_until("after the back-off, a job on a again", || {
        a.starts().len() == 2
    })
    .await;
    assert!(c.starts().is_empty(), "c was tried: refusals not forgotten");
    assert_eq!(
        metric(addr, "trickle_edge_livepeer_swap_backoffs_total").await,
        1.0
    );
    assert_eq!(metric(addr, "trickle_edge_livepeer_backing_off").await, 0.0);
    assert_eq!(
        logs.count(tracing::Level::WARN, "backing off"),
        1,
        "{:?}",
        logs.events()
    );
    r.stop.trigger();
    within("agent stops", r.agent).await.unwrap().unwrap();
    a.stop();
    b.stop();
    c.stop();
}

/// The Python that has pytrickle 0.1.6 (as `tests/worker_pytrickle.rs`
/// finds it): without it the test fails, never skips.
fn pytrickle_python() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("TRICKLE_EDGE_PYTRICKLE_PYTHON").filter(|p| !p.is_empty()) {
        return p.into();
    }
    let venv = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/pytrickle-venv/bin/python");
    assert!(
        venv.exists(),
        "pytrickle 0.1.6 is missing: set TRICKLE_EDGE_PYTRICKLE_PYTHON \
         (`bash ci/pytrickle-venv.sh` makes the venv)"
    );
    venv
}

/// A real pytrickle 0.1.6 worker (`tests/interop/pytrickle_worker.py`, the
/// ball finder) runs as the stand-in orchestrator's runner: the orchestrator
/// starts it on the job's channels, it reads the agent's camera from the
/// publish channel, and its detections come back to the agent on the
/// job's events channel (LV2V has no data channel), where they drive the
/// rule exactly as data-channel items would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pytrickle_runner_behind_the_orchestrator_drives_a_rule_through_the_events_channel() {
    use tokio::io::AsyncBufReadExt;
    let port = support::net::free_port();
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop/pytrickle_worker.py");
    let mut worker = tokio::process::Command::new(pytrickle_python())
        .arg(script)
        .arg(port.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the pytrickle worker");
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let stdout = worker.stdout.take().unwrap();
    tokio::spawn(async move {
        let mut r = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(l)) = r.next_line().await {
            sink.lock().unwrap().push(l);
        }
    });
    let said = |word: &str| lines.lock().unwrap().iter().any(|l| l.starts_with(word));
    // Importing torch takes a while on a busy machine.
    wait_until_for(
        Duration::from_secs(90),
        "the pytrickle worker listens",
        || said("READY"),
    )
    .await;
    let orch = StandInOrchestrator::start(
        OrchOffer {
            runner: Some(format!("http://127.0.0.1:{port}")),
            ..Default::default()
        },
        false,
    )
    .await;
    let mut cfg = failover_config(&[&orch], "");
    cfg.config.camera.fps = 15;
    let r = start_agent(cfg).await;
    wait_until("the orchestrator started its runner", || {
        !orch.runner_starts().is_empty()
    })
    .await;
    let started = orch.runner_starts()[0].clone();
    assert!(started.is_ok(), "the runner refused the start: {started:?}");
    let h = r.handles.clone();
    wait_until_for(
        Duration::from_secs(90),
        "a GPIO activation from a pytrickle detection on the events channel",
        || h.gpio.states_of("led").contains(&true),
    )
    .await;
    assert!(said("FIRST_FRAME"), "{:?}", lines.lock().unwrap());
    assert!(orch.bridged_events() >= 1);
    let items = r
        .handles
        .stats
        .data
        .items
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(items >= 1, "the events reader counted the detections");
    r.stop.trigger();
    within("agent stops", r.agent).await.unwrap().unwrap();
    orch.stop();
    let _ = worker.start_kill();
    let _ = worker.wait().await;
}
