//! The decoded unit that flows from `data` to `rules`.

use std::sync::Arc;

use serde_json::Value;
use tokio::time::Instant;

/// One decoded payload from a data or events channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub channel: Arc<str>,
    pub seq: i64,
    pub received_at: Instant,
    pub event_type: Option<String>,
    pub payload: Payload,
}

/// What a payload turned out to be; binary payloads are summarised, not kept,
/// so a stream of images on a data channel costs no memory downstream.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Json(serde_json::Value),
    Text(String),
    Binary { size: usize, sha256: [u8; 32] },
}

impl Item {
    /// Builds a JSON item, unwrapping Livepeer's `{"queue_event_type", "event"}`
    /// envelope the way the gateway does: the `event` becomes the payload and
    /// the `queue_event_type` its `event_type`. Without an envelope, the
    /// object's own `"type"` string (if any) is the `event_type`.
    pub fn json(channel: Arc<str>, seq: i64, received_at: Instant, value: Value) -> Item {
        let (event_type, payload) = unwrap_event(value);
        Item {
            channel,
            seq,
            received_at,
            event_type,
            payload: Payload::Json(payload),
        }
    }

    /// The item's kind for routing: the payload's own `"type"` string if it
    /// has one (so a wrapped `status` event is a `status`), else `event_type`.
    pub fn item_type(&self) -> Option<&str> {
        match &self.payload {
            Payload::Json(v) => v.get("type").and_then(Value::as_str),
            _ => None,
        }
        .or(self.event_type.as_deref())
    }

    /// The JSON payload, if this item has one.
    pub fn json_payload(&self) -> Option<&Value> {
        match &self.payload {
            Payload::Json(v) => Some(v),
            _ => None,
        }
    }
}

fn unwrap_event(value: Value) -> (Option<String>, Value) {
    if let Value::Object(mut map) = value {
        let wrapped =
            map.get("queue_event_type").is_some_and(Value::is_string) && map.contains_key("event");
        if wrapped {
            let event = map.remove("event").unwrap_or(Value::Null);
            let kind = match map.remove("queue_event_type") {
                Some(Value::String(s)) => Some(s),
                _ => None,
            };
            return (kind, event);
        }
        let kind = map.get("type").and_then(Value::as_str).map(str::to_owned);
        return (kind, Value::Object(map));
    }
    (None, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(v: Value) -> Item {
        Item::json("c".into(), 1, Instant::now(), v)
    }

    #[test]
    fn wrapped_event_is_unwrapped() {
        let it = item(json!({"queue_event_type": "ai_stream_status", "event": {"type": "status"}}));
        assert_eq!(it.event_type.as_deref(), Some("ai_stream_status"));
        assert_eq!(it.payload, Payload::Json(json!({"type": "status"})));
        assert_eq!(it.item_type(), Some("status"));
    }

    #[test]
    fn plain_object_uses_its_type() {
        let it = item(json!({"type": "detection", "boxes": []}));
        assert_eq!(it.event_type.as_deref(), Some("detection"));
        assert_eq!(it.item_type(), Some("detection"));
    }

    #[test]
    fn scalar_has_no_type() {
        let it = item(json!(42));
        assert_eq!(it.event_type, None);
        assert_eq!(it.item_type(), None);
    }

    #[test]
    fn wrapper_with_typeless_event_falls_back_to_event_type() {
        let it = item(json!({"queue_event_type": "stream_stopped", "event": {}}));
        assert_eq!(it.item_type(), Some("stream_stopped"));
    }
}
