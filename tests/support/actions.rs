//! Effects and outputs for the `actions_*` tests.

use std::collections::BTreeMap;
use std::sync::Arc;

use trickle_edge::actions::{OutputConfig, Outputs};
use trickle_edge::data::{Item, Payload};
use trickle_edge::rules::{Effect, OutputAction};

/// A person detection on channel `data` at `seq`.
pub fn item(seq: i64) -> Arc<Item> {
    Arc::new(Item {
        channel: "data".into(),
        seq,
        received_at: tokio::time::Instant::now(),
        event_type: Some("detection".into()),
        payload: Payload::Json(serde_json::json!({ "label": "person", "confidence": 0.9 })),
    })
}

/// What rule `rule-1` would ask of `output` for [`item`]`(seq)`.
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

/// Builds the outputs [`configs`] describes.
pub fn build(v: serde_json::Value) -> Outputs {
    Outputs::build(&configs(v)).expect("outputs build")
}
