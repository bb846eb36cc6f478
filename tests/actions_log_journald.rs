//! Under systemd (`JOURNAL_STREAM` set), the log output also emits a
//! structured `tracing` event per effect. Own test binary: it sets an
//! environment variable and a global subscriber.

mod actions_support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use actions_support::{PATIENCE, build, effect, eventually, temp_dir};
use serde_json::json;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use trickle_edge::rules::OutputAction;

type Events = Arc<Mutex<Vec<BTreeMap<String, String>>>>;

/// Records the fields of events from the log output's target.
struct Capture(Events);

struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, f: &Field, v: &str) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
        self.0.insert(f.name().into(), format!("{v:?}"));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, e: &Event<'_>) {
        if e.metadata().target() == "trickle_edge::actions::log" {
            let mut f = Fields(BTreeMap::new());
            e.record(&mut f);
            self.0.lock().unwrap().push(f.0);
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn emits_structured_event_under_systemd() {
    // SAFETY: set before any other thread of this test binary exists.
    unsafe { std::env::set_var("JOURNAL_STREAM", "8:12345") };
    let events: Events = Arc::default();
    tracing::subscriber::set_global_default(Capture(events.clone())).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let path = temp_dir("journald").join("e.jsonl");
        let out = build(json!({ "events": { "type": "log", "path": path } }));
        out.dispatch(effect("events", OutputAction::Activate, 9));
        eventually("event emitted", PATIENCE, || {
            !events.lock().unwrap().is_empty()
        })
        .await;
    });
    let e = events.lock().unwrap()[0].clone();
    assert_eq!(e["output"], "events");
    assert_eq!(e["rule"], "rule-1");
    assert_eq!(e["action"], "activate");
    assert_eq!(e["channel"], "data");
    assert_eq!(e["seq"], "9");
    assert_eq!(e["event_type"], "detection");
}
