//! `mode = "livepeer"`: a live-video-to-video job directly on Livepeer
//! orchestrators, the agent acting as its own gateway (the protocol is in
//! `crate::livepeer`).
//!
//! 1. Candidates from the configured source; `GetOrchestrator` to up to five
//!    at once; each answer, fastest first, is tried until one accepts.
//! 2. The start (`POST {transcoder}/live-video-to-video`) carries the
//!    session's payment headers: off-chain `SegData{auth_token}`, priced a
//!    payment from the remote signer (481: next orchestrator).
//! 3. The answer's channels become the job's URLs. LV2V has no data channel:
//!    pipeline output arrives on `events_url`, whose reader feeds both the
//!    rules (envelopes unwrapped, as data items) and the health check.
//! 4. A priced job pays `POST {transcoder}/payment` every
//!    [`PAY_EVERY`] or so while the camera publishes segments.
//! 5. Stop: the payment loop ends, publish and control channels are
//!    DELETEd (the orchestrator then closes the rest).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use super::JobUrls;
use super::error::JobError;
use super::watch::JobWatch;
use crate::config::LivepeerJob;
use crate::livepeer::discovery::{ASK_DEADLINE, Token, header_map};
use crate::livepeer::grpc::Answer;
use crate::livepeer::lv2v::{self, StartRequest};
use crate::livepeer::network::{Network, NetworkConfig};
use crate::livepeer::payment::{PaymentHeaders, PaymentOutcome, PaymentSession, offchain_segment};
use crate::livepeer::tls::OrchestratorTls;
use crate::livepeer::{LivepeerError, signer};
use crate::trickle::client::empty_body;
use crate::trickle::{ClientOptions, HttpClient};

/// A priced job pays at least this often while segments flow (the
/// orchestrator expects a payment every 5 s; the loop checks twice a second).
pub const PAY_EVERY: Duration = Duration::from_secs(4);

/// What `/healthz` and `/metrics` show of a Livepeer job: the current
/// orchestrator, the swaps to another one, the refusals met.
#[derive(Debug, Default)]
pub struct LivepeerCounters {
    pub orchestrator: std::sync::Mutex<Option<String>>,
    /// Fresh jobs started on another orchestrator after a job went silent.
    pub swaps: std::sync::atomic::AtomicU64,
    /// Orchestrators that failed to answer or refused a start.
    pub refusals: std::sync::atomic::AtomicU64,
    /// Times more than `max_swaps` swaps within `swap_window` made the
    /// agent back off and start over from discovery.
    pub swap_backoffs: std::sync::atomic::AtomicU64,
    /// Why the last job was given up (shown in `/healthz`).
    pub last_failover: std::sync::Mutex<Option<String>>,
    /// Set while backing off after too many swaps (unix ms of its end).
    pub backing_off_until_unix_ms: std::sync::atomic::AtomicU64,
}

impl LivepeerCounters {
    pub fn orchestrator(&self) -> Option<String> {
        use crate::sync::LockIgnoringPoison;
        self.orchestrator.lock_ignoring_poison().clone()
    }

    pub fn last_failover(&self) -> Option<String> {
        use crate::sync::LockIgnoringPoison;
        self.last_failover.lock_ignoring_poison().clone()
    }
}

/// How many segments the camera has published, for a payment loop that
/// pays only while media flows (set once the camera exists).
pub type SegmentCount = Arc<std::sync::OnceLock<Arc<dyn Fn() -> u64 + Send + Sync>>>;

impl From<LivepeerError> for JobError {
    fn from(e: LivepeerError) -> Self {
        match e {
            LivepeerError::Refused {
                method,
                url,
                status,
                body,
            } => JobError::Refused {
                method,
                url,
                status,
                body,
            },
            LivepeerError::Client(c) => JobError::Client(c),
            other => JobError::Orchestrator {
                url: "livepeer".into(),
                reason: other.to_string(),
            },
        }
    }
}

fn secrets(
    m: &std::collections::BTreeMap<String, crate::actions::Secret>,
) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect()
}

fn read_file(path: &Path, what: &str) -> Result<String, JobError> {
    std::fs::read_to_string(path).map_err(|e| JobError::Orchestrator {
        url: "livepeer".into(),
        reason: format!("cannot read {what} {}: {e}", path.display()),
    })
}

fn bad_config(reason: String) -> JobError {
    JobError::Orchestrator {
        url: "livepeer".into(),
        reason,
    }
}

/// Where trust-on-first-use pins live by default.
fn default_pins_dir() -> PathBuf {
    crate::state_dir::state_dir().join("livepeer-pins")
}

/// The network settings of `job`: its token file (whose values win, as in
/// the SDK) and headers file read now.
pub fn network_config(job: &LivepeerJob) -> Result<NetworkConfig, JobError> {
    let token = match &job.token_file {
        Some(path) => Token::parse(&read_file(path, "token file")?)
            .map_err(|e| bad_config(format!("{}: {e}", path.display())))?,
        None => Token::default(),
    };
    let signer_headers = super::signer_config::signer_headers(&job.signer())?;
    let signer_headers = token.signer_headers.clone().unwrap_or(signer_headers);
    let discovery_headers = token
        .discovery_headers
        .clone()
        .unwrap_or_else(|| secrets(&job.discovery_headers));
    let tls = match job.orchestrator_tls.as_str() {
        "insecure" => OrchestratorTls::Insecure,
        "pin" => OrchestratorTls::Pins(job.orchestrator_pins.clone()),
        _ => OrchestratorTls::Tofu {
            pins_dir: job.pins_dir.clone().unwrap_or_else(default_pins_dir),
        },
    };
    Ok(NetworkConfig {
        model_id: job.model_id.clone(),
        orchestrators: token
            .orchestrators
            .clone()
            .unwrap_or_else(|| job.orchestrators.clone()),
        discovery_url: token
            .discovery
            .clone()
            .or_else(|| job.discovery_url.clone()),
        discovery_headers: header_map(&discovery_headers).map_err(bad_config)?,
        signer_url: token.signer.clone().or_else(|| job.signer_url.clone()),
        signer_headers: header_map(&signer_headers).map_err(bad_config)?,
        tls,
        deadline: ASK_DEADLINE,
    })
}

/// A running LV2V job: what stop needs.
pub struct LivepeerStream {
    pub orchestrator: String,
    pub manifest_id: String,
    http: HttpClient,
    publish_url: String,
    control_url: Option<String>,
    payments: Option<JoinHandle<()>>,
    /// Set when the job cannot go on here: by the payment loop (the signer
    /// refuses the price mid-stream, or the orchestrator ended the session)
    /// and by the agent's stages (a channel answered 404 or was closed).
    watch: Arc<JobWatch>,
}

impl std::fmt::Debug for LivepeerStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LivepeerStream")
            .field("orchestrator", &self.orchestrator)
            .field("manifest_id", &self.manifest_id)
            .finish()
    }
}

impl Drop for LivepeerStream {
    fn drop(&mut self) {
        if let Some(p) = self.payments.take() {
            p.abort();
        }
    }
}

/// The job started: its stream, channel URLs, and the client options its
/// channels need (the orchestrator's pin).
pub struct Started {
    pub stream: LivepeerStream,
    pub urls: JobUrls,
    pub channel_client: ClientOptions,
}

/// Starts a job on the first orchestrator that accepts, fastest answers
/// first; every refusal is remembered with its reason.
pub async fn start(
    network: &Arc<Network>,
    params: serde_json::Map<String, serde_json::Value>,
    client: &ClientOptions,
    request_id: &str,
    segments: &SegmentCount,
    counters: &LivepeerCounters,
) -> Result<Started, JobError> {
    let mut answers = network.ask().await?;
    let req = StartRequest {
        model_id: network.config().model_id.clone(),
        params,
        gateway_request_id: request_id.to_string(),
        stream_id: request_id.to_string(),
    };
    let mut refusals = Vec::new();
    // An answer from an orchestrator that refused recently waits until
    // every other answer was tried.
    let mut deferred = Vec::new();
    let mut fresh = true;
    loop {
        let probe = if fresh {
            match answers.recv().await {
                Some(p) if p.result.is_ok() && network.refusal(&p.url).is_some() => {
                    deferred.push(p);
                    continue;
                }
                Some(p) => p,
                None => {
                    fresh = false;
                    continue;
                }
            }
        } else if deferred.is_empty() {
            break;
        } else {
            deferred.remove(0)
        };
        let result = match probe.result {
            Ok(answer) => try_start(network, &probe.url, answer, &req, client, segments).await,
            Err(e) => Err(JobError::from(e)),
        };
        match result {
            Ok(started) => return Ok(started),
            Err(e) => {
                network.refuse(&probe.url, e.to_string());
                counters
                    .refusals
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                refusals.push(format!("{}: {e}", probe.url));
            }
        }
    }
    Err(JobError::Orchestrator {
        url: "livepeer".into(),
        reason: format!(
            "no orchestrator accepted the job ({} tried): {}",
            refusals.len(),
            refusals.join("; ")
        ),
    })
}

async fn try_start(
    network: &Arc<Network>,
    url: &str,
    answer: Answer,
    req: &StartRequest,
    client: &ClientOptions,
    segments: &SegmentCount,
) -> Result<Started, JobError> {
    // The orchestrator's pin (or `insecure`) for every later request to it;
    // the agent's own bearer token is not theirs to see.
    let orch_client = ClientOptions {
        tls: answer.tls.clone(),
        bearer_token: None,
        ..client.clone()
    };
    let http = HttpClient::new(&orch_client)?;
    let transcoder = if answer.info.transcoder.is_empty() {
        url.to_string()
    } else {
        answer.info.transcoder.clone()
    };
    let mut session = PaymentSession::new(
        url,
        answer.info.clone(),
        network.capabilities(),
        network.signer().cloned(),
    )?;
    let refresh = |u: String| {
        let network = network.clone();
        async move { network.refresh(&u).await }
    };
    let headers = match session.next_with_refresh(refresh).await {
        Ok(PaymentOutcome::Pay(h)) => h,
        Ok(PaymentOutcome::Skip) => PaymentHeaders {
            payment: String::new(),
            segment: offchain_segment(session.info(), url)?,
        },
        Err(e) if e.status() == Some(signer::PRICE_TOO_HIGH) => {
            return Err(bad_config(format!(
                "the remote signer refuses this orchestrator's price (481): {e}"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let started = lv2v::start(&http, &transcoder, &headers, req).await?;
    session.set_manifest_id(&started.manifest_id);
    info!(
        orchestrator = url,
        manifest_id = %started.manifest_id,
        priced = session.is_priced(),
        answered_in_ms = answer.elapsed.as_millis() as u64,
        "livepeer job started"
    );
    let watch = Arc::new(JobWatch::default());
    let payments = session.is_priced().then(|| {
        tokio::spawn(pay_loop(
            session,
            http.clone(),
            transcoder.clone(),
            network.clone(),
            segments.clone(),
            watch.clone(),
        ))
    });
    let urls = JobUrls {
        publish: started.publish_url.clone(),
        subscribe: started.subscribe_url.clone(),
        control: started.control_url.clone(),
        events: started.events_url.clone(),
        data: None,
    };
    Ok(Started {
        stream: LivepeerStream {
            orchestrator: url.to_string(),
            manifest_id: started.manifest_id,
            http,
            publish_url: started.publish_url,
            control_url: started.control_url,
            payments,
            watch,
        },
        urls,
        channel_client: orch_client,
    })
}

/// Pays every [`PAY_EVERY`] while the camera publishes: checked every
/// half second, paid once that long has passed and a new segment went out since
/// the last payment (as Livepeer's Go gateway pays on input segments).
/// A failed payment is retried at the next check.
async fn pay_loop(
    mut session: PaymentSession,
    http: HttpClient,
    transcoder: String,
    network: Arc<Network>,
    segments: SegmentCount,
    watch: Arc<JobWatch>,
) {
    let fail = |reason: String| {
        warn!(orchestrator = %transcoder, %reason, "livepeer job cannot go on here");
        watch.fail(reason);
    };
    let count = || segments.get().map(|f| f());
    let mut last_paid = Instant::now();
    let mut paid_at_count = count();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let now_count = count();
        let media_moved = now_count.is_none() || now_count != paid_at_count;
        if last_paid.elapsed() < PAY_EVERY || !media_moved {
            continue;
        }
        let refresh = |u: String| {
            let network = network.clone();
            async move { network.refresh(&u).await }
        };
        match session.next_with_refresh(refresh).await {
            Ok(PaymentOutcome::Pay(h)) => match lv2v::pay(&http, &transcoder, &h).await {
                Ok(info) => {
                    if let Some(info) = info {
                        session.replace_info(info);
                    }
                    last_paid = Instant::now();
                    paid_at_count = now_count;
                }
                // The session is gone: the orchestrator closed the job.
                Err(e) if e.status() == Some(404) => {
                    return fail(format!("the orchestrator ended the session: {e}"));
                }
                Err(e) => warn!(orchestrator = %transcoder, error = %e, "payment refused"),
            },
            Ok(PaymentOutcome::Skip) => {
                tracing::debug!("remote signer: no payment needed this cycle (482)");
                last_paid = Instant::now();
                paid_at_count = now_count;
            }
            // Mid-stream, the SDK only logs a 481; moving on is better.
            Err(e) if e.status() == Some(signer::PRICE_TOO_HIGH) => {
                return fail(format!(
                    "the remote signer refuses this orchestrator's price (481): {e}"
                ));
            }
            Err(e) => warn!(orchestrator = %transcoder, error = %e, "no payment this cycle"),
        }
    }
}

impl LivepeerStream {
    /// Why this job cannot go on, once its payment loop or a stage found out.
    pub fn failed(&self) -> Option<String> {
        self.watch.fault()
    }

    /// Where the agent's stages report a closed channel or output.
    pub fn watch(&self) -> Arc<JobWatch> {
        self.watch.clone()
    }

    /// Ends payments and DELETEs the publish and control channels.
    pub async fn stop(&self) -> Result<(), JobError> {
        if let Some(p) = &self.payments {
            p.abort();
        }
        for url in std::iter::once(&self.publish_url).chain(self.control_url.as_ref()) {
            let sent = tokio::time::timeout(
                Duration::from_secs(2),
                self.http
                    .send_with(Method::DELETE, url, &HeaderMap::new(), empty_body()),
            )
            .await;
            if let Ok(Err(e)) = sent {
                warn!(url = %url, error = %e, "closing a channel of the livepeer job failed");
            }
        }
        Ok(())
    }
}

/// One candidate as `trickle-edge orchestrators` shows it.
#[derive(Debug, Clone)]
pub struct Surveyed {
    pub url: String,
    /// `GetOrchestrator`'s round trip, connection included.
    pub elapsed: Option<Duration>,
    /// (price per unit, pixels per unit); `None` off-chain.
    pub price: Option<(i64, i64)>,
    /// What the orchestrator said about capacity for the model.
    pub capacity: String,
    /// Why it cannot be used, if it cannot.
    pub refusal: Option<String>,
}

impl std::fmt::Display for Surveyed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self
            .elapsed
            .map(|d| format!("{:.0} ms", d.as_secs_f64() * 1000.0))
            .unwrap_or_else(|| "-".into());
        let price = match self.price {
            Some((p, px)) => format!("{p} wei/{px} px"),
            None => "off-chain".into(),
        };
        match &self.refusal {
            None => write!(f, "ok    {}  {ms}  {price}  {}", self.url, self.capacity),
            Some(r) => write!(f, "FAIL  {}  {ms}  {r}", self.url),
        }
    }
}

/// Asks every candidate (up to five) and reports each answer in arrival
/// order, refusals with their reason.
pub async fn survey(network: &Network) -> Result<Vec<Surveyed>, JobError> {
    let mut answers = network.ask().await?;
    let model = network.config().model_id.clone();
    let mut out = Vec::new();
    while let Some(probe) = answers.recv().await {
        out.push(match probe.result {
            Ok(a) => {
                let price = a
                    .info
                    .price_info
                    .as_ref()
                    .filter(|p| p.price_per_unit > 0)
                    .map(|p| (p.price_per_unit, p.pixels_per_unit.max(1)));
                let model_capacity = a
                    .info
                    .capabilities
                    .as_ref()
                    .and_then(|c| c.constraints.as_ref())
                    .and_then(|c| {
                        c.per_capability
                            .get(&crate::livepeer::proto::LIVE_VIDEO_TO_VIDEO)
                    })
                    .and_then(|c| c.models.get(&model));
                let capacity = match model_capacity {
                    Some(m) => format!(
                        "capacity {}/{} in use{}",
                        m.capacity_in_use,
                        m.capacity,
                        if m.warm { ", warm" } else { "" }
                    ),
                    None => "capacity checked: free".into(),
                };
                Surveyed {
                    url: probe.url,
                    elapsed: Some(a.elapsed),
                    price,
                    capacity,
                    refusal: None,
                }
            }
            Err(e) => Surveyed {
                url: probe.url,
                elapsed: None,
                price: None,
                capacity: String::new(),
                refusal: Some(e.to_string()),
            },
        });
    }
    Ok(out)
}
