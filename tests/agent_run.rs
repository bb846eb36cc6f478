//! `run` end to end, in process: test camera → our trickle server → the
//! reference worker → data channel → rules → simulated GPIO; then the
//! pipeline-dead path when the worker dies.

mod support;

use support::agent::{resolved, start_agent};

use std::sync::atomic::Ordering;

use support::http::simple;
use support::time::{wait_until, within};
use support::tmp::temp_dir;
use trickle_edge::config::ResolvedConfig;
use trickle_edge::worker::{WorkerConfig, WorkerHandle};

fn config(worker_url: &str, dead_after: &str, log: &std::path::Path) -> ResolvedConfig {
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
mode = "worker"
worker_url = "{worker_url}"
listen = "127.0.0.1:0"
channel_prefix = "e2e"
[supervisor]
listen = "127.0.0.1:0"
pipeline_dead_after = "{dead_after}"
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detections_reach_the_simulated_gpio_and_metrics_parse() {
    let worker = WorkerHandle::start("127.0.0.1:0".parse().unwrap(), WorkerConfig::default())
        .await
        .unwrap();
    let dir = temp_dir("e2e");
    let r = start_agent(config(&worker.url(), "30s", &dir.join("events.jsonl"))).await;
    let h = r.handles.clone();
    wait_until("a GPIO activation from a detection", || {
        h.gpio.states_of("led").contains(&true)
    })
    .await;
    wait_until("three segments", || {
        h.stats.media.segments_published.load(Ordering::Relaxed) >= 3
    })
    .await;

    // The bound comes from this run: detections must act far faster than the
    // camera makes segments (one GOP), measured here as the mean interval.
    let segs = h.stats.media.segments_published.load(Ordering::Relaxed) as f64;
    let gop_interval = h.stats.started.elapsed().as_secs_f64() / segs;
    let p99 = h
        .stats
        .data
        .item_to_effect
        .quantile(0.99)
        .expect("item-to-effect observed");
    assert!(
        p99 < gop_interval / 10.0,
        "item->effect p99 {p99}s vs segment interval {gop_interval}s"
    );

    // /metrics parses as Prometheus text and carries the counters.
    let addr = h.supervisor_addr.expect("supervisor endpoint");
    let (head, body) = simple(addr, "GET", "/metrics", &[]).await;
    assert_eq!(head.status, 200);
    let text = String::from_utf8(body).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("valid exposition");
    let value = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .unwrap_or_else(|| panic!("{name} missing from /metrics"))
    };
    assert!(value("trickle_edge_segments_published_total") >= 3.0);
    assert!(value("trickle_edge_data_items_total") >= 1.0);
    assert!(value("trickle_edge_rule_fires_total") >= 1.0);
    // The runtime's task gauge counts at least this scrape's connection task.
    assert!(value("trickle_edge_tokio_alive_tasks") >= 1.0);
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "trickle_edge_item_to_effect_seconds"
                && matches!(s.value, prometheus_parse::Value::Histogram(_)))
    );
    let (head, body) = simple(addr, "GET", "/healthz", &[]).await;
    assert_eq!(head.status, 200);
    let health: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["pipeline"]["state"], "alive");

    r.stop.trigger();
    within("agent stops", r.agent).await.unwrap().unwrap();
    // Stopped: the line is back in its failsafe (inactive) state.
    assert_eq!(h.gpio.states_of("led").last(), Some(&false));
    worker.shutdown().await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_stream_gives_failsafe_then_a_restarted_job() {
    let worker = WorkerHandle::start("127.0.0.1:0".parse().unwrap(), WorkerConfig::default())
        .await
        .unwrap();
    let addr = worker.local_addr();
    let dir = temp_dir("dead");
    let r = start_agent(config(&worker.url(), "3s", &dir.join("events.jsonl"))).await;
    let h = r.handles.clone();
    wait_until("GPIO active", || {
        h.gpio.states_of("led").last() == Some(&true)
    })
    .await;

    // The worker dies: no more events. The agent must notice, put the line in
    // failsafe, and start the job again once a worker answers.
    worker.shutdown().await;
    wait_until("pipeline declared dead", || {
        h.stats.pipeline_deaths.load(Ordering::Relaxed) >= 1
    })
    .await;
    wait_until("failsafe applied", || {
        h.gpio.states_of("led").last() == Some(&false)
    })
    .await;
    let worker = WorkerHandle::start(addr, WorkerConfig::default())
        .await
        .unwrap();
    wait_until("job restarted", || {
        h.stats.job_restarts.load(Ordering::Relaxed) >= 1
    })
    .await;
    wait_until("detections again", || {
        h.gpio.states_of("led").last() == Some(&true)
    })
    .await;

    r.stop.trigger();
    within("agent stops", r.agent).await.unwrap().unwrap();
    worker.shutdown().await;
    std::fs::remove_dir_all(dir).ok();
}

/// A worker that accepts every call and then says nothing: the job starts,
/// no event ever comes, the pipeline is declared dead again and again.
async fn silent_worker(listener: tokio::net::TcpListener) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = 0;
            // Headers, then as much body as Content-Length says.
            loop {
                let Ok(n) = sock.read(&mut buf[got..]).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                got += n;
                let text = String::from_utf8_lossy(&buf[..got]).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0usize);
                    if got >= end + 4 + len {
                        break;
                    }
                }
            }
            let _ = sock
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
                .await;
        });
    }
}

/// Issue 14: the job backoff reset on the next tick after every restart, so
/// a job that started and died silently was restarted at the shortest delay
/// forever. It now grows until the job is heard from, and resets then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_restart_backoff_grows_until_the_job_is_heard_from() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(silent_worker(listener));
    let dir = temp_dir("backoff");
    let r = start_agent(config(
        &format!("http://{addr}"),
        "1s",
        &dir.join("events.jsonl"),
    ))
    .await;
    let h = r.handles.clone();
    wait_until("three restarts without a word from the job", || {
        h.stats.job_restarts_unheard.load(Ordering::Relaxed) >= 3
    })
    .await;
    assert!(h.stats.job_restarts.load(Ordering::Relaxed) >= 3);

    // A real worker on the same address: heard from, the backoff resets.
    silent.abort();
    let _ = silent.await;
    let worker = WorkerHandle::start(addr, WorkerConfig::default())
        .await
        .unwrap();
    wait_until("the job heard from again", || {
        h.stats.job_restarts_unheard.load(Ordering::Relaxed) == 0
    })
    .await;
    let addr = h.supervisor_addr.expect("supervisor endpoint");
    let (_, body) = simple(addr, "GET", "/healthz", &[]).await;
    let health: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(health["job"]["restarts_unheard"], 0);
    r.stop.trigger();
    within("agent stops", r.agent).await.unwrap().unwrap();
    worker.shutdown().await;
    std::fs::remove_dir_all(dir).ok();
}

/// Issue 15 item 4 under `run`: 100,000 detections in one data segment used
/// to leave 46,171 lines in the log (`trickle_edge_output_dropped_total
/// {output="plog"} 53829`) and no warning. Every effect reaches the log; a
/// slow webhook beside it, whose overflow file is small, drops what that
/// file cannot hold, and `/metrics` says exactly how many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_100000_detections_reaches_the_log_whole_under_run() {
    use support::net::{readers_waiting, start_server, test_config};
    const N: u64 = 100_000;
    let server = start_server(test_config(), &["cam", "data"]).await;
    let base = server.base_url();
    let (hook, answered, _hook_stop) =
        support::http::slow_webhook(std::time::Duration::from_millis(20)).await;
    let dir = temp_dir("burst-run");
    let log = dir.join("plog.jsonl");
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
mode = "static"
publish_url = "{base}cam"
data_url = "{base}data"
[supervisor]
listen = "127.0.0.1:0"
[outputs.plog]
type = "log"
path = "{log}"
max_bytes = 1000000000
[outputs.slow]
type = "webhook"
url = "http://{hook}/hook"
queue = 4
max_attempts = 1
spill_dir = "{spill}"
spill_max_bytes = 2000
[[rules]]
name = "any"
match = {{ type = "detection" }}
then = [{{ output = "plog" }}, {{ output = "slow" }}]
"#,
        log = log.display(),
        spill = dir.join("spill").display()
    );
    let r = start_agent(resolved(&text)).await;
    readers_waiting(&server, "data", 0, 1).await;
    let url = format!("{base}data");
    support::net::publish_detection_burst(&url, N).await;
    support::net::wait_for_lines(&log, N).await;
    let hooked = answered.load(Ordering::Relaxed);
    assert!(hooked < N / 10, "the webhook answered {hooked} of {N}");
    let addr = r.handles.supervisor_addr.expect("supervisor endpoint");
    let metrics = || async {
        let (_, body) = simple(addr, "GET", "/metrics", &[]).await;
        String::from_utf8(body).unwrap()
    };
    // The webhook drains what its queue and overflow file hold.
    support::time::wait_for_some("the webhook drained", || async {
        let m = metrics().await;
        let done = ["sent", "errors", "dropped"]
            .iter()
            .map(|k| metric_of(&m, &format!("trickle_edge_output_{k}_total"), "slow"))
            .sum::<u64>();
        (done == N).then_some(())
    })
    .await;
    let metrics = metrics().await;
    let sample = |name: &str, output: &str| -> u64 {
        let key = format!("{name}{{output=\"{output}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .unwrap_or_else(|| panic!("{key} missing from /metrics:\n{metrics}"))
            .trim()
            .parse::<f64>()
            .unwrap() as u64
    };
    assert_eq!(sample("trickle_edge_output_fired_total", "plog"), N);
    assert_eq!(sample("trickle_edge_output_dropped_total", "plog"), 0);
    assert!(sample("trickle_edge_output_spilled_total", "plog") > 0);
    assert_eq!(sample("trickle_edge_output_sent_total", "plog"), N);
    assert_eq!(sample("trickle_edge_output_fired_total", "slow"), N);
    let answered = answered.load(Ordering::Relaxed);
    assert_eq!(sample("trickle_edge_output_sent_total", "slow"), answered);
    assert_eq!(
        sample("trickle_edge_output_dropped_total", "slow"),
        N - answered
    );
    assert!(sample("trickle_edge_output_spilled_total", "slow") > 0);
    r.stop.trigger();
    within("agent stops", r.agent).await.unwrap().unwrap();
    std::fs::remove_dir_all(dir).ok();
}

/// The value of `name{output="…"}` in a /metrics text; 0 when absent.
fn metric_of(metrics: &str, name: &str, output: &str) -> u64 {
    let key = format!("{name}{{output=\"{output}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}
