//! The Livepeer network as one job mode sees it: where candidates come
//! from, the signed `OrchestratorRequest`, the answers in arrival order, and
//! the refusals remembered between attempts.

use std::time::Duration;

use http::HeaderMap;
use tokio::sync::{OnceCell, mpsc};

use super::discovery::{self, Probe, Refusals};
use super::error::LivepeerError;
use super::grpc::get_orchestrator;
use super::proto::{Capabilities, OrchestratorInfo, OrchestratorRequest, lv2v_capabilities};
use super::signer::{RemoteSigner, SignerIdentity};
use super::tls::OrchestratorTls;
use crate::sync::LockIgnoringPoison;
use crate::trickle::{ClientOptions, HttpClient};

/// Everything needed to find and pay orchestrators, resolved from the config
/// (and its token, if any).
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    pub model_id: String,
    /// A static list; when non-empty, no discovery is done.
    pub orchestrators: Vec<String>,
    pub discovery_url: Option<String>,
    pub discovery_headers: HeaderMap,
    pub signer_url: Option<String>,
    pub signer_headers: HeaderMap,
    pub tls: OrchestratorTls,
    /// Per `GetOrchestrator`.
    pub deadline: Duration,
}

pub struct Network {
    config: NetworkConfig,
    http: HttpClient,
    signer: Option<RemoteSigner>,
    identity: OnceCell<SignerIdentity>,
    refusals: std::sync::Mutex<Refusals>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("model_id", &self.config.model_id)
            .finish()
    }
}

impl Network {
    /// `client` is used for the signer and discovery (verified against the
    /// system roots or `[tls]`, unlike orchestrators).
    pub fn new(config: NetworkConfig, client: &ClientOptions) -> Result<Self, LivepeerError> {
        let http = HttpClient::new(client)?;
        let signer = config
            .signer_url
            .as_deref()
            .map(|u| RemoteSigner::new(u, config.signer_headers.clone(), http.clone()));
        Ok(Self {
            config,
            http,
            signer,
            identity: OnceCell::new(),
            refusals: Default::default(),
        })
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    pub fn signer(&self) -> Option<&RemoteSigner> {
        self.signer.as_ref()
    }

    /// Capability 35 with the model as its constraint.
    pub fn capabilities(&self) -> Capabilities {
        lv2v_capabilities(&self.config.model_id)
    }

    /// `live-video-to-video/<model_id>`, the discovery `caps` value.
    fn caps_query(&self) -> String {
        format!("live-video-to-video/{}", self.config.model_id)
    }

    /// The candidates, from the first configured source.
    pub async fn candidates(&self) -> Result<Vec<String>, LivepeerError> {
        let c = &self.config;
        let list = if !c.orchestrators.is_empty() {
            c.orchestrators.clone()
        } else if let Some(url) = &c.discovery_url {
            discovery::fetch_addresses(
                &self.http,
                url,
                &c.discovery_headers,
                Some(&self.caps_query()),
            )
            .await?
        } else if let Some(signer) = &self.signer {
            signer
                .discover_orchestrators(Some(&self.caps_query()))
                .await?
        } else {
            return Err(LivepeerError::Discovery {
                url: String::new(),
                reason: "no orchestrators, discovery URL or signer configured".into(),
            });
        };
        if list.is_empty() {
            return Err(LivepeerError::Discovery {
                url: c
                    .discovery_url
                    .clone()
                    .or_else(|| self.signer.as_ref().map(|s| s.url().to_string()))
                    .unwrap_or_default(),
                reason: format!("no orchestrator offers {}", self.caps_query()),
            });
        }
        Ok(list)
    }

    /// The `OrchestratorRequest`: the signer's address and signature (asked
    /// once per process) when a signer is configured, empty off-chain.
    pub async fn request(&self) -> Result<OrchestratorRequest, LivepeerError> {
        let identity = match &self.signer {
            Some(signer) => self
                .identity
                .get_or_try_init(|| signer.sign_orchestrator_info())
                .await?
                .clone(),
            None => SignerIdentity::default(),
        };
        Ok(OrchestratorRequest {
            address: identity.address,
            sig: identity.sig,
            capabilities: Some(self.capabilities()),
            // Let an orchestrator without free capacity say so now, rather
            // than accept the GetOrchestrator and refuse the start.
            ignore_capacity_check: false,
        })
    }

    /// Asks up to five candidates, recent refusals last; answers arrive in
    /// the order they come.
    pub async fn ask(&self) -> Result<mpsc::Receiver<Probe>, LivepeerError> {
        let candidates = self.candidates().await?;
        let ordered = self.refusals.lock_ignoring_poison().order(&candidates);
        let request = self.request().await?;
        Ok(discovery::ask(
            &ordered,
            &self.config.tls,
            &request,
            self.config.deadline,
        ))
    }

    /// A fresh `OrchestratorInfo` from `url` (a 480 from the signer).
    pub async fn refresh(&self, url: &str) -> Result<OrchestratorInfo, LivepeerError> {
        let request = self.request().await?;
        Ok(
            get_orchestrator(url, &self.config.tls, request, self.config.deadline)
                .await?
                .info,
        )
    }

    /// Remembers that `url` refused, and why.
    pub fn refuse(&self, url: &str, reason: String) {
        tracing::warn!(orchestrator = url, %reason, "orchestrator refused");
        self.refusals.lock_ignoring_poison().remember(url, reason);
    }

    /// Why `url` refused recently, if it did.
    pub fn refusal(&self, url: &str) -> Option<String> {
        self.refusals
            .lock_ignoring_poison()
            .reason(url)
            .map(str::to_string)
    }
}
