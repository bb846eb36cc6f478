//! The binary as users run it: `subscribe --rules` turning a data channel into
//! actions, and `run` speaking the systemd notify protocol on a real socket.

mod support;

use std::process::Stdio;

use bytes::Bytes;
use support::http::Raw;
use support::net::{free_addr, jsonl_publisher, start_server, test_config};
use support::time::{wait_until, within};
use support::tmp::temp_dir;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_trickle-edge");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_with_rules_drives_outputs_from_a_data_channel() {
    let server = start_server(test_config(), &["data"]).await;
    let url = format!("{}data", server.base_url());
    let dir = temp_dir("subrules");
    let log = dir.join("fires.jsonl");
    let rules = dir.join("rules.toml");
    std::fs::write(
        &rules,
        format!(
            r#"
[outputs.fires]
type = "log"
path = "{}"
fsync_interval = "100ms"

[[rules]]
name = "person"
match = {{ type = "detection", label = "person", min_confidence = 0.6 }}
then = [{{ output = "fires" }}]
"#,
            log.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["subscribe", &url, "--from", "0", "--rules"])
        .arg(&rules)
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut publisher = jsonl_publisher(&url, 0).await;
    let mut w = publisher.next_segment().await.unwrap();
    // A batch with a matching box, a keepalive, a broken line, a non-match.
    let lines = concat!(
        "[{\"type\":\"detection\",\"boxes\":[{\"label\":\"person\",\"confidence\":0.9,\"x\":0.1,\"y\":0.1,\"w\":0.2,\"h\":0.2}]}]\n",
        "[]\n",
        "{not json\n",
        "[{\"type\":\"detection\",\"boxes\":[{\"label\":\"cat\",\"confidence\":0.9,\"x\":0.1,\"y\":0.1,\"w\":0.2,\"h\":0.2}]}]\n",
    );
    w.write(Bytes::from_static(lines.as_bytes())).await.unwrap();
    // The segment is still open: the fire must not wait for its end.
    wait_until("the rule fires while the segment is open", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("\"rule\":\"person\"")
    })
    .await;
    w.finish().await.unwrap();
    let fired = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        fired.lines().count(),
        1,
        "only the person detection fires:\n{fired}"
    );
    child.kill().await.ok();
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_sends_ready_watchdog_and_status_to_systemd() {
    let server = start_server(test_config(), &["cam"]).await;
    let dir = temp_dir("notify");
    let sock_path = dir.join("notify.sock");
    let sock = tokio::net::UnixDatagram::bind(&sock_path).unwrap();
    let supervisor = free_addr();
    let cfg = dir.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[camera]
source = "test"
width = 320
height = 240
fps = 15
[job]
mode = "static"
publish_url = "{}cam"
[supervisor]
listen = "{supervisor}"
watchdog_interval = "1s"
"#,
            server.base_url()
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &sock_path)
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let written = || {
        server
            .state
            .stats
            .segments_written
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let mut seen = String::new();
    within("READY, WATCHDOG and STATUS", async {
        let mut buf = vec![0u8; 4096];
        while !(seen.contains("READY=1")
            && seen.contains("WATCHDOG=1")
            && seen.contains("STATUS=segments="))
        {
            let n = sock.recv(&mut buf).await.unwrap();
            let datagram = String::from_utf8_lossy(&buf[..n]).to_string();
            if datagram.lines().any(|l| l == "READY=1") {
                // Checked as READY arrives, not once everything has: the
                // agent may only report ready after its first segment was
                // completely written at the server (counted before the
                // server answers that POST).
                assert!(
                    written() >= 1,
                    "READY=1 arrived before any segment was written at the server (notifications so far:\n{seen})"
                );
            }
            seen.push_str(&datagram);
            seen.push('\n');
        }
    })
    .await;
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = within("exit", child.wait()).await.unwrap();
    assert!(status.success());
    std::fs::remove_dir_all(&dir).ok();
}

/// `subscribe URL --from 0 --rules` with one rule, "any detection" → a log
/// file, stderr piped: returns the child, the log's path and the temp dir.
fn subscribe_any_detection_to_a_log(
    url: &str,
    name: &str,
) -> (
    tokio::process::Child,
    std::path::PathBuf,
    support::tmp::TempDir,
) {
    let dir = temp_dir(name);
    let log = dir.join("fires.jsonl");
    let rules = dir.join("rules.toml");
    std::fs::write(
        &rules,
        format!(
            "[outputs.fires]\ntype = \"log\"\npath = \"{}\"\nfsync_interval = \"100ms\"\n\n[[rules]]\nname = \"any\"\nmatch = {{ type = \"detection\" }}\nthen = [{{ output = \"fires\" }}]\n",
            log.display()
        ),
    )
    .unwrap();
    let child = Command::new(BIN)
        .args(["subscribe", url, "--from", "0", "--rules"])
        .arg(&rules)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    (child, log, dir)
}

/// Issue 15: one `"timestamp": 1e300` made every later item "out of order",
/// dropped without a word. Through the real data path: the later items all
/// act, and a warning names the item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_timestamp_costs_no_later_item_and_is_warned_about() {
    let server = start_server(test_config(), &["data"]).await;
    let url = format!("{}data", server.base_url());
    let (mut child, log, dir) = subscribe_any_detection_to_a_log(&url, "poison");
    let mut publisher = jsonl_publisher(&url, 0).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let mut lines = format!("[{{\"type\":\"detection\",\"n\":0,\"timestamp\":{now}}}]\n");
    lines.push_str("[{\"type\":\"detection\",\"n\":1,\"timestamp\":1e300}]\n");
    for n in 2..12 {
        let ts = now + f64::from(n) * 0.1;
        lines.push_str(&format!(
            "[{{\"type\":\"detection\",\"n\":{n},\"timestamp\":{ts}}}]\n"
        ));
    }
    let mut w = publisher.next_segment().await.unwrap();
    w.write(Bytes::from(lines)).await.unwrap();
    w.finish().await.unwrap();
    wait_until("all 12 items acted on", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
            == 12
    })
    .await;
    child.kill().await.ok();
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warned: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("far ahead of this machine's clock"))
        .collect();
    assert_eq!(warned.len(), 1, "{stderr}");
    assert!(
        warned[0].contains("seq=0") && warned[0].contains("timestamp=1e+300"),
        "{}",
        warned[0]
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A data segment whose writer hangs mid-segment must not hold back the
/// segments after it: once a newer one has begun, it is read on past the
/// stalled one (warned once), and the stalled one still delivers what its
/// writer sends later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_data_segment_is_overtaken_by_a_newer_one_and_still_drained() {
    let server = start_server(test_config(), &["data"]).await;
    let url = format!("{}data", server.base_url());
    let (mut child, log, dir) = subscribe_any_detection_to_a_log(&url, "overtake");
    let fired = |n: u32| {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains(&format!("\"n\":{n}"))
    };
    let item = |n: u32| format!("[{{\"type\":\"detection\",\"n\":{n}}}]\n");

    // Seq 0: one item, then its writer goes quiet with the segment open.
    let path = url.trim_start_matches(&format!("http://{}", server.local_addr()));
    let mut stalled = Raw::connect(server.local_addr()).await;
    stalled
        .start_post(
            &format!("{path}/0"),
            &[("Content-Type", "application/jsonl")],
        )
        .await;
    stalled.chunk(item(0).as_bytes()).await;
    wait_until("item 0 acted on", || fired(0)).await;

    // Seq 1 begins and ends while seq 0 is still open.
    let mut publisher = jsonl_publisher(&url, 1).await;
    let mut w = publisher.next_segment().await.unwrap();
    w.write(Bytes::from(item(1))).await.unwrap();
    w.finish().await.unwrap();
    wait_until("item 1 acted on past the stalled seq 0", || fired(1)).await;
    assert!(!fired(2));

    // The stalled writer wakes up: what it sends still arrives.
    stalled.chunk(item(2).as_bytes()).await;
    stalled.end().await;
    wait_until("item 2 of the overtaken seq 0 acted on", || fired(2)).await;

    child.kill().await.ok();
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warned: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("segment stalled while a newer one began"))
        .collect();
    assert_eq!(warned.len(), 1, "{stderr}");
    assert!(warned[0].contains("seq=0"), "{}", warned[0]);
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 15 item 4: 100,000 detections in one segment used to leave 17,777-
/// 24,748 lines in the log and no word of the rest. Now every effect is in
/// the log, in order (what the queue could not hold went through the
/// overflow file), a slow webhook beside it whose overflow file is small
/// drops what that file cannot hold, without holding the log back, and the
/// summary and warning say exactly how many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_100000_detections_is_logged_whole_beside_a_slow_webhook() {
    const N: u64 = 100_000;
    let server = start_server(test_config(), &["data"]).await;
    let url = format!("{}data", server.base_url());
    let (hook, answered, _hook_stop) =
        support::http::slow_webhook(std::time::Duration::from_millis(20)).await;
    let dir = temp_dir("burst");
    let log = dir.join("fires.jsonl");
    let rules = dir.join("rules.toml");
    std::fs::write(
        &rules,
        format!(
            "[outputs.fires]\ntype = \"log\"\npath = \"{}\"\nfsync_interval = \"100ms\"\nmax_bytes = 1000000000\n\n\
             [outputs.slow]\ntype = \"webhook\"\nurl = \"http://{hook}/hook\"\nqueue = 4\nmax_attempts = 1\n\
             spill_dir = \"{}\"\nspill_max_bytes = 2000\n\n\
             [[rules]]\nname = \"any\"\nmatch = {{ type = \"detection\" }}\nthen = [{{ output = \"fires\" }}, {{ output = \"slow\" }}]\n",
            log.display(),
            dir.join("spill").display()
        ),
    )
    .unwrap();
    let child = Command::new(BIN)
        .args(["subscribe", &url, "--from", "0", "--rules"])
        .arg(&rules)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    support::net::publish_detection_burst(&url, N).await;
    support::net::wait_for_lines(&log, N).await;
    // The log got there while the webhook, 20 ms a call, was far behind.
    let hooked = answered.load(std::sync::atomic::Ordering::Relaxed);
    assert!(hooked < N / 10, "the webhook answered {hooked} of {N}");
    // The end of the channel ends the subscription: outputs drain, then the
    // summary is told.
    server.state.close_channel("data");
    let out = within("subscribe ends with its channel", child.wait_with_output())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let text = std::fs::read_to_string(&log).unwrap();
    let ns: Vec<u64> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["item"]["payload"]["n"]
                .as_u64()
                .unwrap_or_else(|| panic!("no item n in {l}"))
        })
        .collect();
    assert_eq!(ns.len() as u64, N, "lines in the log");
    assert!(
        ns.iter().enumerate().all(|(i, n)| i as u64 == *n),
        "the log is out of order"
    );
    let summary = |name: &str| -> std::collections::BTreeMap<String, u64> {
        let prefix = format!("output {name}: ");
        let line = stderr
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no summary for {name}:\n{stderr}"));
        line.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
            .collect()
    };
    let fires = summary("fires");
    assert_eq!(
        (fires["fired"], fires["delivered"], fires["dropped"]),
        (N, N, 0),
        "{stderr}"
    );
    assert!(
        fires["spilled"] > 0,
        "the burst went through the overflow: {fires:?}"
    );
    let slow = summary("slow");
    assert_eq!(slow["fired"], N);
    assert!(slow["spilled"] > 0, "{slow:?}");
    // The summary comes after the outputs drained: what the receiver
    // answered is what was delivered, and every other effect was dropped.
    let answered = answered.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        (slow["delivered"], slow["failed"], slow["dropped"]),
        (answered, 0, N - answered),
        "{slow:?}"
    );
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("output cannot keep up"))
        .collect();
    assert!(
        !warnings.is_empty()
            && warnings
                .iter()
                .all(|l| l.contains("slow") && l.contains("is full")),
        "{stderr}"
    );
    assert!(
        warnings.len() < 50,
        "rate-limited: {} warnings",
        warnings.len()
    );
    assert!(
        !log.with_extension("jsonl.spill").exists(),
        "a drained overflow file is removed"
    );
    std::fs::remove_dir_all(&dir).ok();
}
