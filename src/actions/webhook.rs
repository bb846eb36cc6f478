//! `type = "webhook"`: POSTs the item JSON to an `http://` or `https://` URL.
//!
//! One connection per delivery (webhooks are rare; no pool to go stale),
//! each attempt bounded by `timeout`, failures retried with exponential
//! backoff and full jitter. Deliveries are in order; while one is retrying
//! or a receiver is slow, later effects wait in the queue and, when it is
//! full, in the output's overflow file (`<spill_dir>/<output>.spill`, see
//! [`super::spill`]) as finished bodies. That file survives a restart, so
//! a receiver that was down while the agent restarted still gets them.
//!
//! `https://` servers are verified by the crate's TLS policy (system roots,
//! or the output's `ca_file` / `pin_sha256`; `insecure` warns at start). A
//! handshake refused over the certificate is not retried: it will not
//! change within a backoff, and each refusal is logged with its reason.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout};
use tokio_rustls::TlsConnector;

use super::config::WebhookConfig;
use super::counters::Counters;
use super::error::ActionError;
use super::json::item_json;
use super::queue::{Overflow, Queue};
use super::spill::{dir_or_default, path_in};
use super::tls::{OutputTls, insecure_warning};
use crate::backoff::Backoff;

/// A validated target: where to connect and what to send in the request line.
#[derive(Clone)]
pub(crate) struct Target {
    host: String,
    port: u16,
    authority: String,
    path: String,
    /// `https://`: the name the certificate must hold (a DNS name or an IP).
    server_name: Option<ServerName<'static>>,
    /// Set by [`prepare`] for `https://` targets.
    tls: Option<TlsConnector>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("authority", &self.authority)
            .field("path", &self.path)
            .field("https", &self.server_name.is_some())
            .finish()
    }
}

/// [`validate`], then the TLS config of an `https://` target (reading its
/// `ca_file`): what `run` starts with and what `check` tries on this machine.
pub(crate) fn prepare(output: &str, cfg: &WebhookConfig) -> Result<Target, ActionError> {
    let mut target = validate(output, cfg)?;
    if target.server_name.is_some() {
        let config = OutputTls::from(cfg).client_config(output)?;
        target.tls = Some(TlsConnector::from(config));
    }
    Ok(target)
}

pub(crate) fn validate(output: &str, cfg: &WebhookConfig) -> Result<Target, ActionError> {
    let invalid = |field, reason: String| ActionError::Invalid {
        output: output.into(),
        field,
        reason,
    };
    let only = || {
        invalid(
            "url",
            format!("{:?}: only http:// and https:// are supported", cfg.url),
        )
    };
    // The scheme first: `http::Uri` calls `file:///x` only "invalid format".
    let lower = cfg.url.to_ascii_lowercase();
    if !lower.starts_with("http://") && !lower.starts_with("https://") {
        return Err(only());
    }
    let uri: Uri = cfg
        .url
        .parse()
        .map_err(|e| invalid("url", format!("{:?}: {e}", cfg.url)))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(only()),
    };
    OutputTls::from(cfg).check(output, https, "url", "https:// URLs")?;
    let authority = uri
        .authority()
        .ok_or_else(|| invalid("url", format!("{:?}: no host", cfg.url)))?;
    if authority.as_str().contains('@') {
        return Err(invalid(
            "url",
            "credentials in the URL are not supported (they would end up in logs)".into(),
        ));
    }
    if cfg.max_attempts == 0 {
        return Err(invalid("max_attempts", "must be at least 1".into()));
    }
    if cfg.timeout.is_zero() {
        return Err(invalid("timeout", "must be more than 0".into()));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let server_name = if https {
        Some(ServerName::try_from(host.clone()).map_err(|e| {
            invalid(
                "url",
                format!(
                    "{:?}: {host:?} cannot be checked against a certificate: {e}",
                    cfg.url
                ),
            )
        })?)
    } else {
        None
    };
    Ok(Target {
        port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
        host,
        authority: authority.as_str().to_string(),
        path: uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
        server_name,
        tls: None,
    })
}

/// The webhook's overflow file; one left by an earlier run is sent first.
pub(crate) fn overflow(output: &str, cfg: &WebhookConfig) -> Result<Overflow, ActionError> {
    let dir = dir_or_default(cfg.spill_dir.as_deref());
    Overflow::open(
        output,
        "spill_dir",
        path_in(&dir, output),
        cfg.spill_max_bytes,
        Box::new(|e| {
            let mut line = body_of(e).to_vec();
            line.push(b'\n');
            line
        }),
    )
}

/// The POST body for an effect: compact JSON, so never a newline in it.
fn body_of(effect: &crate::rules::Effect) -> Bytes {
    Bytes::from(
        serde_json::to_vec(&item_json(&effect.rule, effect.item.as_deref())).unwrap_or_default(),
    )
}

/// Spilled bodies read back at once.
const SPILL_BATCH: usize = 256;

/// How one attempt ended.
enum Attempt {
    Delivered(StatusCode),
    /// Worth trying again: connection refused, timeout, 408, 429, 5xx.
    Retry(RetryReason),
    /// The receiver rejected the request itself (other 4xx): retrying is futile.
    Reject(StatusCode),
    /// The TLS handshake was refused (the server's certificate is not
    /// trusted, or the server refused ours): retrying is futile too.
    Untrusted(std::io::Error),
}

/// Why an attempt is worth repeating; logged with each retry and the give-up.
#[derive(Debug, thiserror::Error)]
enum RetryReason {
    #[error("connect: {0}")]
    Connect(#[source] std::io::Error),
    #[error("TLS handshake: {0}")]
    TlsHandshake(#[source] std::io::Error),
    #[error("handshake: {0}")]
    Handshake(#[source] hyper::Error),
    #[error("building request: {0}")]
    BuildRequest(#[source] http::Error),
    #[error("request: {0}")]
    Request(#[source] hyper::Error),
    /// 408, 429 or a 5xx: the receiver may take it later.
    #[error("status {0}")]
    Status(StatusCode),
    #[error("no response within {0:?}")]
    NoResponse(Duration),
}

pub(crate) async fn run(
    output: Arc<str>,
    cfg: WebhookConfig,
    target: Target,
    queue: Arc<Queue>,
    counters: Arc<Counters>,
) {
    if cfg.insecure {
        tracing::warn!(output = %output, url = %cfg.url, "{}", insecure_warning(&output, "webhook server"));
    }
    while queue.ready().await {
        // The queue first: while the overflow holds bodies, new effects go
        // behind them there, so what is queued is older.
        if let Some(effect) = queue.front() {
            deliver(&output, &cfg, &target, &counters, body_of(&effect)).await;
            queue.sent();
            continue;
        }
        let q = queue.clone();
        let bodies = match tokio::task::spawn_blocking(move || q.peek_spilled(SPILL_BATCH)).await {
            Ok(Ok(bodies)) => bodies,
            Ok(Err(e)) => {
                tracing::warn!(output = %output, error = %e, "cannot read the webhook's overflow file back; retrying");
                sleep(cfg.retry_max).await;
                continue;
            }
            Err(_) => return,
        };
        for mut body in bodies {
            let len = body.len() as u64;
            body.pop(); // the newline
            deliver(&output, &cfg, &target, &counters, Bytes::from(body)).await;
            // Sent (or given up on): a restart from here does not send it
            // again.
            if let Err(e) = queue.consume_spilled(1, len) {
                tracing::warn!(output = %output, error = %e, "cannot update the webhook's overflow file");
            }
        }
    }
}

/// POSTs one body, retrying as configured; counts how it ended.
async fn deliver(
    output: &str,
    cfg: &WebhookConfig,
    target: &Target,
    counters: &Counters,
    body: Bytes,
) {
    let mut backoff = Backoff::new(cfg.retry_min, cfg.retry_max);
    let mut attempt = 1;
    loop {
        let outcome = match timeout(cfg.timeout, post(target, body.clone())).await {
            Ok(outcome) => outcome,
            Err(_) => {
                counters.timeout();
                Attempt::Retry(RetryReason::NoResponse(cfg.timeout))
            }
        };
        match outcome {
            Attempt::Delivered(status) => {
                counters.sent();
                tracing::debug!(output, url = %cfg.url, %status, attempt, "webhook delivered");
                return;
            }
            Attempt::Reject(status) => {
                counters.failed();
                tracing::warn!(output, url = %cfg.url, %status, "webhook rejected, not retrying");
                return;
            }
            Attempt::Untrusted(error) => {
                counters.failed();
                tracing::warn!(output, url = %cfg.url, %error, "webhook refused: TLS handshake failed, not retrying");
                return;
            }
            Attempt::Retry(reason) if attempt >= cfg.max_attempts => {
                counters.failed();
                tracing::warn!(output, url = %cfg.url, attempt, %reason, "webhook failed, giving up");
                return;
            }
            Attempt::Retry(reason) => {
                let delay = backoff.next_delay();
                tracing::debug!(output, url = %cfg.url, attempt, %reason, ?delay, "webhook attempt failed, retrying");
                sleep(delay).await;
                counters.retry();
                attempt += 1;
            }
        }
    }
}

async fn post(target: &Target, body: Bytes) -> Attempt {
    let stream = match TcpStream::connect((target.host.as_str(), target.port)).await {
        Ok(s) => s,
        Err(e) => return Attempt::Retry(RetryReason::Connect(e)),
    };
    let (Some(tls), Some(name)) = (&target.tls, &target.server_name) else {
        return exchange(stream, target, body).await;
    };
    match tls.connect(name.clone(), stream).await {
        Ok(stream) => exchange(stream, target, body).await,
        // rustls refused (a certificate, a pin, an alert from the server):
        // that will not change on its own. Anything else (a reset, EOF) may.
        Err(e) if is_tls_refusal(&e) => Attempt::Untrusted(e),
        Err(e) => Attempt::Retry(RetryReason::TlsHandshake(e)),
    }
}

/// Whether a handshake error came from rustls itself, not from the socket.
fn is_tls_refusal(e: &std::io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}

/// One request and its response over a connected (plain or TLS) stream.
async fn exchange<S>(stream: S, target: &Target, body: Bytes) -> Attempt
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(pair) => pair,
        Err(e) => return Attempt::Retry(RetryReason::Handshake(e)),
    };
    // The connection future drives the socket; it ends when `sender` drops.
    let conn = tokio::spawn(conn);
    let request = Request::post(target.path.as_str())
        .header(HOST, target.authority.as_str())
        .header(CONTENT_TYPE, "application/json")
        .header(
            USER_AGENT,
            concat!("trickle-edge/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(body));
    let request = match request {
        Ok(r) => r,
        Err(e) => return Attempt::Retry(RetryReason::BuildRequest(e)),
    };
    let result = sender.send_request(request).await;
    drop(sender);
    conn.abort();
    match result {
        Ok(resp) => {
            let status = resp.status();
            if status.is_success() {
                Attempt::Delivered(status)
            } else if status.is_server_error()
                || status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::REQUEST_TIMEOUT
            {
                Attempt::Retry(RetryReason::Status(status))
            } else {
                Attempt::Reject(status)
            }
        }
        Err(e) => Attempt::Retry(RetryReason::Request(e)),
    }
}
