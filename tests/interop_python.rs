//! Interop with Livepeer's Python SDK (`livepeer-gateway`), byte for byte:
//! its publisher into our server read by our subscriber, and our publisher
//! read by its subscriber. `ci/test.sh` creates the SDK's venv and exports
//! `TRICKLE_EDGE_INTEROP_PYTHON`; without the SDK the tests fail, never skip.

mod support;

use std::path::PathBuf;
use std::process::Stdio;

use bytes::Bytes;
use support::net::{start_server, test_config};
use support::time::within;
use support::tmp::temp_dir;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use trickle_edge::trickle::{Publisher, PublisherOptions, Subscriber, SubscriberOptions};

const SEGMENTS: i64 = 20;

/// Same bytes as tests/interop/py_common.py.
fn payload(seq: i64) -> Vec<u8> {
    let size = 1000 + (seq * 7919) % 50000;
    (0..size).map(|k| ((seq * 31 + k) % 256) as u8).collect()
}

/// The Python that has Livepeer's SDK: `TRICKLE_EDGE_INTEROP_PYTHON`, or
/// else the venv `ci/interop-venv.sh` makes under `target/`. Without either
/// the test fails: passing without the peer would test nothing.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("TRICKLE_EDGE_INTEROP_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/interop-venv/bin/python");
    assert!(
        venv.exists(),
        "Livepeer's Python SDK (the interop peer) is missing: TRICKLE_EDGE_INTEROP_PYTHON is unset \
         and target/interop-venv does not exist. `bash ci/test.sh` installs it and runs every \
         test; or `export TRICKLE_EDGE_INTEROP_PYTHON=$(bash ci/interop-venv.sh)`"
    );
    venv
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livepeer_python_publisher_to_our_subscriber() {
    let py = python();
    let s = start_server(test_config(), &["frompy"]).await;
    let url = format!("{}frompy", s.base_url());
    let mut sub = Subscriber::new(
        &url,
        SubscriberOptions {
            start_seq: 0,
            ..Default::default()
        },
    )
    .unwrap();
    let mut child = Command::new(&py)
        .arg(script("py_publish.py"))
        .arg(&url)
        .arg(SEGMENTS.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the Python publisher");
    let mut stdin = child.stdin.take().unwrap();
    for seq in 0..SEGMENTS {
        let seg = within("segment from the Python SDK", sub.next_segment())
            .await
            .unwrap()
            .expect("segment");
        assert_eq!(seg.seq, seq);
        assert_eq!(seg.content_type.as_deref(), Some("video/MP2T"));
        let body = seg.collect(1 << 20).await.unwrap();
        assert_eq!(body, Bytes::from(payload(seq)), "segment {seq} byte-exact");
        stdin.write_all(b"ack\n").await.unwrap();
    }
    drop(stdin);
    // Its close() deletes the channel: our subscriber sees the end of stream.
    assert!(
        within("end of stream", sub.next_segment())
            .await
            .unwrap()
            .is_none()
    );
    let status = within("Python publisher exit", child.wait()).await.unwrap();
    assert!(status.success(), "Python publisher failed: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_publisher_to_livepeer_python_subscriber() {
    let py = python();
    let s = start_server(test_config(), &["topy"]).await;
    let url = format!("{}topy", s.base_url());
    let out = temp_dir("interop");
    let mut child = Command::new(&py)
        .arg(script("py_subscribe.py"))
        .arg(&url)
        .arg(SEGMENTS.to_string())
        .arg(&out)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the Python subscriber");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut publisher = Publisher::connect(&url, PublisherOptions::default())
        .await
        .unwrap();
    for seq in 0..SEGMENTS {
        if seq >= 3 {
            // Stay at most 3 segments ahead of the (slower) Python reader.
            let line = within("Python subscriber progress", lines.next_line())
                .await
                .unwrap()
                .expect("a line");
            assert!(line.starts_with("got "), "{line}");
        }
        let mut w = publisher.next_segment().await.unwrap();
        for chunk in payload(seq).chunks(16384) {
            w.write(Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        assert_eq!(w.finish().await.unwrap().seq, seq);
    }
    while within("Python subscriber output", lines.next_line())
        .await
        .unwrap()
        .is_some()
    {}
    let status = within("Python subscriber exit", child.wait())
        .await
        .unwrap();
    assert!(status.success(), "Python subscriber failed: {status}");
    for seq in 0..SEGMENTS {
        let got = std::fs::read(out.join(seq.to_string()))
            .unwrap_or_else(|e| panic!("segment {seq} missing: {e}"));
        assert_eq!(got, payload(seq), "segment {seq} byte-exact");
    }
    std::fs::remove_dir_all(&out).ok();
    publisher.close().await.unwrap();
}
