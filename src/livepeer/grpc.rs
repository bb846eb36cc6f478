//! `GetOrchestrator` over gRPC: HTTP/2 over rustls for `https://`
//! orchestrators, h2c (HTTP/2 without TLS, prior knowledge) for `http://`.

use std::time::{Duration, Instant};

use http::Uri;
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::error::LivepeerError;
use super::proto::orchestrator_client::OrchestratorClient;
use super::proto::{OrchestratorInfo, OrchestratorRequest};
use super::tls::{self, OrchestratorTls, TlsPlan};
use crate::trickle::TlsOptions;

/// One orchestrator's answer, and how to keep talking to it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub info: OrchestratorInfo,
    /// How long the call took, connection included.
    pub elapsed: Duration,
    /// The TLS options for every later request to this orchestrator: its
    /// pin (configured, stored, or just taken on first use), or `insecure`.
    pub tls: TlsOptions,
}

/// Asks `url` for its `OrchestratorInfo`, within `deadline`.
pub async fn get_orchestrator(
    url: &str,
    tls_choice: &OrchestratorTls,
    request: OrchestratorRequest,
    deadline: Duration,
) -> Result<Answer, LivepeerError> {
    let fail = |reason: String| LivepeerError::Orchestrator {
        url: url.to_string(),
        reason,
    };
    let origin: Uri = url
        .trim_end_matches('/')
        .parse()
        .map_err(|e| fail(format!("not a URL: {e}")))?;
    let plan = match origin.scheme_str() {
        Some("https") => tls_choice.plan(url)?,
        Some("http") => TlsPlan::Known(TlsOptions::default()),
        _ => return Err(fail("the scheme must be https or http (h2c)".into())),
    };
    let (config, seen) = tls::client_config(&plan)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(deadline));
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http2()
        .wrap_connector(http);
    let channel = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build::<_, tonic::body::Body>(connector);
    let mut client = OrchestratorClient::with_origin(channel, origin);
    let started = Instant::now();
    let answer = tokio::time::timeout(deadline, client.get_orchestrator(request))
        .await
        .map_err(|_| fail(format!("GetOrchestrator: no answer within {deadline:?}")))?
        .map_err(|status| {
            // The status alone says "client error (Connect)"; its cause
            // chain says why (refused, TLS, pin mismatch).
            fail(format!(
                "GetOrchestrator failed: {:?}: {}",
                status.code(),
                crate::error_chain::error_chain(&status)
            ))
        })?;
    let elapsed = started.elapsed();
    let tls = match (plan, seen.and_then(|s| s.fingerprint())) {
        (TlsPlan::FirstUse { file }, Some(fp)) => {
            tls::store_pin(&file, &fp)?;
            tracing::info!(
                orchestrator = url,
                pin_sha256 = %fp,
                file = %file.display(),
                "first contact: orchestrator certificate pinned (trust on first use)"
            );
            TlsOptions {
                pin_sha256: Some(fp),
                ..Default::default()
            }
        }
        (TlsPlan::FirstUse { .. }, None) => {
            return Err(fail("TLS: no certificate was presented".into()));
        }
        (TlsPlan::Known(opts), _) => opts,
    };
    Ok(Answer {
        info: answer.into_inner(),
        elapsed,
        tls,
    })
}
