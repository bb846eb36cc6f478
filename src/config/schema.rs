//! The agent's TOML schema. Sections owned by other modules (`[camera]`,
//! `[encoder]`, `[outputs.NAME]`, `[[rules]]`) are embedded as their own types
//! so there is one definition of each; this file only adds what ties them
//! together. Every struct denies unknown fields: a typo must fail `check`, not
//! silently fall back to a default on a device nobody is watching.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::actions::{OutputConfig, Secret};
use crate::duration;
use crate::media::{CameraConfig, EncoderConfig};
use crate::rules::RuleConfig;
use crate::trickle::TlsOptions;

/// The whole config file, after the board preset is merged under it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Preset from `boards/NAME.toml`; already merged when this value exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub board: Option<String>,
    #[serde(default)]
    pub camera: CameraConfig,
    #[serde(default)]
    pub encoder: EncoderConfig,
    #[serde(default)]
    pub gpio: GpioDefaults,
    /// Required: an agent that does not say where its media goes cannot
    /// guess (`load` turns serde's "missing field" into a message with a hint).
    pub job: JobMode,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub supervisor: SupervisorConfig,
    #[serde(default)]
    pub queue: QueueConfig,
    #[serde(default)]
    pub outputs: BTreeMap<String, OutputConfig>,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// `[gpio]`: board-wide defaults, so a preset can name the header's chip once
/// and `[outputs.NAME]` tables only say which line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioDefaults {
    /// Chip for `type = "gpio"` outputs that do not name one (label or path).
    #[serde(default)]
    pub chip: Option<String>,
}

/// `[job]`: how the agent gets its channel URLs, selected by `mode`.
/// A new mode (e.g. `livepeer`) is one more variant with its own struct.
// The livepeer variant is the largest by far; a config is parsed once per
// load and held once, so boxing it would only add noise at every match.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum JobMode {
    /// Channel URLs fixed in the config (a gateway set up out of band).
    Static(StaticJob),
    /// The agent runs its own trickle server and asks a worker to start a
    /// stream against it (pytrickle worker API).
    Worker(WorkerJob),
    /// A stream on a Livepeer orchestrator's bring-your-own-container
    /// capability: the orchestrator hosts the channels and forwards the
    /// stream to the container registered under `capability`.
    Byoc(ByocJob),
    /// A live-video-to-video job directly on Livepeer orchestrators, acting
    /// as its own gateway: discovery, `GetOrchestrator`, payments.
    Livepeer(LivepeerJob),
}

impl JobMode {
    /// The `mode` value, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            JobMode::Static(_) => "static",
            JobMode::Worker(_) => "worker",
            JobMode::Byoc(_) => "byoc",
            JobMode::Livepeer(_) => "livepeer",
        }
    }
}

/// `mode = "static"`: every URL given; only `publish_url` is required.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticJob {
    /// Where camera segments go.
    pub publish_url: String,
    /// Processed video back (optional: not every pipeline returns video).
    #[serde(default)]
    pub subscribe_url: Option<String>,
    /// Keepalives and parameter updates.
    #[serde(default)]
    pub control_url: Option<String>,
    /// Pipeline events; their absence is how a dead pipeline is noticed.
    #[serde(default)]
    pub events_url: Option<String>,
    /// Detections and other AI output that drive the rules.
    #[serde(default)]
    pub data_url: Option<String>,
}

/// `mode = "worker"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerJob {
    /// Base URL of the worker's HTTP API (`POST /api/stream/start`).
    #[serde(default = "default_worker_url")]
    pub worker_url: String,
    /// Where the worker's stream routes live: `"/api"` (our reference worker,
    /// pytrickle with `route_prefix="/api"`), `"/"` (pytrickle's default), or
    /// `"auto"` (the default): try `/api/stream/start`, `/stream/start`, then
    /// `/live-video-to-video`, and use what answered for stop and params.
    #[serde(default = "default_api_prefix")]
    pub api_prefix: String,
    /// Address of the agent's own trickle server, which the worker reads from
    /// and writes to.
    #[serde(default = "default_trickle_listen")]
    pub listen: SocketAddr,
    /// Channel names on that server are `<prefix>-<n>-in`,
    /// `<prefix>-<n>-data`, …, with `n` counting job starts (fresh channels
    /// for every start, as Livepeer's gateway makes them).
    #[serde(default = "default_channel_prefix")]
    pub channel_prefix: String,
    /// Passed to the worker as JSON when the stream starts (prompt, model, …).
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
}

fn default_worker_url() -> String {
    "http://127.0.0.1:8000".into()
}
fn default_api_prefix() -> String {
    "auto".into()
}
fn default_trickle_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 2939))
}
fn default_channel_prefix() -> String {
    "trickle-edge".into()
}

impl Default for WorkerJob {
    fn default() -> Self {
        Self {
            worker_url: default_worker_url(),
            api_prefix: default_api_prefix(),
            listen: default_trickle_listen(),
            channel_prefix: default_channel_prefix(),
            params: serde_json::Map::new(),
        }
    }
}

/// `mode = "byoc"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ByocJob {
    /// The orchestrator's base URL (`GET /process/token` goes there; the
    /// stream itself goes to the `service_addr` it answers).
    pub orchestrator_url: String,
    /// The capability name the container was registered under.
    pub capability: String,
    /// Sent as the stream's `params` (the worker sees them at start).
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// How long the orchestrator waits for the worker on each call
    /// (`timeout_seconds` in the `Livepeer` header; it refuses 0).
    #[serde(default = "default_byoc_timeout")]
    pub timeout_seconds: u32,
    /// Ask for the processed video back (`enable_video_egress`); an edge
    /// agent acting on data usually does not need it.
    #[serde(default)]
    pub video_egress: bool,
    /// Remote signer: signs every job request (`/sign-byoc-job`) and pays a
    /// priced capability (`/generate-live-payment`). Without one the stream
    /// is off-chain: unsigned, and a priced capability is refused.
    #[serde(default)]
    pub signer_url: Option<String>,
    /// Extra headers on every signer call (`Authorization = "Bearer …"`).
    #[serde(default)]
    pub signer_headers: BTreeMap<String, Secret>,
    /// A JSON object of more signer headers, read at each job start.
    #[serde(default)]
    pub signer_headers_file: Option<PathBuf>,
    /// How often a priced stream pays `/ai/stream/payment` (Livepeer's
    /// gateway: 50 s; the orchestrator wants 60 s of balance at start and
    /// stops the stream once it runs out).
    #[serde(
        default = "default_payment_interval",
        deserialize_with = "duration::deserialize",
        serialize_with = "duration::serialize"
    )]
    pub payment_interval: Duration,
    /// Where `GetOrchestrator` (gRPC) goes for the ticket parameters a
    /// payment needs; default `orchestrator_url` (go-livepeer serves HTTP
    /// and gRPC on one port).
    #[serde(default)]
    pub grpc_url: Option<String>,
}

fn default_payment_interval() -> Duration {
    Duration::from_secs(50)
}

/// The remote-signer settings both Livepeer modes share (`signer_url`,
/// `signer_headers`, `signer_headers_file`), checked and resolved once.
#[derive(Debug, Clone, Copy)]
pub struct SignerSettings<'a> {
    pub url: Option<&'a str>,
    pub headers: &'a BTreeMap<String, Secret>,
    pub headers_file: Option<&'a std::path::Path>,
}

impl ByocJob {
    pub fn signer(&self) -> SignerSettings<'_> {
        SignerSettings {
            url: self.signer_url.as_deref(),
            headers: &self.signer_headers,
            headers_file: self.signer_headers_file.as_deref(),
        }
    }
}

impl LivepeerJob {
    pub fn signer(&self) -> SignerSettings<'_> {
        SignerSettings {
            url: self.signer_url.as_deref(),
            headers: &self.signer_headers,
            headers_file: self.signer_headers_file.as_deref(),
        }
    }
}

fn default_byoc_timeout() -> u32 {
    30
}

/// `mode = "livepeer"`: orchestrators come from the first source set, in
/// this order: `orchestrators`, `discovery_url`, the signer's
/// `/discover-orchestrators` (or all of them at once in `token_file`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LivepeerJob {
    /// The pipeline to run (`model_id` of the start request): required.
    pub model_id: String,
    /// Orchestrator URLs (`https://host:8935`; `http://` is h2c).
    #[serde(default)]
    pub orchestrators: Vec<String>,
    /// `GET <url>?caps=live-video-to-video/<model_id>` answers candidates.
    #[serde(default)]
    pub discovery_url: Option<String>,
    #[serde(default)]
    pub discovery_headers: BTreeMap<String, Secret>,
    /// Remote signer, needed for priced (on-chain) orchestrators.
    #[serde(default)]
    pub signer_url: Option<String>,
    /// Extra headers on every signer call (`Authorization = "Bearer …"`).
    #[serde(default)]
    pub signer_headers: BTreeMap<String, Secret>,
    /// A JSON object of more signer headers, read at each job start (keeps
    /// the secret out of the config file).
    #[serde(default)]
    pub signer_headers_file: Option<PathBuf>,
    /// A file holding the Livepeer SDK's base64 token (orchestrators,
    /// signer, discovery and their headers at once); its values win.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Orchestrator certificates: `"tofu"` (default: pin the first one seen,
    /// kept in `pins_dir`), `"pin"` (only `orchestrator_pins`) or
    /// `"insecure"` (any, with a warning at every connection).
    #[serde(default = "default_orchestrator_tls")]
    pub orchestrator_tls: String,
    /// `"host:port" = "<sha256 hex>"`, for `orchestrator_tls = "pin"`.
    #[serde(default)]
    pub orchestrator_pins: BTreeMap<String, String>,
    /// Where trust-on-first-use pins are kept (default: `$STATE_DIRECTORY`,
    /// set by systemd, else `/var/lib/trickle-edge`, plus `/livepeer-pins`).
    #[serde(default)]
    pub pins_dir: Option<PathBuf>,
    /// Sent as the job's `params`.
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// The pipeline publishes processed video on `subscribe_url`: the agent
    /// follows it, and a job without an output segment for
    /// `output_silent_after` fails over (Livepeer's gateway does the same).
    #[serde(default)]
    pub output_expected: bool,
    #[serde(
        default = "default_30s",
        deserialize_with = "duration::deserialize",
        serialize_with = "duration::serialize"
    )]
    pub output_silent_after: Duration,
    /// Fail over once this many camera segments wait for the orchestrator
    /// to accept them (it is too slow for the stream).
    #[serde(default = "default_segments_behind")]
    pub max_segments_behind: u64,
    /// More than `max_swaps` failovers within `swap_window`: back off
    /// (`swap_backoff`, doubling up to 5 minutes, with jitter) and start
    /// over from discovery with every refusal forgotten.
    #[serde(default = "default_max_swaps")]
    pub max_swaps: u32,
    #[serde(
        default = "default_swap_window",
        deserialize_with = "duration::deserialize",
        serialize_with = "duration::serialize"
    )]
    pub swap_window: Duration,
    #[serde(
        default = "default_swap_backoff",
        deserialize_with = "duration::deserialize",
        serialize_with = "duration::serialize"
    )]
    pub swap_backoff: Duration,
}

fn default_orchestrator_tls() -> String {
    "tofu".into()
}
fn default_segments_behind() -> u64 {
    3
}
fn default_max_swaps() -> u32 {
    2
}
fn default_swap_window() -> Duration {
    Duration::from_secs(180)
}
fn default_swap_backoff() -> Duration {
    Duration::from_secs(10)
}

/// `[tls]`: the serde face of [`TlsOptions`]; verification is on by default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM CA bundle to trust instead of the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// SHA-256 (hex) of the one server certificate to accept.
    #[serde(default)]
    pub pin_sha256: Option<String>,
    /// Accept any certificate (lab use; logs a warning at every connect).
    #[serde(default)]
    pub insecure: bool,
}

impl From<&TlsConfig> for TlsOptions {
    fn from(c: &TlsConfig) -> Self {
        TlsOptions {
            ca_file: c.ca_file.clone(),
            pin_sha256: c.pin_sha256.clone(),
            insecure: c.insecure,
        }
    }
}

/// `[auth]`: a bearer token, at most one of three ways. File and environment
/// keep the secret out of a config file that gets copied around.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub token: Option<Secret>,
    /// Read once at load; surrounding whitespace is trimmed.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Name of the environment variable holding the token.
    #[serde(default)]
    pub token_env: Option<String>,
}

/// `[supervisor]`: health endpoints and the timers that decide liveness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorConfig {
    /// `/healthz` and `/metrics`; loopback so nothing is exposed by default.
    #[serde(default = "default_supervisor_listen")]
    pub listen: SocketAddr,
    /// Allows `listen` on a non-loopback address (the status page shows the
    /// camera): then `[auth]` must hold a token, and peers other than
    /// loopback must send it as `Authorization: Bearer <token>`.
    #[serde(default)]
    pub allow_remote: bool,
    /// Loopback peers need no token (the board's own user, `ssh -L`). False:
    /// every request must carry the token.
    #[serde(default = "default_true")]
    pub trust_loopback: bool,
    /// systemd watchdog ping interval (keep it under half of `WatchdogSec`).
    #[serde(
        default = "default_10s",
        deserialize_with = "duration::deserialize",
        serialize_with = "duration::serialize"
    )]
    pub watchdog_interval: Duration,
    /// No events for this long means the AI pipeline is dead: restart the job.
    #[serde(
        default = "default_30s",
        deserialize_with = "duration::deserialize",
        serialize_with = "duration::serialize"
    )]
    pub pipeline_dead_after: Duration,
    /// Control-channel keepalive, so the remote side keeps the job alive.
    #[serde(
        default = "default_10s",
        deserialize_with = "duration::deserialize",
        serialize_with = "duration::serialize"
    )]
    pub keepalive_interval: Duration,
}

fn default_supervisor_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}
fn default_true() -> bool {
    true
}
fn default_10s() -> Duration {
    Duration::from_secs(10)
}
fn default_30s() -> Duration {
    Duration::from_secs(30)
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            listen: default_supervisor_listen(),
            allow_remote: false,
            trust_loopback: true,
            watchdog_interval: default_10s(),
            pipeline_dead_after: default_30s(),
            keepalive_interval: default_10s(),
        }
    }
}

/// `[queue]`: the bounded queue between segmenter and publisher (the media
/// path turns it into the segmenter's `GopQueueLimits`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Whole GOPs held while the uplink stalls; older ones are dropped.
    #[serde(default = "default_gops")]
    pub gops: usize,
}

fn default_gops() -> usize {
    2
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            gops: default_gops(),
        }
    }
}
