//! The reference worker end to end: a real trickle server on loopback, a real
//! MPEG-TS stream made by GStreamer at test time, the worker started through
//! its HTTP API, and every output channel read back.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use serde_json::{Value, json};
use support::http::{post, simple};
use support::net::{start_server, test_config};
use support::time::{wait_for_some, within};
use tokio::sync::{Mutex, mpsc};
use trickle_edge::data::{DecodeLimits, SegmentDecoder};
use trickle_edge::rules::{Effect, RuleConfig, RuleSet};
use trickle_edge::trickle::{Publisher, PublisherOptions, Subscriber, SubscriberOptions};
use trickle_edge::worker::{State, Status, WorkerConfig, WorkerHandle};

const W: usize = 320;
const H: usize = 240;
const FPS: usize = 10;

/// Runs a GStreamer pipeline ending in `appsink name=sink` and returns its buffers.
fn pull_all(desc: &str) -> Vec<gst::Buffer> {
    gst::init().unwrap();
    let pipeline = gst::parse::launch(desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut out = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        out.push(sample.buffer_owned().unwrap());
    }
    pipeline.set_state(gst::State::Null).unwrap();
    out
}

fn source(pattern: &str, seconds: usize) -> String {
    format!(
        "videotestsrc pattern={pattern} num-buffers={} ! video/x-raw,width={W},height={H},framerate={FPS}/1",
        seconds * FPS
    )
}

/// One-second GOPs of MPEG-TS, each cut where mpegtsmux marks a keyframe
/// (the first buffer without DELTA_UNIT), so each starts with PAT/PMT + IDR.
fn ts_segments(pattern: &str, seconds: usize) -> Vec<Bytes> {
    let desc = format!(
        "{} ! x264enc key-int-max={FPS} tune=zerolatency speed-preset=ultrafast ! \
         h264parse config-interval=-1 ! mpegtsmux ! appsink name=sink sync=false",
        source(pattern, seconds)
    );
    let mut segments: Vec<Vec<u8>> = Vec::new();
    for buf in pull_all(&desc) {
        let key = !buf.flags().contains(gst::BufferFlags::DELTA_UNIT);
        if key || segments.is_empty() {
            segments.push(Vec::new());
        }
        segments
            .last_mut()
            .unwrap()
            .extend_from_slice(&buf.map_readable().unwrap());
    }
    segments.into_iter().map(Bytes::from).collect()
}

/// The ball's centre in every raw frame, normalised: the centroid of the
/// bright pixels of the uncompressed source, computed independently of the
/// worker's detector (no encoding, no blobs, full resolution).
fn true_centres(seconds: usize) -> Vec<[f64; 2]> {
    let desc = format!(
        "{} ! videoconvert ! video/x-raw,format=GRAY8 ! appsink name=sink sync=false",
        source("ball", seconds)
    );
    pull_all(&desc)
        .iter()
        .filter_map(|buf| {
            let map = buf.map_readable().unwrap();
            let stride = map.len() / H;
            let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
            for y in 0..H {
                for x in 0..W {
                    if map[y * stride + x] > 128 {
                        sx += x as f64 + 0.5;
                        sy += y as f64 + 0.5;
                        n += 1.0;
                    }
                }
            }
            (n > 0.0).then(|| [sx / n / W as f64, sy / n / H as f64])
        })
        .collect()
}

/// Publishes `segments` to `url`, one every `gap`, in the background.
fn publish(url: String, segments: Vec<Bytes>, gap: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut p = Publisher::connect(&url, PublisherOptions::default())
            .await
            .unwrap();
        for seg in segments {
            let mut w = p.next_segment().await.unwrap();
            // Two writes so the worker sees a segment arrive in pieces.
            let half = seg.len() / 2;
            w.write(seg.slice(..half)).await.unwrap();
            w.write(seg.slice(half..)).await.unwrap();
            w.finish().await.unwrap();
            tokio::time::sleep(gap).await;
        }
    })
}

/// Reads every segment of a channel from seq 0 into a shared list.
fn collect_segments(url: String) -> Arc<Mutex<Vec<Bytes>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let out = got.clone();
    tokio::spawn(async move {
        let mut sub = Subscriber::new(
            &url,
            SubscriberOptions {
                start_seq: 0,
                ..Default::default()
            },
        )
        .unwrap();
        while let Ok(Some(seg)) = sub.next_segment().await {
            if let Ok(b) = seg.collect(16 << 20).await {
                out.lock().await.push(b);
            }
        }
    });
    got
}

/// Reads JSONL lines of a channel as they arrive (not per segment).
fn follow_lines(url: String) -> mpsc::UnboundedReceiver<Value> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut sub = Subscriber::new(
            &url,
            SubscriberOptions {
                start_seq: 0,
                ..Default::default()
            },
        )
        .unwrap();
        while let Ok(Some(mut seg)) = sub.next_segment().await {
            let mut buf = Vec::new();
            while let Ok(Some(chunk)) = seg.chunk().await {
                buf.extend_from_slice(&chunk);
                while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let v: Value = serde_json::from_slice(&line).expect("every data line is JSON");
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
            assert!(buf.is_empty(), "data segments end on a newline");
        }
    });
    rx
}

/// The data channel as the agent sees it: each segment through the agent's
/// own decoder (chosen by the segment's content type) into its rule engine,
/// with a rule a user would write for the ball.
fn agent_effects(url: String) -> mpsc::UnboundedReceiver<Effect> {
    let (tx, rx) = mpsc::unbounded_channel();
    let rules: Vec<RuleConfig> = serde_json::from_value(json!([{
        "name": "ball-in-view",
        "match": {"type": "detection", "label": "ball", "min_confidence": 0.5,
                  "zone": {"rect": [0.0, 0.0, 1.0, 1.0]}},
        "then": [{"output": "lamp", "action": "pulse", "ms": 100}]
    }]))
    .unwrap();
    let mut rules = RuleSet::new(rules).unwrap();
    tokio::spawn(async move {
        let mut sub = Subscriber::new(
            &url,
            SubscriberOptions {
                start_seq: 0,
                ..Default::default()
            },
        )
        .unwrap();
        while let Ok(Some(mut seg)) = sub.next_segment().await {
            let ct = seg.content_type.clone();
            let mut dec = SegmentDecoder::new(
                "data".into(),
                seg.seq,
                ct.as_deref(),
                DecodeLimits::default(),
            );
            while let Ok(Some(chunk)) = seg.chunk().await {
                let now = tokio::time::Instant::now();
                for item in dec.push(&chunk, now) {
                    for effect in rules.on_item(&item, now) {
                        if tx.send(effect).is_err() {
                            return;
                        }
                    }
                }
            }
        }
    });
    rx
}

async fn api(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let (head, bytes) = match body {
        Some(b) => {
            post(
                addr,
                path,
                b.to_string().as_bytes(),
                &[("content-type", "application/json")],
            )
            .await
        }
        None => simple(addr, method, path, &[]).await,
    };
    (
        head.status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn status(addr: std::net::SocketAddr) -> Status {
    let (code, v) = api(addr, "GET", "/api/stream/status", None).await;
    assert_eq!(code, 200);
    serde_json::from_value(v).unwrap()
}

/// Awaits `cond` on the worker status, polling (never a timing assertion).
async fn status_until(
    addr: std::net::SocketAddr,
    what: &str,
    cond: impl Fn(&Status) -> bool,
) -> Status {
    wait_for_some(what, || async {
        let s = status(addr).await;
        cond(&s).then_some(s)
    })
    .await
}

/// Next line that holds at least one item, skipping `[]` keepalives.
async fn next_items(lines: &mut mpsc::UnboundedReceiver<Value>) -> Vec<Value> {
    loop {
        let line = within("a data line", lines.recv())
            .await
            .expect("data channel open");
        let items = line
            .as_array()
            .expect("every data line is a JSON array")
            .clone();
        if !items.is_empty() {
            return items;
        }
    }
}

fn channels(s: &trickle_edge::trickle::RunningServer, id: &str) -> Value {
    let u = |suffix: &str| format!("{}{id}{suffix}", s.base_url());
    json!({
        "subscribe_url": u(""),
        "publish_url": u("-out"),
        "control_url": u("-control"),
        "events_url": u("-events"),
        "data_url": u("-data"),
        "gateway_request_id": format!("req-{id}"),
        "params": {"threshold": 160},
    })
}

async fn server_with(id: &str) -> trickle_edge::trickle::RunningServer {
    let names: Vec<String> = ["", "-out", "-control", "-events", "-data"]
        .iter()
        .map(|s| format!("{id}{s}"))
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    start_server(test_config(), &refs).await
}

fn fast_config() -> WorkerConfig {
    WorkerConfig {
        status_interval: Duration::from_millis(500),
        keepalive_interval: Duration::from_millis(400),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ball_is_tracked_video_passes_through_and_params_apply() {
    let seconds = 40;
    let (segments, truth) =
        tokio::task::spawn_blocking(move || (ts_segments("ball", seconds), true_centres(seconds)))
            .await
            .unwrap();
    assert!(
        segments.len() >= seconds - 1,
        "one segment per GOP: got {}",
        segments.len()
    );
    let s = server_with("cam").await;
    let worker = WorkerHandle::start("127.0.0.1:0".parse().unwrap(), fast_config())
        .await
        .unwrap();
    let addr = worker.local_addr();

    let (code, health) = api(addr, "GET", "/health", None).await;
    assert_eq!((code, health), (200, json!({"status": "IDLE"})));

    let mut lines = follow_lines(format!("{}cam-data", s.base_url()));
    let mut agent = agent_effects(format!("{}cam-data", s.base_url()));
    let events = collect_segments(format!("{}cam-events", s.base_url()));
    let output = collect_segments(format!("{}cam-out", s.base_url()));
    let (code, started) = api(addr, "POST", "/api/stream/start", Some(channels(&s, "cam"))).await;
    assert_eq!(code, 200, "{started}");
    assert_eq!(started["state"], "running");
    assert_eq!(started["gateway_request_id"], "req-cam");
    let publisher = publish(
        format!("{}cam", s.base_url()),
        segments.clone(),
        Duration::from_millis(250),
    );

    // Detections: inside the frame, on the ball's true path, and moving.
    let mut centres = Vec::new();
    while centres.len() < 30 {
        for d in next_items(&mut lines).await {
            assert_eq!(d["type"], "detection");
            assert_eq!(d["label"], "ball");
            let b: Vec<f64> = serde_json::from_value(d["box"].clone()).unwrap();
            assert!(
                b[0] >= 0.0
                    && b[1] >= 0.0
                    && b[2] <= 1.0
                    && b[3] <= 1.0
                    && b[0] < b[2]
                    && b[1] < b[3],
                "{d}"
            );
            assert_eq!(d["boxes"][0]["box"], d["box"], "rules see the same box");
            assert!(d["frame_pts"].is_u64(), "{d}");
            let c = [(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0];
            let miss = truth
                .iter()
                .map(|t| ((t[0] - c[0]).powi(2) + (t[1] - c[1]).powi(2)).sqrt())
                .fold(f64::MAX, f64::min);
            assert!(
                miss < 0.03,
                "centre {c:?} is {miss:.3} from the ball's path"
            );
            centres.push(c);
        }
    }
    let span = |i: usize| {
        let v = centres.iter().map(|c| c[i]);
        v.clone().fold(f64::MIN, f64::max) - v.fold(f64::MAX, f64::min)
    };
    assert!(
        span(0) > 0.1 || span(1) > 0.1,
        "the ball moves: {centres:?}"
    );

    // The agent's own decoder and rules understand these lines.
    let fired = within("agent rule fires", agent.recv()).await.unwrap();
    assert_eq!(&*fired.rule, "ball-in-view");

    // Params over HTTP: a new label shows in status and in the detections.
    let (code, v) = api(
        addr,
        "POST",
        "/api/stream/params",
        Some(json!({"label": "orb"})),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["params"], json!({"threshold": 160, "label": "orb"}));
    while next_items(&mut lines)
        .await
        .iter()
        .all(|d| d["label"] != "orb")
    {}

    // Params over the control channel, with a keepalive and garbage around it.
    let mut control = Publisher::connect(
        &format!("{}cam-control", s.base_url()),
        PublisherOptions::default(),
    )
    .await
    .unwrap();
    for msg in [
        r#"{"keep":"alive"}"#,
        "{not json",
        r#"{"params":{"label":"sphere"}}"#,
    ] {
        let mut w = control.next_segment().await.unwrap();
        w.write(Bytes::from(msg)).await.unwrap();
        w.finish().await.unwrap();
    }
    let st = status_until(addr, "control update", |s| {
        s.params.get("label") == Some(&json!("sphere"))
    })
    .await;
    assert_eq!(
        st.control_updates, 1,
        "keepalive and garbage are not updates"
    );
    assert_eq!(st.control_rejected, 1, "the garbage is counted");
    assert_eq!(st.params["threshold"], 160);
    while next_items(&mut lines)
        .await
        .iter()
        .all(|d| d["label"] != "sphere")
    {}
    assert_eq!(
        st.state,
        State::Running,
        "a broken control payload does not stop the stream"
    );

    // Status events, in ai-runner's wrapped shape.
    let event = wait_for_some("status event with params", || async {
        events.lock().await.iter().rev().find_map(|b| {
            let v: Value = serde_json::from_slice(b).expect("one JSON object per event segment");
            (v["event"]["inference_status"]["last_params"]["label"] == "sphere").then_some(v)
        })
    })
    .await;
    assert_eq!(event["queue_event_type"], "ai_stream_status");
    assert_eq!(event["event"]["type"], "status");
    let inference = &event["event"]["inference_status"];
    assert!(
        inference["fps"].is_number() && inference["restart_count"].is_u64(),
        "{event}"
    );
    assert!(inference.get("last_error").is_some(), "{event}");

    // Pass-through: every output segment is byte-for-byte an input segment.
    let out = wait_for_some("3 output segments", || async {
        let got = output.lock().await.clone();
        (got.len() >= 3).then_some(got)
    })
    .await;
    for seg in &out {
        assert!(
            segments.contains(seg),
            "output segment of {} bytes is not an input segment",
            seg.len()
        );
    }

    let st = status(addr).await;
    assert!(
        st.frames_decoded > 0 && st.detections > 0 && st.segments_out >= 3,
        "{st:?}"
    );
    assert!(st.uptime_s > 0.0);
    let (code, health) = api(addr, "GET", "/health", None).await;
    assert_eq!((code, health), (200, json!({"status": "OK"})));

    // Stop: every task notices and ends by itself (none aborted), the worker
    // is idle afterwards, and the edge's channels are left alone.
    let (code, v) = api(addr, "POST", "/api/stream/stop", Some(json!({}))).await;
    assert_eq!((code, v), (200, json!({"stopped": true, "clean": true})));
    assert_eq!(status(addr).await.state, State::Idle);
    for name in ["cam", "cam-out", "cam-control", "cam-events", "cam-data"] {
        assert!(
            s.state.channel(name).is_some(),
            "worker must not delete {name}"
        );
    }
    publisher.abort();
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_video_gives_only_keepalives() {
    let segments = tokio::task::spawn_blocking(|| ts_segments("black", 20))
        .await
        .unwrap();
    let s = server_with("dark").await;
    let worker = WorkerHandle::start("127.0.0.1:0".parse().unwrap(), fast_config())
        .await
        .unwrap();
    let addr = worker.local_addr();
    let mut lines = follow_lines(format!("{}dark-data", s.base_url()));
    let (code, _) = api(
        addr,
        "POST",
        "/api/stream/start",
        Some(channels(&s, "dark")),
    )
    .await;
    assert_eq!(code, 200);
    let publisher = publish(
        format!("{}dark", s.base_url()),
        segments,
        Duration::from_millis(250),
    );
    // Frames are decoded and analysed...
    status_until(addr, "30 decoded frames", |s| s.frames_decoded >= 30).await;
    // ...and the data channel carries only `[]` keepalives, several of them.
    // They all fit in one still-open segment (15 lines or 5 s per segment),
    // so reading them proves each line is flushed as soon as it is made.
    for _ in 0..3 {
        let line = within("keepalive", lines.recv()).await.unwrap();
        assert_eq!(line, json!([]), "a black frame has no ball");
    }
    let st = status(addr).await;
    assert_eq!(st.detections, 0, "{st:?}");
    let (_, stopped) = api(addr, "POST", "/api/stream/stop", Some(json!({}))).await;
    assert_eq!(stopped, json!({"stopped": true, "clean": true}));
    publisher.abort();
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_closing_ends_the_stream_and_health_says_so() {
    let s = server_with("gone").await;
    let worker = WorkerHandle::start("127.0.0.1:0".parse().unwrap(), fast_config())
        .await
        .unwrap();
    let addr = worker.local_addr();
    let (code, _) = api(
        addr,
        "POST",
        "/api/stream/start",
        Some(channels(&s, "gone")),
    )
    .await;
    assert_eq!(code, 200);
    status_until(addr, "running", |s| s.state == State::Running).await;
    assert!(s.state.close_channel("gone"));
    let st = status_until(addr, "stream ended", |s| s.state == State::Ended).await;
    assert!(
        st.last_error.unwrap_or_default().contains("gone"),
        "the error names the channel"
    );
    let (code, health) = api(addr, "GET", "/health", None).await;
    assert_eq!((code, health), (503, json!({"status": "ERROR"})));
    worker.shutdown().await;
}

/// MPEG-TS that holds no video at all (AAC audio only): tsdemux cannot link
/// it to h264parse and the decode pipeline fails.
fn audio_only_segment() -> Bytes {
    let encoder = ["avenc_aac", "voaacenc"]
        .into_iter()
        .find(|e| {
            gst::init().unwrap();
            gst::ElementFactory::find(e).is_some()
        })
        .expect(
            "an AAC encoder (gstreamer1.0-libav or -plugins-bad; `bash ci/setup.sh` installs both)",
        );
    let desc = format!(
        "audiotestsrc num-buffers=50 ! {encoder} ! aacparse ! mpegtsmux ! appsink name=sink sync=false"
    );
    let mut out = Vec::new();
    for buf in pull_all(&desc) {
        out.extend_from_slice(&buf.map_readable().unwrap());
    }
    Bytes::from(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_input_restarts_the_pipeline_which_then_recovers() {
    let (bad, good) =
        tokio::task::spawn_blocking(|| (audio_only_segment(), ts_segments("ball", 30)))
            .await
            .unwrap();
    let s = server_with("sick").await;
    let worker = WorkerHandle::start("127.0.0.1:0".parse().unwrap(), fast_config())
        .await
        .unwrap();
    let addr = worker.local_addr();
    let mut lines = follow_lines(format!("{}sick-data", s.base_url()));
    let (code, _) = api(
        addr,
        "POST",
        "/api/stream/start",
        Some(channels(&s, "sick")),
    )
    .await;
    assert_eq!(code, 200);
    // The worker's ingest subscription may start after the first segment was
    // written, so keep sending bad input until the pipeline has failed on it.
    let mut ingest = Publisher::connect(
        &format!("{}sick", s.base_url()),
        PublisherOptions::default(),
    )
    .await
    .unwrap();
    let failed = within("pipeline failure", async {
        loop {
            let mut w = ingest.next_segment().await.unwrap();
            w.write(bad.clone()).await.unwrap();
            w.finish().await.unwrap();
            let st = status(addr).await;
            if st.restart_count > 0 {
                return st;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let err = failed.last_error.unwrap_or_default();
    assert!(
        err.contains("worker-decode") && err.contains("not-linked"),
        "the error names the pipeline and the cause: {err}"
    );
    assert_eq!(
        failed.state,
        State::Running,
        "a decode failure does not end the stream"
    );
    drop(ingest);
    // Good video after that: the rebuilt pipeline decodes and detects again.
    let publisher = publish(
        format!("{}sick", s.base_url()),
        good,
        Duration::from_millis(250),
    );
    let items = next_items(&mut lines).await;
    assert_eq!(items[0]["label"], "ball");
    let st = status(addr).await;
    assert!(st.frames_decoded > 0 && st.restart_count >= 1, "{st:?}");
    publisher.abort();
    worker.shutdown().await;
}
