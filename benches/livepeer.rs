//! `job.mode = "livepeer"` against the stand-in orchestrator and signer of
//! `tests/support/livepeer.rs` (proven against Livepeer's Python SDK in
//! `tests/livepeer_sdk.rs`), in the release profile:
//!
//! - job start: the orchestrator receiving `GetOrchestrator` to the first
//!   camera segment accepted on the job's channel (the agent in process,
//!   test camera 320x240 30 fps, x264, 1 s GOPs);
//! - failover gap: the last segment accepted on orchestrator A to the first
//!   accepted on B, A closing the job's publish channel right after a
//!   segment was accepted (the immediate-failover trigger);
//! - the payment loop's cost: a priced job's start and payment loop alone
//!   (no camera, no agent) in this process, the stand-ins in a child
//!   process, for `LP_PAY_SECONDS` (default 180); CPU (all threads, from
//!   `/proc/self/task/*/schedstat`, ns) and RSS growth after a 10 s warm-up,
//!   extrapolated to an hour.
//!
//! Prints `BENCH livepeer_start`, `BENCH livepeer_failover` and
//! `BENCH livepeer_payments` lines for bench/run.

#[allow(dead_code)]
#[path = "../tests/support/livepeer.rs"]
mod livepeer_standin;

/// The test kit's in-process agent (and the waits it uses).
#[allow(dead_code)]
#[path = "../tests/support"]
mod support {
    pub mod agent;
    pub mod time;
}

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use livepeer_standin::{OrchOffer, StandInOrchestrator, StandInSigner};
use support::agent::start_agent;
use tokio::sync::mpsc;
use trickle_edge::config::{AgentConfig, JobMode, ResolvedConfig};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(orchs: &[&str], extra: &str) -> ResolvedConfig {
    let list: Vec<String> = orchs.iter().map(|o| format!("\"{o}\"")).collect();
    let text = format!(
        r#"
[camera]
source = "test"
width = 320
height = 240
fps = 30
[encoder]
kind = "x264"
bitrate_kbps = 500
[job]
mode = "livepeer"
model_id = "noop"
orchestrators = [{}]
orchestrator_tls = "insecure"
{extra}
[supervisor]
listen = "127.0.0.1:0"
pipeline_dead_after = "600s"
"#,
        list.join(", ")
    );
    let config: AgentConfig = toml::from_str(&text).unwrap();
    ResolvedConfig {
        path: "bench".into(),
        preset: None,
        config,
        token: None,
        warnings: vec![],
    }
}

async fn poll_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn stats(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

async fn job_start(runs: u64) {
    let mut ms = Vec::new();
    for _ in 0..runs {
        let orch = StandInOrchestrator::start(OrchOffer::default(), false).await;
        let a = start_agent(config(&[&orch.url], "")).await;
        let mut first = a.handles.stats.media.first_published.subscribe();
        first.wait_for(|v| *v).await.unwrap();
        ms.push((Instant::now() - orch.grpc_at()[0]).as_secs_f64() * 1000.0);
        a.stop.trigger();
        let _ = a.agent.await;
        orch.stop();
    }
    let (min, p50, max) = stats(&mut ms);
    println!(
        "job start (GetOrchestrator -> first segment accepted), {runs} runs: min {min:.0} ms, median {p50:.0} ms, max {max:.0} ms"
    );
    println!("BENCH livepeer_start runs={runs} min_ms={min:.0} p50_ms={p50:.0} max_ms={max:.0}");
}

async fn failover_gap(runs: u64) {
    let mut ms = Vec::new();
    for _ in 0..runs {
        let a_orch = StandInOrchestrator::start(OrchOffer::default(), false).await;
        // B answers later at first, so the job starts on A; then promptly.
        let b_orch = StandInOrchestrator::start(
            OrchOffer {
                grpc_delay: Some(Duration::from_millis(500)),
                ..Default::default()
            },
            false,
        )
        .await;
        let agent = start_agent(config(&[&a_orch.url, &b_orch.url], "")).await;
        b_orch.set_offer(|o| o.grpc_delay = None);
        let media = agent.handles.stats.media.clone();
        let published = || media.segments_published.load(Ordering::Relaxed);
        poll_until("3 segments on A", Duration::from_secs(60), || {
            published() >= 3
        })
        .await;
        // Right after a segment is accepted, A removes the publish channel.
        let n = published();
        poll_until("the next segment on A", Duration::from_secs(30), || {
            published() > n
        })
        .await;
        let last_on_a = Instant::now() - media.last_published_age().unwrap();
        let at_close = published();
        let mid = a_orch.starts()[0].manifest_id.clone();
        a_orch.trickle().state.close_channel(&mid);
        let counters = agent.handles.stats.livepeer.get().unwrap().clone();
        poll_until("the first segment on B", Duration::from_secs(60), || {
            counters.orchestrator().as_deref() == Some(b_orch.url.as_str())
                && published() > at_close
                && b_orch
                    .starts()
                    .first()
                    .and_then(|s| b_orch.trickle().state.channel(&s.manifest_id))
                    .is_some()
        })
        .await;
        let first_on_b = Instant::now() - media.last_published_age().unwrap();
        ms.push((first_on_b - last_on_a).as_secs_f64() * 1000.0);
        agent.stop.trigger();
        let _ = agent.agent.await;
        a_orch.stop();
        b_orch.stop();
    }
    let (min, p50, max) = stats(&mut ms);
    println!(
        "failover gap (last segment accepted on A -> first on B, A closed the publish channel), {runs} runs: min {min:.0} ms, median {p50:.0} ms, max {max:.0} ms"
    );
    println!("BENCH livepeer_failover runs={runs} min_ms={min:.0} p50_ms={p50:.0} max_ms={max:.0}");
}

/// CPU time of every thread of this process, in seconds.
fn cpu_s() -> f64 {
    let mut ns = 0u64;
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
            ns += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    ns as f64 / 1e9
}

fn rss_kib() -> f64 {
    trickle_edge::procfs::Proc::Current.rss_kib().unwrap_or(0) as f64
}

/// The child: a priced stand-in orchestrator and a signer; prints their
/// URLs, then answers `count` on stdin with the payments received.
async fn serve_stand_ins() {
    let orch = StandInOrchestrator::start(
        OrchOffer {
            price_per_unit: 3,
            ..Default::default()
        },
        false,
    )
    .await;
    let signer = StandInSigner::start(vec![orch.url.clone()]).await;
    println!("{} {}", orch.url, signer.url);
    std::io::stdout().flush().unwrap();
    let (tx, mut rx) = mpsc::channel::<String>(4);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = rx.recv().await {
        if line.trim() == "count" {
            println!("{}", orch.payments().len());
            std::io::stdout().flush().unwrap();
        }
    }
}

async fn payment_loop(seconds: u64) {
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .arg("--stand-ins")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let mut urls = line.split_whitespace();
    let (orch_url, signer_url) = (urls.next().unwrap(), urls.next().unwrap());
    let cfg = config(&[orch_url], &format!("signer_url = \"{signer_url}\""));
    let JobMode::Livepeer(l) = &cfg.config.job else {
        unreachable!()
    };
    let client = trickle_edge::trickle::ClientOptions::default();
    let network = Arc::new(
        trickle_edge::livepeer::network::Network::new(
            trickle_edge::job::livepeer::network_config(l).unwrap(),
            &client,
        )
        .unwrap(),
    );
    // Media "moves" every second, as a camera's segments would.
    let t0 = Instant::now();
    let segments: trickle_edge::job::livepeer::SegmentCount = Default::default();
    let _ = segments.set(Arc::new(move || t0.elapsed().as_secs()));
    let counters = Default::default();
    let started = trickle_edge::job::livepeer::start(
        &network,
        Default::default(),
        &client,
        "bench",
        &segments,
        &counters,
    )
    .await
    .expect("the priced job starts");
    let count = |stdin: &mut std::process::ChildStdin, out: &mut std::io::BufReader<_>| {
        writeln!(stdin, "count").unwrap();
        let mut l = String::new();
        std::io::BufRead::read_line(out, &mut l).unwrap();
        l.trim().parse::<u64>().unwrap()
    };
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (c0, r0, p0, w0) = (
        cpu_s(),
        rss_kib(),
        count(&mut stdin, &mut out),
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (c1, r1, p1, w1) = (
        cpu_s(),
        rss_kib(),
        count(&mut stdin, &mut out),
        Instant::now(),
    );
    let wall = (w1 - w0).as_secs_f64();
    let per_h = 3600.0 / wall;
    let cpu_h = (c1 - c0) * per_h;
    let rss_h_kib = (r1 - r0) * per_h;
    let payments = p1 - p0;
    println!(
        "payment loop over {wall:.0} s: {payments} payments, CPU {:.3} s ({:.4} % of a core) -> {cpu_h:.1} CPU s per hour; RSS {:.1} -> {:.1} MiB ({:+.0} KiB) -> {rss_h_kib:+.0} KiB per hour (extrapolated)",
        c1 - c0,
        100.0 * (c1 - c0) / wall,
        r0 / 1024.0,
        r1 / 1024.0,
        r1 - r0
    );
    println!(
        "BENCH livepeer_payments seconds={wall:.0} payments={payments} cpu_s={:.3} cpu_s_per_h={cpu_h:.1} cpu_pct={:.4} rss_mib={:.1} rss_kib_per_h={rss_h_kib:.0} cpu_ms_per_payment={:.2}",
        c1 - c0,
        100.0 * (c1 - c0) / wall,
        r1 / 1024.0,
        1000.0 * (c1 - c0) / payments.max(1) as f64
    );
    let _ = started.stream.stop().await;
    drop(stdin);
    let _ = child.wait();
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if std::env::args().any(|a| a == "--stand-ins") {
        rt.block_on(serve_stand_ins());
        return;
    }
    let runs = env_u64("LP_RUNS", 5);
    rt.block_on(async {
        job_start(runs).await;
        failover_gap(runs).await;
        payment_loop(env_u64("LP_PAY_SECONDS", 180)).await;
    });
}
