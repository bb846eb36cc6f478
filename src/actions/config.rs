//! Config schema of `[outputs.NAME]` tables. Pure data: validation that needs
//! more than serde (URLs, argv, ranges) happens in each output's `build`, so
//! its errors can name the output and the field.
//!
//! The webhook and MQTT outputs verify their servers' certificates on their
//! own terms (`ca_file`, `pin_sha256`, `insecure`): they do not inherit
//! `[tls]`, which is about the orchestrator, not a LAN broker or a webhook.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration;

/// One `[outputs.NAME]` table, selected by its `type` field.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum OutputConfig {
    Gpio(GpioConfig),
    Log(LogConfig),
    Exec(ExecConfig),
    Webhook(WebhookConfig),
    Mqtt(MqttConfig),
}

/// Queue length in front of an output, unless the table sets `queue`.
pub const DEFAULT_QUEUE: usize = 64;

fn default_queue() -> usize {
    DEFAULT_QUEUE
}

/// `type = "gpio"`: one output line.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GpioConfig {
    #[serde(default)]
    pub backend: GpioBackend,
    /// `/dev/gpiochipN`, `gpiochipN`, or a chip label such as `pinctrl-rp1`.
    /// Optional when `line` is a name: then every chip is searched.
    #[serde(default)]
    pub chip: Option<String>,
    /// Offset (`17`) or line name (`"GPIO17"`). Required for `gpiocdev`; for
    /// `simulated` it only names the line in the transition log.
    #[serde(default)]
    pub line: Option<LineSpec>,
    #[serde(default)]
    pub active_low: bool,
    #[serde(default)]
    pub drive: Drive,
    #[serde(default)]
    pub bias: Option<Bias>,
    #[serde(default)]
    pub failsafe: Failsafe,
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Longest a kernel call may take before the line is counted as stuck.
    #[serde(
        default = "default_gpio_timeout",
        deserialize_with = "duration::deserialize",
        serialize_with = "duration::serialize"
    )]
    pub write_timeout: Duration,
}

fn default_gpio_timeout() -> Duration {
    Duration::from_secs(1)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GpioBackend {
    /// The kernel GPIO character device (uAPI v2).
    #[default]
    Gpiocdev,
    /// No hardware: transitions go to an inspectable in-memory log.
    Simulated,
}

/// A line by offset on its chip or by its name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum LineSpec {
    Offset(u32),
    Name(String),
}

impl std::fmt::Display for LineSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineSpec::Offset(o) => write!(f, "{o}"),
            LineSpec::Name(n) => f.write_str(n),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Drive {
    #[default]
    PushPull,
    OpenDrain,
    OpenSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bias {
    PullUp,
    PullDown,
    Disabled,
}

/// The state a line is put in at start-up, on `failsafe()` and on drop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Failsafe {
    #[default]
    Inactive,
    Active,
}

/// `type = "log"`: JSON Lines file with size-based rotation.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub path: PathBuf,
    /// Rotate before a line would make the file larger than this.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Files kept, counting the live one: `path`, `path.1` … `path.(max_files-1)`.
    #[serde(default = "default_max_files")]
    pub max_files: u32,
    /// At most one fsync per interval, to spare SD cards.
    #[serde(
        default = "default_fsync",
        deserialize_with = "duration::deserialize",
        serialize_with = "duration::serialize"
    )]
    pub fsync_interval: Duration,
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Bound of the overflow file (`<path>.spill`) that takes effects when
    /// the queue is full, so a burst is written late rather than lost. Only
    /// past it does the log output drop (and warn).
    #[serde(default = "default_spill_max_bytes")]
    pub spill_max_bytes: u64,
}

/// 64 MiB: hours of a busy output's effects, and little next to the SD
/// cards these boards boot from.
fn default_spill_max_bytes() -> u64 {
    64 * 1024 * 1024
}

fn default_max_bytes() -> u64 {
    10 * 1024 * 1024
}
fn default_max_files() -> u32 {
    5
}
fn default_fsync() -> Duration {
    Duration::from_secs(1)
}

/// `type = "exec"`: run a program (never a shell) with the item on stdin.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExecConfig {
    pub argv: Vec<String>,
    #[serde(
        default = "default_exec_timeout",
        deserialize_with = "duration::deserialize",
        serialize_with = "duration::serialize"
    )]
    pub timeout: Duration,
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: usize,
    /// Bytes of stdout and of stderr kept for the log; the rest is read and dropped.
    #[serde(default = "default_output_cap")]
    pub output_cap: usize,
    #[serde(default = "default_queue")]
    pub queue: usize,
}

fn default_exec_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_concurrent() -> usize {
    2
}
fn default_output_cap() -> usize {
    64 * 1024
}

/// `type = "webhook"`: POST the item JSON to an `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// `https://` only: PEM CA bundle to trust instead of the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `https://` only: SHA-256 (hex) of the one server certificate to accept.
    #[serde(default)]
    pub pin_sha256: Option<String>,
    /// `https://` only: accept any certificate (lab use; warns at start).
    #[serde(default)]
    pub insecure: bool,
    /// Per attempt: connect, send and receive the response head.
    #[serde(
        default = "default_webhook_timeout",
        deserialize_with = "duration::deserialize",
        serialize_with = "duration::serialize"
    )]
    pub timeout: Duration,
    #[serde(
        default = "default_retry_min",
        deserialize_with = "duration::deserialize",
        serialize_with = "duration::serialize"
    )]
    pub retry_min: Duration,
    #[serde(
        default = "default_retry_max",
        deserialize_with = "duration::deserialize",
        serialize_with = "duration::serialize"
    )]
    pub retry_max: Duration,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Where the overflow file `<output>.spill` goes when the queue is full
    /// (default: `<state dir>/spill`, the state dir being
    /// `$STATE_DIRECTORY` or `/var/lib/trickle-edge`). It survives a
    /// restart: what is left in it is sent first at the next start.
    #[serde(default)]
    pub spill_dir: Option<PathBuf>,
    /// Bound of that overflow file. Only past it does the output drop (and
    /// warn).
    #[serde(default = "default_spill_max_bytes")]
    pub spill_max_bytes: u64,
}

fn default_webhook_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_retry_min() -> Duration {
    Duration::from_millis(200)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(10)
}
fn default_max_attempts() -> u32 {
    5
}

/// `type = "mqtt"`: publish the item JSON to a broker.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host[:port]` (port 1883) or, over TLS, `mqtts://host[:port]`
    /// (port 8883).
    pub broker: String,
    /// `mqtts://` only: PEM CA bundle to trust instead of the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `mqtts://` only: SHA-256 (hex) of the one broker certificate to accept.
    #[serde(default)]
    pub pin_sha256: Option<String>,
    /// `mqtts://` only: accept any certificate (lab use; warns at start).
    #[serde(default)]
    pub insecure: bool,
    /// `mqtts://` only: PEM client certificate for brokers that require one
    /// (mutual TLS); needs `client_key`.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// The PEM private key of `client_cert`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Defaults to `trickle-edge-<output>`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Placeholders: `{rule}`, `{output}`, `{type}`, `{channel}`.
    #[serde(default = "default_topic")]
    pub topic: String,
    #[serde(default)]
    pub qos: u8,
    #[serde(default)]
    pub retain: bool,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// Largest item JSON published; bigger ones are counted as failed (an
    /// oversized packet would otherwise cost the whole connection).
    #[serde(default = "default_max_payload")]
    pub max_payload: usize,
    #[serde(
        default = "default_keep_alive",
        deserialize_with = "duration::deserialize",
        serialize_with = "duration::serialize"
    )]
    pub keep_alive: Duration,
    #[serde(
        default = "default_reconnect_min",
        deserialize_with = "duration::deserialize",
        serialize_with = "duration::serialize"
    )]
    pub reconnect_min: Duration,
    #[serde(
        default = "default_reconnect_max",
        deserialize_with = "duration::deserialize",
        serialize_with = "duration::serialize"
    )]
    pub reconnect_max: Duration,
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// QoS 1 and 2: where the overflow file `<output>.spill` goes when the queue is full
    /// (default: `<state dir>/spill`, the state dir being
    /// `$STATE_DIRECTORY` or `/var/lib/trickle-edge`). It survives a
    /// restart: what is left in it is sent first at the next start.
    #[serde(default)]
    pub spill_dir: Option<PathBuf>,
    /// Bound of that overflow file. Only past it does the output drop (and
    /// warn). QoS 0 never spills: it sheds, as the user chose.
    #[serde(default = "default_spill_max_bytes")]
    pub spill_max_bytes: u64,
    /// Announce this agent to Home Assistant over this broker (MQTT
    /// discovery): a binary sensor per rule, a detections-per-minute
    /// sensor, availability with a last will.
    #[serde(default)]
    pub homeassistant: bool,
    /// Where Home Assistant listens for discovery configs.
    #[serde(default = "default_discovery_prefix")]
    pub discovery_prefix: String,
    /// This board's id in Home Assistant (device identifier, topics);
    /// defaults to the hostname. Letters, digits, `_` and `-`.
    #[serde(default)]
    pub node_id: Option<String>,
}

fn default_discovery_prefix() -> String {
    "homeassistant".into()
}

fn default_topic() -> String {
    "trickle-edge/{output}/{rule}".into()
}
fn default_max_payload() -> usize {
    256 * 1024
}
fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}
fn default_reconnect_min() -> Duration {
    Duration::from_millis(500)
}
fn default_reconnect_max() -> Duration {
    Duration::from_secs(30)
}

/// A string that never shows in `Debug` output (the agent keeps secrets out
/// of logs, and configs get printed by `check`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// Printed as `***` too, so neither `{}` nor a serialized config leaks it.
impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Serializes as `"***"`: `trickle-edge check` prints configs, and a printed
/// config must be safe to paste into a bug report.
impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}
