//! The status page in a real browser (Debian's `chromium`, headless) against
//! the real `trickle-edge demo` binary, and the page's costs and access
//! rules against an agent run in-process.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::agent::start_agent;
use support::http::{Raw, simple};
use support::time::{wait_for_some, within};
use support::tmp::temp_dir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use trickle_edge::config::{ResolvedConfig, Secret};
use trickle_edge::worker::{WorkerConfig, WorkerHandle};

const BIN: &str = env!("CARGO_BIN_EXE_trickle-edge");

/// Where this test's screenshots go (under `target/`).
fn output_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status_page");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs headless chromium on `url` with `extra` arguments (`--dump-dom`,
/// `--screenshot=…`) after letting the page run for `budget_ms` of virtual
/// time; returns its stdout.
async fn chromium(url: &str, budget_ms: u32, extra: &[String]) -> String {
    let profile = temp_dir("chromium-profile");
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,1400",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--virtual-time-budget={budget_ms}"))
    .args(extra)
    .arg(url)
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .kill_on_drop(true);
    let child = cmd.spawn().unwrap_or_else(|e| {
        panic!("cannot start `chromium`, the browser this test needs ({e}): `bash ci/setup.sh` installs it")
    });
    let out = within("chromium to finish", child.wait_with_output())
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of `attr="…"` on the first element whose tag text contains `marker`.
fn attr_of(dom: &str, marker: &str, attr: &str) -> Option<String> {
    let at = dom.find(marker)?;
    let start = dom[..at].rfind('<')?;
    let end = at + dom[at..].find('>')?;
    let tag = &dom[start..end];
    let key = format!("{attr}=\"");
    let v = tag.find(&key)? + key.len();
    Some(tag[v..v + tag[v..].find('"')?].to_string())
}

async fn get(addr: SocketAddr, path: &str, extra: &[(&str, &str)]) -> (u16, String) {
    let (head, body) = simple(addr, "GET", path, extra).await;
    (head.status, String::from_utf8_lossy(&body).into_owned())
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_draws_the_frame_boxes_outputs_and_fires_in_chromium() {
    let mut demo = Command::new(BIN)
        .args(["demo", "--duration", "240"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    // The demo prints the page's URL at start.
    let url = within("the demo to print the status page's URL", async {
        loop {
            let line = lines.next_line().await.unwrap().expect("demo output");
            if let Some(rest) = line.split("status page: ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        }
    })
    .await;
    // Keep draining the demo's output so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    // The ball enters the left third about 4 s after the first frame.
    wait_for_some("a rule fire (the ball in the left third)", || async move {
        let (_, metrics) = get(addr, "/metrics", &[]).await;
        (metric(&metrics, "trickle_edge_rule_fires_total")? >= 1.0).then_some(())
    })
    .await;

    // Each load is a fresh viewer: the first snapshot and detection come a
    // moment after it connects, so try a few loads, each given 6 s.
    // The screenshot is taken in the same run as the DOM checked.
    let shot = output_dir().join("demo-status-page.png");
    let mut dom = String::new();
    let mut drawn = false;
    for _ in 0..8 {
        let _ = std::fs::remove_file(&shot);
        let args = [
            "--dump-dom".to_string(),
            format!("--screenshot={}", shot.display()),
        ];
        dom = chromium(&url, 6000, &args).await;
        let frame = attr_of(&dom, "id=\"view\"", "data-frame-seq").unwrap_or_default();
        let boxes = attr_of(&dom, "id=\"view\"", "data-boxes-drawn").unwrap_or_default();
        if !frame.is_empty() && boxes.parse::<u32>().unwrap_or(0) >= 1 {
            drawn = true;
            break;
        }
    }
    assert!(drawn, "no frame with a box was drawn; last DOM:\n{dom}");
    let zones = attr_of(&dom, "id=\"view\"", "data-zones-drawn").unwrap();
    assert_eq!(zones, "1", "the rule's zone is drawn");
    // Outputs listed with their states.
    let level = attr_of(&dom, "data-output=\"ball-left\"", "data-level")
        .expect("the GPIO output is listed");
    assert!(level == "on" || level == "off", "{level:?}");
    assert!(
        dom.contains("data-output=\"events\""),
        "the log output is listed"
    );
    assert!(dom.contains("ball-left (gpio)") && dom.contains("events (log)"));
    // A fire on the timeline.
    assert!(
        dom.contains("class=\"fire\" data-rule=\"ball-in-left-third\""),
        "no fire on the timeline:\n{dom}"
    );
    assert!(
        dom.contains("ball 0.") || dom.contains("ball 1.00"),
        "box label with confidence"
    );
    assert!(dom.contains("<dd class=\"ok\">ok</dd>"), "health shown");
    assert!(dom.contains("worker") && dom.contains("demo-"), "job shown");

    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    eprintln!("screenshot: {}", shot.display());
    demo.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_viewer_no_snapshot_work_and_without_loopback_trust_the_token_is_required() {
    let worker = WorkerHandle::start(([127, 0, 0, 1], 0).into(), WorkerConfig::default())
        .await
        .unwrap();
    let dir = temp_dir("status-access");
    let mut config =
        trickle_edge::agent::demo::demo_config(&worker.url(), &dir.join("events.jsonl")).unwrap();
    // Every peer, loopback too, must bring the token: the refusal a
    // non-loopback peer gets, testable on this machine's loopback (the
    // address rule itself is unit-tested in `status::access`).
    config.supervisor.trust_loopback = false;
    let cfg = ResolvedConfig {
        path: "test".into(),
        preset: None,
        config,
        token: Some(Secret("page-token".into())),
        warnings: vec![],
    };
    let agent = start_agent(cfg).await;
    let addr = agent.handles.supervisor_addr.expect("supervisor bound");
    let stats = agent.handles.stats.clone();
    let auth = [("Authorization", "Bearer page-token")];

    // Refused without the token, or with a wrong one; the page's static
    // shell (no data in it) is served so that it can ask for the token.
    for path in [
        "/status/state.json",
        "/status/stream",
        "/status/snapshot.jpg",
        "/metrics",
        "/healthz",
    ] {
        assert_eq!(get(addr, path, &[]).await.0, 401, "{path}");
        assert_eq!(
            get(addr, path, &[("Authorization", "Bearer nope")]).await.0,
            401,
            "{path}"
        );
    }
    assert_eq!(get(addr, "/", &[]).await.0, 200);
    assert_eq!(get(addr, "/status/page.js", &[]).await.0, 200);

    // Media flows for a while with nobody watching: no JPEG is encoded.
    wait_for_some("five segments published", || {
        let stats = stats.clone();
        async move { (stats.media.segments_published.load(Ordering::Relaxed) >= 5).then_some(()) }
    })
    .await;
    let (status, metrics) = get(addr, "/metrics", &auth).await;
    assert_eq!(status, 200);
    assert_eq!(
        metric(&metrics, "trickle_edge_snapshots_encoded_total"),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "trickle_edge_status_viewers"), Some(0.0));
    assert_eq!(get(addr, "/status/snapshot.jpg", &auth).await.0, 404);

    // A viewer connects: snapshots are encoded and served.
    let mut viewer = Raw::connect(addr).await;
    viewer.request("GET", "/status/stream", &auth).await;
    let (head, _) = viewer.final_head().await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    let first = within("a state event", viewer.body_chunk()).await.unwrap();
    assert!(String::from_utf8_lossy(&first).contains("event: state"));
    wait_for_some("snapshots encoded while watched", || async move {
        let (_, m) = get(addr, "/metrics", &auth).await;
        (metric(&m, "trickle_edge_snapshots_encoded_total")? >= 2.0).then_some(())
    })
    .await;
    let (status, jpeg) = simple(addr, "GET", "/status/snapshot.jpg", &auth).await;
    assert_eq!(status.status, 200);
    assert!(jpeg.starts_with(&[0xff, 0xd8]), "a JPEG");

    // The viewer leaves: the branch closes and the count stops.
    drop(viewer);
    wait_for_some("the viewer to be gone", || async move {
        let (_, m) = get(addr, "/metrics", &auth).await;
        (metric(&m, "trickle_edge_status_viewers")? == 0.0).then_some(())
    })
    .await;
    // A frame already past the valve when it closed may still be encoded:
    // let one more segment (a 1 s GOP, two snapshot intervals) go by first.
    let drained = stats.media.segments_published.load(Ordering::Relaxed) + 1;
    wait_for_some("one more segment", || {
        let stats = stats.clone();
        async move { (stats.media.segments_published.load(Ordering::Relaxed) >= drained).then_some(()) }
    })
    .await;
    let stopped_at = stats.media.snapshot.encoded();
    // Several snapshot intervals (2/s) of media later, still the same count.
    let later = stats.media.segments_published.load(Ordering::Relaxed) + 3;
    wait_for_some("three more segments", || {
        let stats = stats.clone();
        async move { (stats.media.segments_published.load(Ordering::Relaxed) >= later).then_some(()) }
    })
    .await;
    assert_eq!(stats.media.snapshot.encoded(), stopped_at);

    agent.stop.trigger();
    let _ = within("agent stop", agent.agent).await;
    let _ = tokio::time::timeout(Duration::from_secs(3), worker.shutdown()).await;
}
