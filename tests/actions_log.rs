//! JSON Lines log output: contents, rotation, and build errors.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::actions::{build, configs, effect};
use support::time::wait_until;
use support::tmp::temp_dir;
use trickle_edge::actions::{ActionError, Outputs};
use trickle_edge::rules::OutputAction;

fn lines_of(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{}: last line incomplete",
        path.display()
    );
    text.lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: bad JSON line {l:?}: {e}", path.display()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_one_json_line_per_effect() {
    let dir = temp_dir("log-lines");
    let path = dir.join("events.jsonl");
    let out = build(json!({ "events": { "type": "log", "path": path, "fsync_interval": "50ms" } }));
    out.dispatch(effect("events", OutputAction::Pulse { ms: 500 }, 7));
    out.dispatch(effect("events", OutputAction::Deliver, 8));
    wait_until("2 lines written", || {
        out.counters_of("events").unwrap().sent == 2
    })
    .await;
    out.shutdown(Duration::from_secs(10)).await;
    let lines = lines_of(&path);
    assert_eq!(lines.len(), 2);
    let l = &lines[0];
    assert_eq!(l["rule"], "rule-1");
    assert_eq!(l["output"], "events");
    assert_eq!(l["action"], "pulse");
    assert_eq!(l["ms"], 500);
    assert_eq!(l["item"]["seq"], 7);
    assert_eq!(l["item"]["channel"], "data");
    assert_eq!(l["item"]["type"], "detection");
    assert_eq!(l["item"]["rule"], "rule-1");
    assert_eq!(l["item"]["payload"]["label"], "person");
    let ts = l["ts"].as_str().unwrap();
    assert!(
        ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "{ts}"
    );
    assert_eq!(lines[1]["action"], "deliver");
    assert_eq!(lines[1]["item"]["seq"], 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotates_by_size_and_keeps_max_files() {
    let dir = temp_dir("log-rotate");
    let path = dir.join("events.jsonl");
    let max_bytes = 2_000u64;
    let out = build(json!({ "events": {
        "type": "log", "path": path, "max_bytes": max_bytes, "max_files": 3,
        "fsync_interval": "20ms", "queue": 500,
    }}));
    let n = 200;
    for seq in 0..n {
        out.dispatch(effect("events", OutputAction::Activate, seq));
    }
    wait_until("all written", || {
        out.counters_of("events").unwrap().sent == n as u64
    })
    .await;
    out.shutdown(Duration::from_secs(10)).await;

    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]);

    // Oldest to newest: .2, .1, live; every file within max_bytes, every line
    // valid, seqs contiguous and ending with the last one written.
    let mut seqs = Vec::new();
    for name in ["events.jsonl.2", "events.jsonl.1", "events.jsonl"] {
        let p = dir.join(name);
        assert!(
            std::fs::metadata(&p).unwrap().len() <= max_bytes,
            "{name} too big"
        );
        let lines = lines_of(&p);
        assert!(!lines.is_empty(), "{name} empty");
        seqs.extend(lines.iter().map(|l| l["item"]["seq"].as_i64().unwrap()));
    }
    assert_eq!(*seqs.last().unwrap(), n - 1);
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "lost or reordered lines: {seqs:?}"
    );
    assert!(
        seqs.len() < n as usize,
        "rotation should have dropped the oldest file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_path_names_output_and_field() {
    let dir = temp_dir("log-bad");
    let cfg =
        configs(json!({ "events": { "type": "log", "path": dir.join("missing/dir/x.jsonl") } }));
    let err = Outputs::build(&cfg).err().expect("must fail");
    assert!(
        matches!(&err, ActionError::Io { output, field: "path", .. } if output == "events"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("events") && err.to_string().contains("missing/dir"),
        "{err}"
    );
}
