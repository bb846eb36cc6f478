//! Helpers shared by the `actions_*` integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use trickle_edge::actions::{OutputConfig, Outputs};
use trickle_edge::data::{Item, Payload};
use trickle_edge::rules::{Effect, OutputAction};

/// Upper bound for any awaited condition: generous, the machine is shared.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Awaits `cond` (polled every 10 ms); panics naming `what` after `limit`.
pub async fn eventually(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn item(seq: i64) -> Arc<Item> {
    Arc::new(Item {
        channel: "data".into(),
        seq,
        received_at: tokio::time::Instant::now(),
        event_type: Some("detection".into()),
        payload: Payload::Json(serde_json::json!({ "label": "person", "confidence": 0.9 })),
    })
}

pub fn effect(output: &str, action: OutputAction, seq: i64) -> Effect {
    Effect {
        rule: "rule-1".into(),
        output: output.into(),
        action,
        item: Some(item(seq)),
    }
}

/// Parses `{"NAME": {"type": …, …}, …}` the way `[outputs.NAME]` tables are.
pub fn configs(v: serde_json::Value) -> BTreeMap<String, OutputConfig> {
    serde_json::from_value(v).expect("valid output configs")
}

pub fn build(v: serde_json::Value) -> Outputs {
    Outputs::build(&configs(v)).expect("outputs build")
}

/// A fresh empty directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "trickle-edge-{tag}-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
