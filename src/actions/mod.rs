//! Outputs: where rule effects become actions on the board (GPIO lines, a
//! log file, a command, a webhook, an MQTT message).
//!
//! Each configured output runs in its own task behind a bounded queue, so
//! `dispatch` never waits and one slow or stuck output never stalls another
//! or the data path. The log, webhook and MQTT (QoS 1, 2) outputs are
//! lossless up to their spill file's bound (`spill.rs`). GPIO lines have a
//! failsafe state, applied at start-up, on `failsafe()` and when `Outputs`
//! is dropped.
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
//! url = "https://hooks.example.org/events"   # or http://
//! ca_file = "/etc/trickle-edge/hooks-ca.pem" # default: the system roots
//! retry_min = "200ms"
//! retry_max = "10s"
//! max_attempts = 5
//! spill_max_bytes = 67108864   # a burst beyond `queue` waits on disk
//! spill_dir = "/var/lib/trickle-edge/spill"  # default: <state dir>/spill
//!
//! [outputs.bus]
//! type = "mqtt"
//! broker = "mqtts://10.0.0.5:8883"     # or mqtt://…:1883 (clear text)
//! ca_file = "/etc/trickle-edge/broker-ca.pem"
//! client_cert = "/etc/trickle-edge/edge.pem"  # when the broker requires one
//! client_key = "/etc/trickle-edge/edge.key"
//! topic = "trickle-edge/{output}/{rule}"
//! qos = 1
//! homeassistant = true                 # MQTT discovery (homeassistant.rs)
//! ```

mod check;
mod config;
mod counters;
mod error;
mod exec;
mod gpio;
mod gpio_chips;
mod homeassistant;
mod json;
mod log;
mod mqtt;
mod queue;
mod spill;
mod tls;
mod webhook;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::Instrument;

pub use crate::duration::parse_duration;
pub use check::{CheckDepth, check_output, check_outputs, output_warnings};
pub use config::{
    Bias, DEFAULT_QUEUE, Drive, ExecConfig, Failsafe, GpioBackend, GpioConfig, LineSpec, LogConfig,
    MqttConfig, OutputConfig, Secret, WebhookConfig,
};
pub use counters::OutputCounters;
pub use error::{ActionError, GpioDeviceError};
pub use gpio::{GpioTransition, SimulatedGpio};
pub use gpio_chips::{ChipLines, ChipListing, ChipProbe, LineLocation, probe_chips};
pub(crate) use homeassistant::object_id as home_assistant_id;
pub use json::{item_json, rfc3339};
pub use mqtt::render_topic;

use crate::rules::Effect;
use crate::sync::LockIgnoringPoison;
use counters::Counters;
use queue::{DropPolicy, Pushed, Queue};

/// At most one shed warning per output per this long.
const SHED_WARN_EVERY: Duration = Duration::from_secs(10);

/// Effects an output shed since it last said so, and when it did.
#[derive(Debug, Default)]
struct ShedWarning {
    since_warned: u64,
    warned_at: Option<tokio::time::Instant>,
}

/// What `dispatch` did with an effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatched {
    Queued,
    /// Written to the output's overflow file (log, webhook, MQTT at QoS 1
    /// or 2): late, not lost.
    Spilled,
    /// Replaced the GPIO level queued last: only the latest level matters.
    Coalesced,
    /// The output's queue was full (or closed); counted as `dropped`.
    Dropped,
    /// No output has that name; counted in `Outputs::unrouted`.
    UnknownOutput,
}

/// One running output. Shared (`Arc`) by the `Outputs` of consecutive
/// configs while its own config stays the same, so a reload that changes
/// something else keeps its task, queue, counters and GPIO line handle.
struct Running {
    kind: &'static str,
    config: OutputConfig,
    queue: Arc<Queue>,
    counters: Arc<Counters>,
    task: Mutex<Option<JoinHandle<()>>>,
    line: Option<Arc<gpio::GpioLine>>,
    shed: Mutex<ShedWarning>,
}

impl Running {
    /// Counts `n` shed effects and warns, at most once per
    /// [`SHED_WARN_EVERY`], with the count since the last warning.
    fn shed(&self, name: &str, n: u64, why: &str) {
        self.counters.dropped(n);
        let mut w = self.shed.lock_ignoring_poison();
        w.since_warned += n;
        let now = tokio::time::Instant::now();
        if w.warned_at
            .is_none_or(|t| now.duration_since(t) >= SHED_WARN_EVERY)
        {
            tracing::warn!(
                output = name,
                kind = self.kind,
                dropped = w.since_warned,
                total_dropped = self.counters.snapshot().dropped,
                reason = why,
                "output cannot keep up: effects dropped"
            );
            w.since_warned = 0;
            w.warned_at = Some(now);
        }
    }
}

impl Running {
    /// Stops the task, keeps what a lossless output had not sent for the
    /// next start, closes the line (failsafe) and gives it back to the
    /// kernel at once, without waiting for the aborted task to drop it.
    fn close(&self, name: &str) {
        self.queue.close();
        if let Some(t) = self.task.lock_ignoring_poison().take() {
            t.abort();
        }
        self.keep_unsent(name);
        if let Some(line) = &self.line {
            line.release();
        }
    }

    /// After the task was stopped: a webhook's or MQTT output's effects
    /// still queued in memory (the one being sent among them) go to the
    /// front of its spill, so a restart sends them first (the spill's own
    /// unsent lines are there already). Counted as spilled.
    fn keep_unsent(&self, name: &str) {
        if !matches!(self.kind, "webhook" | "mqtt") {
            return;
        }
        match self.queue.keep_unsent() {
            Ok(0) => {}
            Ok(n) => {
                for _ in 0..n {
                    self.counters.spilled();
                }
                tracing::info!(
                    output = name,
                    kind = self.kind,
                    kept = n,
                    "unsent effects kept in the spill for the next start"
                );
            }
            Err((n, why)) => self.shed(name, n as u64, &why),
        }
    }
}

/// What outputs know of the agent around them, kept across reloads: the
/// live feed Home Assistant discovery announces rules and detections from,
/// and the board model it names.
#[derive(Clone, Default)]
pub struct OutputContext {
    pub live: Arc<crate::status::LiveFeed>,
    pub model: Option<String>,
}

/// All configured outputs, running. Dropping it stops the tasks of the
/// outputs only it holds and puts their GPIO lines in failsafe.
pub struct Outputs {
    outputs: BTreeMap<Arc<str>, Arc<Running>>,
    simulated: SimulatedGpio,
    context: OutputContext,
    unrouted: AtomicU64,
}

/// What [`Outputs::reconcile`] made of a new config.
pub struct Reconciled {
    /// The outputs to run from now on: the new config's, or, when it was
    /// refused, the old config's again.
    pub outputs: Outputs,
    /// Why the new config's outputs could not be built; `outputs` then
    /// holds the old ones (restored where they had to be released).
    pub refused: Option<ActionError>,
    /// Old outputs that could not be restored after a refusal (their lines
    /// were given back and re-requesting them failed).
    pub not_restored: Vec<ActionError>,
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
        Self::build_in(configs, simulated, OutputContext::default())
    }

    /// Like `build_with`, in the agent's `context` (which reloads keep).
    pub fn build_in(
        configs: &BTreeMap<String, OutputConfig>,
        simulated: SimulatedGpio,
        context: OutputContext,
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
            let queue = Arc::new(match cfg {
                OutputConfig::Gpio(c) => Queue::new(c.queue, DropPolicy::CoalesceLevels),
                OutputConfig::Log(c) => Queue::lossless(c.queue, log::overflow(&name, c)?),
                OutputConfig::Exec(c) => Queue::new(c.queue, DropPolicy::Newest),
                // `+ 1`: a webhook or MQTT output leaves the effect it is
                // sending queued until it is sent (so a stop keeps it);
                // `queue` still counts the ones waiting behind it.
                OutputConfig::Webhook(c) => {
                    Queue::lossless(c.queue.saturating_add(1), webhook::overflow(&name, c)?)
                }
                // QoS 0 is fire-and-forget by the user's own choice: the
                // broker may drop it anyway, so a disk backlog buys nothing.
                OutputConfig::Mqtt(c) if c.qos == 0 => Queue::new(c.queue, DropPolicy::Newest),
                OutputConfig::Mqtt(c) => {
                    Queue::lossless(c.queue.saturating_add(1), mqtt::overflow(&name, c)?)
                }
            });
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
                OutputConfig::Webhook(c) => Ready::Webhook(c.clone(), webhook::prepare(&name, c)?),
                OutputConfig::Mqtt(c) => Ready::Mqtt(c.clone(), mqtt::prepare(&name, c)?),
            };
            ready.push((name, queue, counters, r));
        }

        let mut outputs = BTreeMap::new();
        for (name, queue, counters, r) in ready {
            let config = configs[&*name].clone();
            let mut line = None;
            let (q, c, n) = (queue.clone(), counters.clone(), name.clone());
            let (kind, fut): (
                &'static str,
                std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
            ) = match r {
                Ready::Gpio(l) => {
                    line = Some(l.clone());
                    ("gpio", Box::pin(gpio::run(l)))
                }
                Ready::Log(cfg, file) => ("log", Box::pin(log::run(n, cfg, file, q, c))),
                Ready::Exec(cfg) => ("exec", Box::pin(exec::run(n, cfg, q, c))),
                Ready::Webhook(cfg, target) => {
                    ("webhook", Box::pin(webhook::run(n, cfg, target, q, c)))
                }
                Ready::Mqtt(cfg, plan) => (
                    "mqtt",
                    Box::pin(mqtt::run(n, cfg, plan, q, c, context.clone())),
                ),
            };
            let span = tracing::info_span!("output", name = %name, kind);
            let task = tokio::spawn(fut.instrument(span));
            outputs.insert(
                name,
                Arc::new(Running {
                    kind,
                    config,
                    queue,
                    counters,
                    task: Mutex::new(Some(task)),
                    line,
                    shed: Mutex::default(),
                }),
            );
        }
        Ok(Outputs {
            outputs,
            simulated,
            context,
            unrouted: AtomicU64::new(0),
        })
    }

    /// The outputs of a reloaded config, built from these: an output whose
    /// config did not change is kept as it runs (same task, queue, counters
    /// and line handle: a held line never passes through failsafe); a
    /// changed or removed one is stopped and its line released *before*
    /// the new ones are requested, so a changed output can take the same
    /// line (the kernel refuses a second request for a held line).
    ///
    /// If the new outputs cannot be built, the released old ones are built
    /// again and [`Reconciled::refused`] says why: the agent keeps running
    /// the old config. Effects dispatched to a released output meanwhile
    /// are dropped and counted.
    pub fn reconcile(&self, configs: &BTreeMap<String, OutputConfig>) -> Reconciled {
        let same = |name: &str, cfg: &OutputConfig| {
            self.outputs.get(name).is_some_and(|r| r.config == *cfg)
        };
        let to_build: BTreeMap<String, OutputConfig> = configs
            .iter()
            .filter(|(n, c)| !same(n, c))
            .map(|(n, c)| (n.clone(), c.clone()))
            .collect();
        let to_release: Vec<(&Arc<str>, &Arc<Running>)> = self
            .outputs
            .iter()
            .filter(|(n, r)| configs.get(&***n) != Some(&r.config))
            .collect();
        let kept = |outputs: &mut BTreeMap<Arc<str>, Arc<Running>>| {
            for (name, r) in &self.outputs {
                if configs.get(&**name) == Some(&r.config) {
                    outputs.insert(name.clone(), r.clone());
                }
            }
        };
        // Refuse what the text alone shows before anything is released.
        if let Err(e) = to_build
            .iter()
            .try_for_each(|(n, c)| check_output(n, c, CheckDepth::Config))
        {
            return self.unchanged(Some(e));
        }
        for (name, r) in &to_release {
            r.close(name);
        }
        match Outputs::build_in(&to_build, self.simulated.clone(), self.context.clone()) {
            Ok(built) => {
                let mut outputs = built.take_all();
                kept(&mut outputs);
                Reconciled {
                    outputs: self.with(outputs),
                    refused: None,
                    not_restored: Vec::new(),
                }
            }
            Err(refused) => {
                // Put back what was released, one by one, so one output
                // that cannot come back does not keep the others away.
                let mut outputs = BTreeMap::new();
                let mut not_restored = Vec::new();
                for (name, r) in &to_release {
                    let one = BTreeMap::from([(name.to_string(), r.config.clone())]);
                    match Outputs::build_in(&one, self.simulated.clone(), self.context.clone()) {
                        Ok(b) => outputs.extend(b.take_all()),
                        Err(e) => not_restored.push(e),
                    }
                }
                kept(&mut outputs);
                Reconciled {
                    outputs: self.with(outputs),
                    refused: Some(refused),
                    not_restored,
                }
            }
        }
    }

    /// A reconcile that changed nothing: every output shared as it runs.
    fn unchanged(&self, refused: Option<ActionError>) -> Reconciled {
        Reconciled {
            outputs: self.with(self.outputs.clone()),
            refused,
            not_restored: Vec::new(),
        }
    }

    fn with(&self, outputs: BTreeMap<Arc<str>, Arc<Running>>) -> Outputs {
        Outputs {
            outputs,
            simulated: self.simulated.clone(),
            context: self.context.clone(),
            unrouted: AtomicU64::new(0),
        }
    }

    /// Moves every output out (they keep running), leaving nothing to close.
    fn take_all(mut self) -> BTreeMap<Arc<str>, Arc<Running>> {
        std::mem::take(&mut self.outputs)
    }

    fn lines(&self) -> impl Iterator<Item = &Arc<gpio::GpioLine>> {
        self.outputs.values().filter_map(|r| r.line.as_ref())
    }

    /// Outputs no other `Outputs` shares: the ones this value stops.
    fn owned(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<Running>)> {
        self.outputs
            .iter()
            .filter(|(_, r)| Arc::strong_count(r) == 1)
    }

    /// Hands an effect to the output it names. Never waits: a full queue
    /// spills (log, webhook, MQTT at QoS 1 or 2), coalesces (GPIO levels)
    /// or drops the new effect (exec, MQTT at QoS 0), and counts; drops are
    /// warned about.
    pub fn dispatch(&self, effect: Effect) -> Dispatched {
        let Some((name, out)) = self.outputs.get_key_value(&effect.output) else {
            self.unrouted.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(output = %effect.output, rule = %effect.rule, "effect for an unknown output");
            return Dispatched::UnknownOutput;
        };
        out.counters.fired();
        match out.queue.push(effect) {
            Pushed::Queued => Dispatched::Queued,
            Pushed::Spilled => {
                out.counters.spilled();
                Dispatched::Spilled
            }
            Pushed::Coalesced => {
                out.counters.coalesced();
                Dispatched::Coalesced
            }
            Pushed::Dropped => {
                out.shed(name, 1, "queue full or closed: the new effect was dropped");
                Dispatched::Dropped
            }
            Pushed::SpillRefused(why) => {
                out.shed(name, 1, &why);
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
        for line in self.lines() {
            let line = line.clone();
            writes.spawn(async move { line.failsafe().await });
        }
        while writes.join_next().await.is_some() {}
    }

    /// Stops accepting effects, lets each output finish its queue (the log
    /// output also syncs its file) for up to `deadline`, aborts what is left,
    /// then applies GPIO failsafe states.
    /// Outputs a newer `Outputs` shares (kept by a reload) are left running.
    pub async fn shutdown(self, deadline: Duration) {
        for (_, out) in self.owned() {
            out.queue.close();
        }
        let until = tokio::time::Instant::now() + deadline;
        for (name, out) in self.owned() {
            let task = out.task.lock_ignoring_poison().take();
            if let Some(mut task) = task
                && tokio::time::timeout_at(until, &mut task).await.is_err()
            {
                tracing::warn!(output = %name, kind = out.kind, "output did not finish before the shutdown deadline");
                task.abort();
                out.keep_unsent(name);
            }
        }
        let mut writes = tokio::task::JoinSet::new();
        for line in self.owned().filter_map(|(_, r)| r.line.clone()) {
            writes.spawn(async move { line.failsafe().await });
        }
        while writes.join_next().await.is_some() {}
        // Drop then closes the lines (failsafe again, synchronously) and
        // aborts anything still running.
    }

    /// For the agent's stop, where these outputs stay shared with the
    /// stats readers: closes every queue and gives each task up to
    /// `deadline` to finish what it holds (the log's last lines, an MQTT
    /// output's `offline` for Home Assistant), then aborts what is left.
    pub async fn finish(&self, deadline: Duration) {
        for out in self.outputs.values() {
            out.queue.close();
        }
        let until = tokio::time::Instant::now() + deadline;
        for (name, out) in &self.outputs {
            let task = out.task.lock_ignoring_poison().take();
            if let Some(mut task) = task
                && tokio::time::timeout_at(until, &mut task).await.is_err()
            {
                tracing::warn!(output = %name, kind = out.kind, "output did not finish before the stop deadline");
                task.abort();
                out.keep_unsent(name);
            }
        }
    }

    /// The live feed the outputs were built with (the rules task writes it).
    pub fn live(&self) -> Arc<crate::status::LiveFeed> {
        self.context.live.clone()
    }

    /// [`Outputs::shutdown`], then every output's counters as it left them.
    pub async fn counters_after_shutdown(
        self,
        deadline: Duration,
    ) -> BTreeMap<String, OutputCounters> {
        let running: Vec<(Arc<str>, Arc<Running>)> = self
            .outputs
            .iter()
            .map(|(n, r)| (n.clone(), r.clone()))
            .collect();
        // The clones above would keep `shutdown` from seeing these as owned.
        let counters: Vec<(Arc<str>, Arc<Counters>)> = running
            .into_iter()
            .map(|(n, r)| (n, r.counters.clone()))
            .collect();
        self.shutdown(deadline).await;
        counters
            .into_iter()
            .map(|(n, c)| (n.to_string(), c.snapshot()))
            .collect()
    }

    /// Counters of every output, by name.
    pub fn counters(&self) -> BTreeMap<String, OutputCounters> {
        self.outputs
            .iter()
            .map(|(n, o)| (n.to_string(), o.counters.snapshot()))
            .collect()
    }

    /// Counters of one output.
    /// The GPIO outputs whose chip is gone: they fail every effect until
    /// the chip returns and the line is requested again.
    pub fn lost_gpio_outputs(&self) -> Vec<String> {
        self.outputs
            .iter()
            .filter(|(_, r)| r.line.as_ref().is_some_and(|l| l.is_lost()))
            .map(|(name, _)| name.to_string())
            .collect()
    }

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
        for (name, out) in self.owned() {
            out.close(name);
        }
    }
}
