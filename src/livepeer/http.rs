//! One HTTP call with a deadline to a Livepeer peer (orchestrator, signer,
//! discovery): a non-2xx answer becomes [`LivepeerError::Refused`] with its
//! status and plain-text body, never parsed as JSON.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};
use http_body_util::{BodyExt, Full};

use super::error::LivepeerError;
use crate::trickle::HttpClient;
use crate::trickle::client::RequestBody;

/// The most of an answer body kept for an error message.
const BODY_IN_ERRORS: usize = 512;

/// A refusal's body as text, trimmed and cut to a readable length.
pub fn body_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    match text.char_indices().nth(BODY_IN_ERRORS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

pub fn bytes_body(b: impl Into<Bytes>) -> RequestBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// Sends one request and reads the whole answer within `deadline`.
pub async fn call(
    http: &HttpClient,
    method: Method,
    url: &str,
    headers: &HeaderMap,
    body: RequestBody,
    deadline: Duration,
) -> Result<Bytes, LivepeerError> {
    let fut = async {
        let resp = http.send_with(method.clone(), url, headers, body).await?;
        let (parts, body) = resp.into_parts();
        let bytes = body
            .collect()
            .await
            .map_err(|e| LivepeerError::Orchestrator {
                url: url.to_string(),
                reason: format!("{method}: reading the answer: {e}"),
            })?
            .to_bytes();
        if !parts.status.is_success() {
            return Err(LivepeerError::Refused {
                method: method.to_string(),
                url: url.to_string(),
                status: parts.status.as_u16(),
                body: body_text(&bytes),
            });
        }
        Ok(bytes)
    };
    tokio::time::timeout(deadline, fut)
        .await
        .map_err(|_| LivepeerError::Orchestrator {
            url: url.to_string(),
            reason: format!("{method}: no answer within {deadline:?}"),
        })?
}
