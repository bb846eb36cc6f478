//! Where orchestrators come from, and which answers first.
//!
//! Sources, the first configured one wins (the SDK's order): a static list,
//! a discovery URL (`GET <url>?caps=live-video-to-video/<model_id>`), or the
//! remote signer's `/discover-orchestrators`. One base64 token may carry all
//! of them. [`ask`] then sends `GetOrchestrator` to up to
//! [`MAX_PARALLEL`] candidates at once and hands back the answers in the
//! order they arrive, so a job starts on the first good answer instead of
//! waiting for the slowest candidate.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::error::LivepeerError;
use super::grpc::{Answer, get_orchestrator};
use super::http::call;
use super::proto::OrchestratorRequest;
use super::tls::OrchestratorTls;
use crate::trickle::HttpClient;
use crate::trickle::client::empty_body;

/// Candidates asked at once.
pub const MAX_PARALLEL: usize = 5;
/// How long one `GetOrchestrator` may take.
pub const ASK_DEADLINE: Duration = Duration::from_secs(5);

/// The SDK's token: base64 of a JSON object carrying every source at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Token {
    pub orchestrators: Option<Vec<String>>,
    pub signer: Option<String>,
    pub signer_headers: Option<HashMap<String, String>>,
    pub discovery: Option<String>,
    pub discovery_headers: Option<HashMap<String, String>>,
}

impl Token {
    pub fn parse(token: &str) -> Result<Token, LivepeerError> {
        let bytes = BASE64
            .decode(token.trim())
            .map_err(|_| LivepeerError::Token("expected base64-encoded JSON".into()))?;
        let token: Token = serde_json::from_slice(&bytes)
            .map_err(|e| LivepeerError::Token(format!("expected a JSON object: {e}")))?;
        if let Some(o) = &token.orchestrators
            && o.iter().any(|u| u.trim().is_empty())
        {
            return Err(LivepeerError::Token(
                "orchestrators must hold only non-empty strings".into(),
            ));
        }
        Ok(token)
    }
}

/// Headers from a name → value map (signer or discovery headers).
pub fn header_map(headers: &HashMap<String, String>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("{k:?} is not an HTTP header name"))?;
        let mut value = HeaderValue::from_str(v)
            .map_err(|_| format!("the value of header {k:?} cannot be sent in HTTP"))?;
        value.set_sensitive(true);
        map.insert(name, value);
    }
    Ok(map)
}

/// One entry of a discovery answer; only the address is used.
#[derive(Debug, Deserialize)]
struct Discovered {
    address: String,
}

/// `GET url` (with `?caps=<caps>` when given) answering a JSON list of
/// `{address, …}`.
pub async fn fetch_addresses(
    http: &HttpClient,
    url: &str,
    headers: &HeaderMap,
    caps: Option<&str>,
) -> Result<Vec<String>, LivepeerError> {
    let full = match caps {
        // The `/` in `pipeline/model` stays unescaped, as the SDK sends it.
        Some(c) => {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}caps={c}")
        }
        None => url.to_string(),
    };
    let bytes = call(
        http,
        Method::GET,
        &full,
        headers,
        empty_body(),
        ASK_DEADLINE,
    )
    .await?;
    let list: Vec<Discovered> =
        serde_json::from_slice(&bytes).map_err(|e| LivepeerError::Discovery {
            url: full.clone(),
            reason: format!("expected a JSON list of {{\"address\": …}}: {e}"),
        })?;
    Ok(list
        .into_iter()
        .map(|d| d.address.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect())
}

/// One candidate's answer, in the order answers arrived.
#[derive(Debug)]
pub struct Probe {
    pub url: String,
    pub result: Result<Answer, LivepeerError>,
}

/// Asks up to [`MAX_PARALLEL`] of `candidates` at once; answers (and
/// failures) come out of the receiver as they arrive.
pub fn ask(
    candidates: &[String],
    tls: &OrchestratorTls,
    request: &OrchestratorRequest,
    deadline: Duration,
) -> mpsc::Receiver<Probe> {
    let (tx, rx) = mpsc::channel(MAX_PARALLEL);
    for url in candidates.iter().take(MAX_PARALLEL) {
        let (tx, url, tls, request) = (tx.clone(), url.clone(), tls.clone(), request.clone());
        tokio::spawn(async move {
            let result = get_orchestrator(&url, &tls, request, deadline).await;
            let _ = tx.send(Probe { url, result }).await;
        });
    }
    rx
}

/// Orchestrators that refused recently, with why, so a retry does not go
/// straight back to one that just said no.
#[derive(Debug, Default)]
pub struct Refusals {
    by_url: HashMap<String, (Instant, String)>,
}

/// How long a refusal keeps an orchestrator at the back of the line.
pub const REFUSAL_MEMORY: Duration = Duration::from_secs(180);

impl Refusals {
    pub fn remember(&mut self, url: &str, reason: String) {
        self.by_url
            .insert(url.to_string(), (Instant::now(), reason));
    }

    pub fn reason(&self, url: &str) -> Option<&str> {
        self.by_url
            .get(url)
            .filter(|(at, _)| at.elapsed() < REFUSAL_MEMORY)
            .map(|(_, r)| r.as_str())
    }

    /// `candidates` with recent refusals moved to the end (kept, so a
    /// network where everyone refused is still retried).
    pub fn order(&self, candidates: &[String]) -> Vec<String> {
        let (fresh, refused): (Vec<_>, Vec<_>) = candidates
            .iter()
            .cloned()
            .partition(|u| self.reason(u).is_none());
        fresh.into_iter().chain(refused).collect()
    }

    pub fn len(&self) -> usize {
        self.by_url.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_url.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_every_source() {
        let raw = r#"{"orchestrators":["https://a:8935"],"signer":"http://s","signer_headers":{"Authorization":"Bearer x"}}"#;
        let t = Token::parse(&BASE64.encode(raw)).unwrap();
        assert_eq!(t.orchestrators.unwrap(), ["https://a:8935"]);
        assert_eq!(t.signer.as_deref(), Some("http://s"));
        assert!(Token::parse("not base64!").is_err());
        let err = Token::parse(&BASE64.encode(r#"{"orchestrators":[" "]}"#)).unwrap_err();
        assert!(err.to_string().contains("non-empty"), "{err}");
    }

    #[test]
    fn recent_refusals_go_last() {
        let mut r = Refusals::default();
        r.remember("b", "503 insufficient capacity".into());
        let order = r.order(&["a".into(), "b".into(), "c".into()]);
        assert_eq!(order, ["a", "c", "b"]);
        assert_eq!(r.reason("b"), Some("503 insufficient capacity"));
    }
}
