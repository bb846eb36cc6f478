//! Outputs: where rule effects become actions on the board (GPIO lines, a
//! log file, a command, a webhook, an MQTT message).
//!
//! Each configured output runs in its own task behind a bounded queue, so
//! `dispatch` never waits and one slow or stuck output never stalls another
//! or the data path. GPIO lines have a failsafe state, applied at start-up,
//! on `failsafe()` and when `Outputs` is dropped.
//!
//! ```toml
//! [outputs.door]
//! type = "gpio"                  # backend = "simulated" for no hardware
//! chip = "pinctrl-rp1"           # label, gpiochipN or /dev/gpiochipN
//! line = "GPIO17"                # or an offset: 17
//! failsafe = "inactive"
//!
//! [outputs.events]
//! type = "log"
//! path = "/var/lib/trickle-edge/events.jsonl"
//! max_bytes = 10485760
//! max_files = 5
//! fsync_interval = "1s"
//!
//! [outputs.notify]
//! type = "exec"
//! argv = ["/usr/local/bin/notify", "--door"]
//! timeout = "10s"
//!
//! [outputs.hook]
//! type = "webhook"
//! url = "http://10.0.0.5:8080/events"
//! retry_min = "200ms"
//! retry_max = "10s"
//! max_attempts = 5
//!
//! [outputs.bus]
//! type = "mqtt"
//! broker = "mqtt://10.0.0.5:1883"
//! topic = "trickle-edge/{output}/{rule}"
//! qos = 1
//! ```

mod check;
mod config;
mod counters;
mod error;
mod exec;
mod gpio;
mod json;
mod log;
mod mqtt;
mod queue;
mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::Instrument;

pub use crate::duration::parse_duration;
pub use check::{CheckDepth, check_output, check_outputs};
pub use config::{
    Bias, DEFAULT_QUEUE, Drive, ExecConfig, Failsafe, GpioBackend, GpioConfig, LineSpec, LogConfig,
    MqttConfig, OutputConfig, Secret, WebhookConfig,
};
pub use counters::OutputCounters;
pub use error::{ActionError, GpioDeviceError};
pub use gpio::{ChipListing, ChipProbe, GpioTransition, SimulatedGpio, probe_chips};
pub use json::{item_json, rfc3339};
pub use mqtt::render_topic;

use crate::rules::Effect;
use counters::Counters;
use queue::{DropPolicy, Pushed, Queue};

/// What `dispatch` did with an effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatched {
    Queued,
    /// Queued after evicting the output's oldest queued effect (webhook).
    QueuedDroppedOldest,
    /// The output's queue was full (or closed); counted as `dropped`.
    Dropped,
    /// No output has that name; counted in `Outputs::unrouted`.
    UnknownOutput,
}

/// One running output.
struct Running {
    kind: &'static str,
    queue: Arc<Queue>,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

/// All configured outputs, running. Dropping it stops their tasks and puts
/// every GPIO line in its failsafe state.
pub struct Outputs {
    outputs: BTreeMap<Arc<str>, Running>,
    gpio: Vec<Arc<gpio::GpioLine>>,
    simulated: SimulatedGpio,
    unrouted: AtomicU64,
}

impl Outputs {
    /// Validates every output, opens devices and files, applies GPIO failsafe
    /// states and starts one task per output. Must be called inside a tokio
    /// runtime. Nothing is started if any output fails.
    pub fn build(configs: &BTreeMap<String, OutputConfig>) -> Result<Outputs, ActionError> {
        Self::build_with(configs, SimulatedGpio::default())
    }

    /// Like `build`, with simulated GPIO lines recording into `simulated`
    /// (so a demo or test can hold the log before the outputs exist).
    pub fn build_with(
        configs: &BTreeMap<String, OutputConfig>,
        simulated: SimulatedGpio,
    ) -> Result<Outputs, ActionError> {
        // Validate and open everything before spawning anything.
        enum Ready {
            Gpio(Arc<gpio::GpioLine>),
            Log(LogConfig, log::LogFile),
            Exec(ExecConfig),
            Webhook(WebhookConfig, webhook::Target),
            Mqtt(MqttConfig, mqtt::Plan),
        }
        let mut ready = Vec::with_capacity(configs.len());
        for (name, cfg) in configs {
            // The same checks `check` runs; devices and files are opened below.
            check_output(name, cfg, CheckDepth::Config)?;
            let name: Arc<str> = name.as_str().into();
            let (capacity, policy) = match cfg {
                OutputConfig::Gpio(c) => (c.queue, DropPolicy::Newest),
                OutputConfig::Log(c) => (c.queue, DropPolicy::Newest),
                OutputConfig::Exec(c) => (c.queue, DropPolicy::Newest),
                OutputConfig::Webhook(c) => (c.queue, DropPolicy::Oldest),
                OutputConfig::Mqtt(c) => (c.queue, DropPolicy::Newest),
            };
            let queue = Arc::new(Queue::new(capacity, policy));
            let counters = Arc::new(Counters::default());
            let r = match cfg {
                OutputConfig::Gpio(c) => Ready::Gpio(gpio::GpioLine::build(
                    &name,
                    c,
                    &simulated,
                    counters.clone(),
                    queue.clone(),
                )?),
                OutputConfig::Log(c) => Ready::Log(c.clone(), log::LogFile::open(&name, c)?),
                OutputConfig::Exec(c) => {
                    exec::validate(&name, c)?;
                    Ready::Exec(c.clone())
                }
                OutputConfig::Webhook(c) => Ready::Webhook(c.clone(), webhook::validate(&name, c)?),
                OutputConfig::Mqtt(c) => Ready::Mqtt(c.clone(), mqtt::validate(&name, c)?),
            };
            ready.push((name, queue, counters, r));
        }

        let mut outputs = BTreeMap::new();
        let mut lines = Vec::new();
        for (name, queue, counters, r) in ready {
            let (q, c, n) = (queue.clone(), counters.clone(), name.clone());
            let (kind, fut): (
                &'static str,
                std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
            ) = match r {
                Ready::Gpio(line) => {
                    lines.push(line.clone());
                    ("gpio", Box::pin(gpio::run(line)))
                }
                Ready::Log(cfg, file) => ("log", Box::pin(log::run(n, cfg, file, q, c))),
                Ready::Exec(cfg) => ("exec", Box::pin(exec::run(n, cfg, q, c))),
                Ready::Webhook(cfg, target) => {
                    ("webhook", Box::pin(webhook::run(n, cfg, target, q, c)))
                }
                Ready::Mqtt(cfg, plan) => ("mqtt", Box::pin(mqtt::run(n, cfg, plan, q, c))),
            };
            let span = tracing::info_span!("output", name = %name, kind);
            let task = tokio::spawn(fut.instrument(span));
            outputs.insert(
                name,
                Running {
                    kind,
                    queue,
                    counters,
                    task,
                },
            );
        }
        Ok(Outputs {
            outputs,
            gpio: lines,
            simulated,
            unrouted: AtomicU64::new(0),
        })
    }

    /// Hands an effect to the output it names. Never waits: a full queue
    /// drops (oldest for webhooks, the new effect otherwise) and counts.
    pub fn dispatch(&self, effect: Effect) -> Dispatched {
        let Some(out) = self.outputs.get(&effect.output) else {
            self.unrouted.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(output = %effect.output, rule = %effect.rule, "effect for an unknown output");
            return Dispatched::UnknownOutput;
        };
        match out.queue.push(effect) {
            Pushed::Queued => Dispatched::Queued,
            Pushed::QueuedDroppedOldest => {
                out.counters.dropped(1);
                Dispatched::QueuedDroppedOldest
            }
            Pushed::Dropped => {
                out.counters.dropped(1);
                Dispatched::Dropped
            }
        }
    }

    /// Puts every GPIO line in its failsafe state, discarding their queued
    /// effects and running pulses. All lines are written concurrently; each
    /// write is bounded by its line's `write_timeout`, so a stuck line delays
    /// this by at most that much.
    pub async fn failsafe(&self) {
        let mut writes = tokio::task::JoinSet::new();
        for line in &self.gpio {
            let line = line.clone();
            writes.spawn(async move { line.failsafe().await });
        }
        while writes.join_next().await.is_some() {}
    }

    /// Stops accepting effects, lets each output finish its queue (the log
    /// output also syncs its file) for up to `deadline`, aborts what is left,
    /// then applies GPIO failsafe states.
    pub async fn shutdown(mut self, deadline: Duration) {
        for out in self.outputs.values() {
            out.queue.close();
        }
        let until = tokio::time::Instant::now() + deadline;
        for (name, out) in self.outputs.iter_mut() {
            if tokio::time::timeout_at(until, &mut out.task).await.is_err() {
                tracing::warn!(output = %name, kind = out.kind, "output did not finish before the shutdown deadline");
                out.task.abort();
            }
        }
        self.failsafe().await;
        // Drop then closes the lines (failsafe again, synchronously) and
        // aborts anything still running.
    }

    /// Counters of every output, by name.
    pub fn counters(&self) -> BTreeMap<String, OutputCounters> {
        self.outputs
            .iter()
            .map(|(n, o)| (n.to_string(), o.counters.snapshot()))
            .collect()
    }

    /// Counters of one output.
    pub fn counters_of(&self, output: &str) -> Option<OutputCounters> {
        self.outputs.get(output).map(|o| o.counters.snapshot())
    }

    /// Effects addressed to no configured output.
    pub fn unrouted(&self) -> u64 {
        self.unrouted.load(Ordering::Relaxed)
    }

    /// The transition log of simulated GPIO lines.
    pub fn simulated_gpio(&self) -> &SimulatedGpio {
        &self.simulated
    }

    /// Output names with their `type`.
    pub fn kinds(&self) -> impl Iterator<Item = (&str, &'static str)> {
        self.outputs.iter().map(|(n, o)| (&**n, o.kind))
    }
}

impl Drop for Outputs {
    fn drop(&mut self) {
        for out in self.outputs.values() {
            out.queue.close();
            out.task.abort();
        }
        for line in &self.gpio {
            line.close();
        }
    }
}
