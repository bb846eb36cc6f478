//! The bodies the worker is sent: the start request and params updates.
//! Parsed by hand so that every refusal names the field at fault. Both the
//! HTTP API and the control channel read params updates, so this depends on
//! neither.

use serde::Serialize;
use serde_json::{Map, Value};

/// `POST /api/stream/start`, from the worker's point of view: it reads
/// `subscribe_url` (the edge's video) and `control_url`, and writes
/// `publish_url` (video out), `events_url` and `data_url`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StartRequest {
    pub subscribe_url: String,
    pub publish_url: Option<String>,
    pub control_url: Option<String>,
    pub events_url: Option<String>,
    pub data_url: Option<String>,
    pub gateway_request_id: Option<String>,
    pub params: Map<String, Value>,
}

/// A request body the API refuses, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RequestError {
    pub field: String,
    pub message: String,
}

fn bad(field: &str, message: impl Into<String>) -> RequestError {
    RequestError {
        field: field.into(),
        message: message.into(),
    }
}

impl StartRequest {
    /// Parses a start body. Checked by hand rather than by derive so that
    /// every refusal names its field (serde's type errors name only a column).
    /// Empty URL strings count as absent: some gateways send `""`.
    pub fn from_json(body: &[u8]) -> Result<StartRequest, RequestError> {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| bad("body", format!("not JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| bad("body", "must be a JSON object"))?;
        let url = |field: &str| -> Result<Option<String>, RequestError> {
            match obj.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(Value::String(s)) if s.starts_with("http://") || s.starts_with("https://") => {
                    Ok(Some(s.clone()))
                }
                Some(Value::String(s)) => Err(bad(field, format!("{s:?} is not an http(s) URL"))),
                Some(_) => Err(bad(field, "must be a string URL")),
            }
        };
        let gateway_request_id = match obj.get("gateway_request_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(bad("gateway_request_id", "must be a string")),
        };
        Ok(StartRequest {
            subscribe_url: url("subscribe_url")?
                .ok_or_else(|| bad("subscribe_url", "is required"))?,
            publish_url: url("publish_url")?,
            control_url: url("control_url")?,
            events_url: url("events_url")?,
            data_url: url("data_url")?,
            gateway_request_id,
            params: params_object(obj.get("params"), "params")?,
        })
    }
}

/// Reads a params object; absent or `null` is empty.
pub(crate) fn params_object(
    v: Option<&Value>,
    field: &str,
) -> Result<Map<String, Value>, RequestError> {
    match v {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(bad(field, "must be a JSON object")),
    }
}

/// Reads a params update, bare (`{"threshold": 200}`) or wrapped
/// (`{"params": {...}}`); both shapes are in use by pytrickle clients.
pub(crate) fn params_update(v: &Value) -> Result<Map<String, Value>, RequestError> {
    let obj = v
        .as_object()
        .ok_or_else(|| bad("body", "must be a JSON object"))?;
    match obj.get("params") {
        Some(p) => params_object(Some(p), "params"),
        None => Ok(obj.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_request_names_the_bad_field() {
        let err = StartRequest::from_json(br#"{"publish_url":"http://x/a"}"#).unwrap_err();
        assert_eq!(err.field, "subscribe_url");
        let err =
            StartRequest::from_json(br#"{"subscribe_url":"http://x/a","data_url":5}"#).unwrap_err();
        assert_eq!(err.field, "data_url");
        let err = StartRequest::from_json(br#"{"subscribe_url":"ftp://x"}"#).unwrap_err();
        assert_eq!(err.field, "subscribe_url");
        let err =
            StartRequest::from_json(br#"{"subscribe_url":"http://x","params":[1]}"#).unwrap_err();
        assert_eq!(err.field, "params");
        assert_eq!(StartRequest::from_json(b"{").unwrap_err().field, "body");
    }

    #[test]
    fn start_request_treats_empty_urls_as_absent() {
        let r = StartRequest::from_json(
            br#"{"subscribe_url":"http://h/ai/trickle/s","publish_url":"","gateway_request_id":"g","params":{"a":1}}"#,
        )
        .unwrap();
        assert_eq!(r.publish_url, None);
        assert_eq!(r.gateway_request_id.as_deref(), Some("g"));
        assert_eq!(r.params["a"], 1);
    }

    #[test]
    fn params_update_accepts_bare_and_wrapped() {
        let bare = params_update(&serde_json::json!({"threshold": 1})).unwrap();
        let wrapped = params_update(&serde_json::json!({"params": {"threshold": 1}})).unwrap();
        assert_eq!(bare, wrapped);
        assert!(params_update(&serde_json::json!([1])).is_err());
    }
}
