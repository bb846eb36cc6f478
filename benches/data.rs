//! Data path benchmarks (`cargo bench --bench data`):
//! 1. latency from a data line handed to the publisher to the simulated GPIO
//!    transition it causes, through a real trickle server on loopback;
//! 2. items per second through decode + 20 rules on one thread;
//! 3. resident memory with 100 rules.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use trickle_edge::actions::{OutputConfig, Outputs, SimulatedGpio};
use trickle_edge::agent::data_path::{ChannelReader, DataPathStats, RulesStage};
use trickle_edge::data::{DecodeLimits, SegmentDecoder};
use trickle_edge::rules::{RuleConfig, RuleSet};
use trickle_edge::shutdown::ShutdownTrigger;
use trickle_edge::trickle::{
    Publisher, PublisherOptions, ServerConfig, Subscriber, SubscriberOptions, server,
};

fn rss_kb() -> u64 {
    trickle_edge::procfs::Proc::Current.rss_kib().unwrap_or(0)
}

fn rules_from(toml_text: &str) -> Vec<RuleConfig> {
    #[derive(serde::Deserialize)]
    struct F {
        rules: Vec<RuleConfig>,
    }
    toml::from_str::<F>(toml_text)
        .expect("bench rules parse")
        .rules
}

/// `n` rules of the kinds users write: detections in zones, field tests,
/// debounce, cooldown, hold, rate limit.
fn many_rules(n: usize) -> Vec<RuleConfig> {
    let mut text = String::new();
    for i in 0..n {
        let x0 = (i % 10) as f64 / 10.0;
        let body = match i % 5 {
            0 => format!("match = {{ type = \"detection\", label = [\"person\", \"ball\"], min_confidence = 0.5, zone = {{ rect = [{x0}, 0.0, {}, 1.0] }} }}\ndebounce = \"2 of 3\"", x0 + 0.1),
            1 => "match = { type = \"detection\", label = \"dog\", min_confidence = 0.4 }\ncooldown = \"1s\"".to_string(),
            2 => "where = [{ path = \"/timestamp\", gt = 5.0 }, { path = \"/type\", one_of = [\"detection\", \"status\"] }]\nrate_limit = \"5/1s\"".to_string(),
            3 => "match = { type = \"transcription\" }\nwhere = [{ path = \"/text\", regex = \"^(hello|stop)\" }]".to_string(),
            _ => "match = { type = \"detection\", any = \"/boxes\", zone = { polygon = [[0.0, 0.0], [0.5, 0.0], [0.5, 0.5]] } }\nhold = \"2s\"".to_string(),
        };
        text.push_str(&format!(
            "[[rules]]\nname = \"r{i}\"\n{body}\nthen = [{{ output = \"out\" }}]\n\n"
        ));
    }
    rules_from(&text)
}

fn jsonl_batch(lines: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..lines {
        let x = (i % 100) as f64 / 100.0;
        out.extend_from_slice(
            format!(
                "[{{\"type\":\"detection\",\"timestamp\":{}.5,\"boxes\":[{{\"label\":\"ball\",\"confidence\":0.9,\"x\":{x},\"y\":0.4,\"w\":0.1,\"h\":0.1}},{{\"label\":\"dog\",\"confidence\":0.45,\"x\":0.5,\"y\":0.5,\"w\":0.2,\"h\":0.2}}]}},{{\"type\":\"transcription\",\"timestamp\":{}.7,\"text\":\"hello there\"}}]\n",
                i, i
            )
            .as_bytes(),
        );
    }
    out
}

fn throughput() {
    let mut rules = RuleSet::new(many_rules(20)).unwrap();
    let data = jsonl_batch(20_000);
    let channel: Arc<str> = Arc::from("data");
    let start = std::time::Instant::now();
    let mut items = 0u64;
    let mut effects = 0u64;
    let rounds = 10;
    for round in 0..rounds {
        let mut dec = SegmentDecoder::new(
            channel.clone(),
            round,
            Some("application/jsonl"),
            DecodeLimits::default(),
        );
        for chunk in data.chunks(64 * 1024) {
            let now = Instant::now();
            for item in dec.push(chunk, now) {
                items += 1;
                effects += rules.on_item(&item, now).len() as u64;
            }
        }
        let (rest, _) = dec.finish(Instant::now());
        items += rest.len() as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "decode + 20 rules, one thread: {:.0} items/s ({items} items, {effects} effects, {:.1} MB of JSONL in {secs:.2} s)",
        items as f64 / secs,
        (data.len() * rounds as usize) as f64 / 1e6
    );
    println!(
        "BENCH data_throughput items_per_s={:.0}",
        items as f64 / secs
    );
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    trickle_edge::agent::metrics::sample_quantile(v, p).unwrap_or(f64::NAN)
}

async fn latency(samples: usize) {
    let srv = server::start(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        channels: vec![("data".into(), Some("application/jsonl".into()))],
        ..Default::default()
    })
    .await
    .unwrap();
    let url = format!("{}data", srv.base_url());
    let outputs_cfg: BTreeMap<String, OutputConfig> =
        toml::from_str("[led]\ntype = \"gpio\"\nbackend = \"simulated\"\nline = \"led\"\n")
            .unwrap();
    let sim = SimulatedGpio::default();
    let outputs = Arc::new(Outputs::build_with(&outputs_cfg, sim.clone()).unwrap());
    let rules = RuleSet::new(rules_from(
        "[[rules]]\nname = \"on\"\nwhere = [{ path = \"/on\", eq = true }]\nthen = [{ output = \"led\", action = \"set\" }]\n\
         [[rules]]\nname = \"off\"\nwhere = [{ path = \"/on\", eq = false }]\nthen = [{ output = \"led\", action = \"clear\" }]\n",
    ))
    .unwrap();
    let stats = Arc::new(DataPathStats::default());
    let (_stop, shutdown) = ShutdownTrigger::new();
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let sub = Subscriber::new(
        &url,
        SubscriberOptions {
            start_seq: 0,
            ..Default::default()
        },
    )
    .unwrap();
    // Held to the end of the run: dropping a stage's handle stops it.
    let _reader = ChannelReader {
        subscriber: sub,
        channel: Arc::from("data"),
        limits: DecodeLimits::default(),
        items: tx,
        stats: stats.clone(),
        health: None,
        watch: None,
    }
    .spawn(&shutdown);
    let _rules = RulesStage {
        rules,
        outputs: outputs.clone(),
        items: rx,
        stats: stats.clone(),
    }
    .spawn(&shutdown);

    let mut publisher = Publisher::connect(
        &url,
        PublisherOptions {
            content_type: "application/jsonl".into(),
            start_seq: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let base = sim.transition_count(); // start-up failsafe writes
    let mut lat = Vec::with_capacity(samples);
    let per_segment = 1000;
    let mut w = None;
    for i in 0..samples {
        if i % per_segment == 0 {
            if let Some(old) = w.take() {
                let old: trickle_edge::trickle::SegmentUpload = old;
                old.finish().await.unwrap();
            }
            w = Some(publisher.next_segment().await.unwrap());
        }
        let line = Bytes::from(format!("[{{\"on\":{}}}]\n", i % 2 == 0));
        let t0 = Instant::now();
        w.as_mut().unwrap().write(line).await.unwrap();
        let n = base + i + 1;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(t) = sim.transition(n - 1) {
                lat.push(t.at.duration_since(t0).as_secs_f64() * 1e3);
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "transition {n} never came"
            );
            tokio::task::yield_now().await;
        }
    }
    if let Some(w) = w {
        w.finish().await.unwrap();
    }
    let (p50, p99, max) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99), pct(&mut lat, 1.0));
    println!(
        "data line written -> simulated GPIO transition: p50 {p50:.3} ms, p99 {p99:.3} ms, max {max:.3} ms ({samples} items)"
    );
    println!(
        "BENCH data_latency p50_ms={p50:.3} p99_ms={p99:.3} max_ms={max:.3} samples={samples}"
    );
}

fn memory() {
    let data = jsonl_batch(2_000);
    let before = rss_kb();
    let mut rules = RuleSet::new(many_rules(100)).unwrap();
    let built = rss_kb();
    let mut dec = SegmentDecoder::new(
        Arc::from("data"),
        0,
        Some("application/jsonl"),
        DecodeLimits::default(),
    );
    let now = Instant::now();
    let mut items = 0;
    for chunk in data.chunks(64 * 1024) {
        for item in dec.push(chunk, now) {
            rules.on_item(&item, now);
            items += 1;
        }
    }
    let after = rss_kb();
    println!(
        "RSS with 100 rules: process {after} KiB; building the rules added {} KiB, running {items} items through them {} KiB more",
        built.saturating_sub(before),
        after.saturating_sub(built)
    );
    println!(
        "BENCH data_memory rss_kib={after} rules_kib={}",
        built.saturating_sub(before)
    );
}

fn main() {
    memory();
    throughput();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(latency(10_000));
}
