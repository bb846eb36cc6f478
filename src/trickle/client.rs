//! The HTTP client shared by publishers and subscribers.
//!
//! hyper's HTTP/1 client skips unsolicited `1xx` responses (the server's
//! `100 Continue` keepalives on an idle POST) and hands back early final
//! responses, both of which trickle relies on. Connections are pooled so a
//! subscriber's next GET usually reuses the socket of the last one.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, Uri, header};
use http_body_util::{BodyExt, Empty, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::tls::{TlsError, TlsOptions};

pub type RequestBody = BoxBody<Bytes, io::Error>;

/// Connection settings common to publishers and subscribers.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub tls: TlsOptions,
    /// Sent as `Authorization: Bearer …` when set. Never logged.
    pub bearer_token: Option<String>,
    pub connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            tls: TlsOptions::default(),
            bearer_token: None,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("invalid URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("{method} {url}: {detail}")]
    Request {
        method: Method,
        url: String,
        /// The whole cause chain: hyper's own message says only "Connect".
        detail: String,
        connect: bool,
    },
}

/// Kept here too: clients were its first users.
pub use crate::error_chain::error_chain;

impl ClientError {
    /// Whether the request never reached the server (refused, DNS, TLS):
    /// safe to retry without the server having seen anything.
    pub fn is_connect(&self) -> bool {
        matches!(self, ClientError::Request { connect: true, .. })
    }
}

/// How long a connection may carry unacknowledged bytes, or go unanswered
/// by keepalive probes, before it counts as dead. Long enough for a slow
/// (100 kbit/s) uplink still making progress; short enough that a healed
/// link is used again within seconds rather than at the next doubled RTO.
pub const DEAD_PATH_AFTER: Duration = Duration::from_secs(10);

/// A cheap-to-clone HTTP/1.1 client with the configured TLS policy.
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, RequestBody>,
    token: Option<Arc<HeaderValue>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

pub fn empty_body() -> RequestBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Checks that a URL is absolute http(s) with a host, and returns it parsed.
pub fn parse_url(url: &str) -> Result<Uri, ClientError> {
    let bad = |reason: &str| ClientError::BadUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let uri: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(bad("scheme must be http or https")),
    }
    if uri.host().is_none() {
        return Err(bad("missing host"));
    }
    Ok(uri)
}

impl HttpClient {
    pub fn new(opts: &ClientOptions) -> Result<Self, ClientError> {
        let tls = opts.tls.client_config()?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(opts.connect_timeout));
        // A path that went dead (a partition, a cable pulled) must not keep
        // a connection that the kernel retransmits into with an ever longer
        // RTO: after a 30 s partition the next retransmission came ~10 s
        // after the link healed, and media and data waited for it. Unacked
        // data older than `DEAD_PATH_AFTER` ends the connection; an idle one
        // (a GET parked on a future segment) is probed by keepalives.
        // Either way the client sees an error and reconnects with backoff.
        http.set_keepalive(Some(DEAD_PATH_AFTER / 2));
        http.set_keepalive_interval(Some(Duration::from_secs(1)));
        http.set_keepalive_retries(Some(3));
        #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
        http.set_tcp_user_timeout(Some(DEAD_PATH_AFTER));
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(8)
            .build(https);
        let token = match &opts.bearer_token {
            Some(t) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
                    ClientError::BadUrl {
                        url: String::new(),
                        reason: "bearer token holds characters not allowed in a header".into(),
                    }
                })?;
                v.set_sensitive(true);
                Some(Arc::new(v))
            }
            None => None,
        };
        Ok(Self { inner, token })
    }

    /// Sends a request; the response arrives once its headers do.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&'static str, HeaderValue)],
        body: RequestBody,
    ) -> Result<Response<Incoming>, ClientError> {
        let mut map = http::HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, value.clone());
        }
        self.send_with(method, url, &map, body).await
    }

    /// [`send`](Self::send) with headers whose names are only known at run
    /// time (a remote signer's configured headers).
    pub async fn send_with(
        &self,
        method: Method,
        url: &str,
        headers: &http::HeaderMap,
        body: RequestBody,
    ) -> Result<Response<Incoming>, ClientError> {
        let uri = parse_url(url)?;
        let mut req = Request::builder().method(method.clone()).uri(uri);
        for (name, value) in headers {
            req = req.header(name, value.clone());
        }
        if let Some(token) = &self.token {
            req = req.header(header::AUTHORIZATION, (**token).clone());
        }
        let req = req.body(body).map_err(|e| ClientError::BadUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        self.inner
            .request(req)
            .await
            .map_err(|source| ClientError::Request {
                method,
                url: url.to_string(),
                detail: error_chain(&source),
                connect: source.is_connect(),
            })
    }
}

/// Reads a seq header (`Lp-Trickle-Seq`, `Lp-Trickle-Latest`). A value
/// outside [`valid_seq`](super::headers::valid_seq) counts as absent: a
/// hostile or broken server cannot make us count past `i64::MAX`.
pub fn header_i64(resp: &Response<Incoming>, name: &str) -> Option<i64> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .filter(|s| super::headers::valid_seq(*s))
}
