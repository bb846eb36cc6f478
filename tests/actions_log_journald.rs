//! Under systemd (`JOURNAL_STREAM` set), the log output also emits a
//! structured `tracing` event per effect. Own test binary: it sets an
//! environment variable and a global subscriber.

mod support;

use serde_json::json;
use support::actions::{build, effect};
use support::time::wait_until;
use support::tmp::temp_dir;
use support::tracing::{LogCapture, Logged};
use tracing::Level;
use trickle_edge::rules::OutputAction;

/// The log output's own events, not the rest of the library's.
const TARGET: &str = "trickle_edge::actions::log";

fn from_log_output(capture: &LogCapture) -> Vec<Logged> {
    capture
        .events()
        .into_iter()
        .filter(|e| e.target == TARGET)
        .collect()
}

#[test]
fn emits_structured_event_under_systemd() {
    // SAFETY: set before any other thread of this test binary exists.
    unsafe { std::env::set_var("JOURNAL_STREAM", "8:12345") };
    let capture = LogCapture::new(Level::TRACE);
    tracing::subscriber::set_global_default(capture.clone()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = temp_dir("journald");
        let path = dir.join("e.jsonl");
        let out = build(json!({ "events": { "type": "log", "path": path } }));
        out.dispatch(effect("events", OutputAction::Activate, 9));
        wait_until("event emitted", || !from_log_output(&capture).is_empty()).await;
    });
    let e = from_log_output(&capture).remove(0);
    assert_eq!(e.field("output"), Some("events"), "{e:?}");
    assert_eq!(e.field("rule"), Some("rule-1"), "{e:?}");
    assert_eq!(e.field("action"), Some("activate"), "{e:?}");
    assert_eq!(e.field("channel"), Some("data"), "{e:?}");
    assert_eq!(e.field("seq"), Some("9"), "{e:?}");
    assert_eq!(e.field("event_type"), Some("detection"), "{e:?}");
}
