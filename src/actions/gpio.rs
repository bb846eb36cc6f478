//! `type = "gpio"`: one output line, driven through the kernel GPIO character
//! device (`gpiocdev`) or a simulated backend that records transitions.
//!
//! Every kernel call runs on the blocking pool behind a timeout, and at most
//! one call per line is in flight: a line whose driver hangs costs one
//! blocking thread and a counter, never a stalled runtime or other outputs.
//! `failsafe()` starts a new epoch so an effect decided before it can never
//! overwrite the failsafe state afterwards; if the failsafe write itself
//! fails (line stuck), it is retried until it lands or a newer effect has
//! put the line in a known state.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{Instant, sleep_until, timeout};

use super::config::{Bias, Drive, Failsafe, GpioBackend, GpioConfig};
use super::counters::Counters;
use super::error::{ActionError, GpioDeviceError};
use super::gpio_chips::probe_chips;
use super::queue::Queue;
use crate::rules::OutputAction;
use crate::sync::LockIgnoringPoison;

/// Consumer label the kernel shows for lines this agent holds.
const CONSUMER: &str = "trickle-edge";

/// One recorded write to a simulated line (`active` is the logical state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpioTransition {
    pub at: Instant,
    pub line: Arc<str>,
    pub active: bool,
}

/// Shared, inspectable state of all simulated lines: the transition log (for
/// tests and the demo) and a switch to make a line's writes hang, standing in
/// for a stuck kernel driver.
#[derive(Debug, Clone, Default)]
pub struct SimulatedGpio {
    inner: Arc<(Mutex<SimState>, Condvar)>,
}

#[derive(Debug, Default)]
struct SimState {
    transitions: Vec<GpioTransition>,
    stalled: HashSet<Arc<str>>,
    /// Lines requested and not yet released: like the kernel, a second
    /// request for a held line is refused (EBUSY).
    held: HashSet<Arc<str>>,
}

impl SimulatedGpio {
    /// Every write so far, in order, on all simulated lines.
    pub fn transitions(&self) -> Vec<GpioTransition> {
        self.inner.0.lock_ignoring_poison().transitions.clone()
    }

    /// How many writes happened so far, without copying the log.
    pub fn transition_count(&self) -> usize {
        self.inner.0.lock_ignoring_poison().transitions.len()
    }

    /// The `n`-th write (0-based), if it happened.
    pub fn transition(&self, n: usize) -> Option<GpioTransition> {
        self.inner
            .0
            .lock_ignoring_poison()
            .transitions
            .get(n)
            .cloned()
    }

    /// The states written to one line, in order.
    pub fn states_of(&self, line: &str) -> Vec<bool> {
        let st = self.inner.0.lock_ignoring_poison();
        st.transitions
            .iter()
            .filter(|t| &*t.line == line)
            .map(|t| t.active)
            .collect()
    }

    /// Makes writes to `line` block until `unstall` (a hung kernel call).
    pub fn stall(&self, line: &str) {
        self.inner
            .0
            .lock_ignoring_poison()
            .stalled
            .insert(line.into());
    }

    pub fn unstall(&self, line: &str) {
        self.inner.0.lock_ignoring_poison().stalled.remove(line);
        self.inner.1.notify_all();
    }

    /// Whether a simulated output currently holds `line`.
    pub fn is_held(&self, line: &str) -> bool {
        self.inner.0.lock_ignoring_poison().held.contains(line)
    }

    fn request(&self, line: &Arc<str>) -> Result<(), GpioDeviceError> {
        if self
            .inner
            .0
            .lock_ignoring_poison()
            .held
            .insert(line.clone())
        {
            Ok(())
        } else {
            Err(GpioDeviceError::SimulatedBusy {
                line: line.to_string(),
            })
        }
    }

    fn release(&self, line: &str) {
        self.inner.0.lock_ignoring_poison().held.remove(line);
    }

    fn write(&self, line: &Arc<str>, active: bool) {
        let mut st = self.inner.0.lock_ignoring_poison();
        while st.stalled.contains(line) {
            st = self.inner.1.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.transitions.push(GpioTransition {
            at: Instant::now(),
            line: line.clone(),
            active,
        });
    }
}

enum Driver {
    Simulated {
        sim: SimulatedGpio,
        line: Arc<str>,
        released: AtomicBool,
    },
    Cdev {
        /// `None` once released: the kernel may give the line to another
        /// request (a reload's rebuilt output) while this value still lives.
        request: Mutex<Option<gpiocdev::Request>>,
        offset: u32,
    },
}

impl Driver {
    /// Blocking: only ever called on the blocking pool or at drop. Only the
    /// kernel can refuse a write; a simulated line records every one. A
    /// released line is written no more.
    fn write(&self, active: bool) -> Result<(), gpiocdev::Error> {
        match self {
            Driver::Simulated {
                sim,
                line,
                released,
            } => {
                if !released.load(Ordering::Acquire) {
                    sim.write(line, active);
                }
                Ok(())
            }
            Driver::Cdev { request, offset } => {
                let v = if active {
                    gpiocdev::line::Value::Active
                } else {
                    gpiocdev::line::Value::Inactive
                };
                match &*request.lock_ignoring_poison() {
                    Some(r) => r.set_value(*offset, v),
                    None => Ok(()),
                }
            }
        }
    }

    /// Gives the line back (idempotent).
    fn release(&self) {
        match self {
            Driver::Simulated {
                sim,
                line,
                released,
            } => {
                if !released.swap(true, Ordering::AcqRel) {
                    sim.release(line);
                }
            }
            Driver::Cdev { request, .. } => drop(request.lock_ignoring_poison().take()),
        }
    }
}

/// Who asked for a write, which decides whether it is still wanted.
#[derive(Debug, Clone, Copy)]
enum WriteKind {
    /// An effect decided under this failsafe epoch: skipped once a newer
    /// `failsafe()` started, or after close.
    Effect(u64),
    /// `failsafe()` itself.
    Failsafe,
    /// A retry of a failsafe that did not land: skipped once it is no
    /// longer pending.
    FailsafeRetry,
}

/// One configured line and everything needed to drive it from any task.
pub(crate) struct GpioLine {
    output: Arc<str>,
    label: Arc<str>,
    failsafe: bool,
    driver: Driver,
    /// Held for the duration of each kernel write, so the epoch and closed
    /// checks and the write are one step.
    gate: Mutex<()>,
    /// Set at drop: from then on only failsafe writes happen.
    closed: AtomicBool,
    /// Bumped by every `failsafe()`.
    epoch: AtomicU64,
    /// A failsafe was asked for and has not landed yet.
    failsafe_pending: AtomicBool,
    in_flight: AtomicBool,
    write_timeout: Duration,
    counters: Arc<Counters>,
    queue: Arc<Queue>,
    wake: Notify,
}

impl Drop for GpioLine {
    fn drop(&mut self) {
        self.driver.release();
    }
}

/// Why one write to a line did not land (logged, counted as `failed`).
#[derive(Debug, thiserror::Error)]
enum WriteError {
    /// A previous call is still stuck in the kernel.
    #[error("a previous write is still stuck in the kernel")]
    Busy,
    #[error("write timed out")]
    TimedOut,
    /// The kernel refused the value.
    #[error("{0}")]
    Kernel(#[source] gpiocdev::Error),
    /// The blocking call panicked, or the runtime dropped it while shutting down.
    #[error("{0}")]
    Task(#[source] tokio::task::JoinError),
}

impl GpioLine {
    /// Opens the line (already at its failsafe state) and returns it.
    pub(crate) fn build(
        output: &Arc<str>,
        cfg: &GpioConfig,
        sim: &SimulatedGpio,
        counters: Arc<Counters>,
        queue: Arc<Queue>,
    ) -> Result<Arc<GpioLine>, ActionError> {
        let failsafe = cfg.failsafe == Failsafe::Active;
        let (driver, label): (Driver, Arc<str>) = match cfg.backend {
            GpioBackend::Simulated => {
                let line: Arc<str> = match &cfg.line {
                    Some(spec) => spec.to_string().into(),
                    None => output.clone(),
                };
                sim.request(&line).map_err(|e| device(output, "line", e))?;
                let d = Driver::Simulated {
                    sim: sim.clone(),
                    line: line.clone(),
                    released: AtomicBool::new(false),
                };
                (d, line)
            }
            GpioBackend::Gpiocdev => open_cdev(output, cfg, failsafe)?,
        };
        let line = Arc::new(GpioLine {
            output: output.clone(),
            label,
            failsafe,
            driver,
            gate: Mutex::new(()),
            closed: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            failsafe_pending: AtomicBool::new(false),
            in_flight: AtomicBool::new(false),
            write_timeout: cfg.write_timeout,
            counters,
            queue,
            wake: Notify::new(),
        });
        // The kernel request already set the failsafe value; the simulated
        // backend records it so the start-up state is visible in its log.
        if let Driver::Simulated { sim, line, .. } = &line.driver {
            sim.write(line, failsafe);
        }
        Ok(line)
    }

    /// Blocking write under the gate. `Ok(false)`: no longer wanted.
    fn write_blocking(&self, active: bool, kind: WriteKind) -> Result<bool, gpiocdev::Error> {
        let _gate = self.gate.lock_ignoring_poison();
        let current = self.epoch.load(Ordering::Acquire);
        let wanted = match kind {
            WriteKind::Effect(epoch) => !self.closed.load(Ordering::Acquire) && epoch == current,
            WriteKind::Failsafe => true,
            WriteKind::FailsafeRetry => self.failsafe_pending.load(Ordering::Acquire),
        };
        if !wanted {
            return Ok(false);
        }
        self.driver.write(active)?;
        // A failsafe, or an effect decided after the latest failsafe (the
        // epoch is re-read: one may have started while the call was stuck),
        // leaves the line in a known, intended state.
        let superseded =
            matches!(kind, WriteKind::Effect(e) if e != self.epoch.load(Ordering::Acquire));
        if !superseded {
            self.failsafe_pending.store(false, Ordering::Release);
        }
        Ok(true)
    }

    /// The write, off the runtime, bounded by `write_timeout`.
    async fn write(self: &Arc<Self>, active: bool, kind: WriteKind) -> Result<bool, WriteError> {
        // One call per line at a time. An effect fails fast behind a stuck
        // call; a failsafe waits out an ordinary in-flight write first.
        let deadline = Instant::now() + self.write_timeout;
        while self.in_flight.swap(true, Ordering::AcqRel) {
            if !matches!(kind, WriteKind::Failsafe) || Instant::now() >= deadline {
                return Err(WriteError::Busy);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let me = self.clone();
        let call = tokio::task::spawn_blocking(move || {
            let r = me.write_blocking(active, kind);
            me.in_flight.store(false, Ordering::Release);
            r
        });
        match timeout(self.write_timeout, call).await {
            Ok(Ok(r)) => r.map_err(WriteError::Kernel),
            Ok(Err(join)) => Err(WriteError::Task(join)),
            Err(_) => {
                self.counters.timeout();
                Err(WriteError::TimedOut)
            }
        }
    }

    /// Puts the line in its failsafe state now, discarding queued effects and
    /// any running pulse. Bounded by `write_timeout`; if the line is stuck,
    /// the write is retried in the background until it lands (or a newer
    /// effect lands first) and `failsafe()` returns without waiting for it.
    pub(crate) async fn failsafe(self: &Arc<Self>) {
        // Epoch first: an effect write finishing in between must see it.
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.failsafe_pending.store(true, Ordering::Release);
        let discarded = self.queue.clear();
        self.counters.dropped(discarded as u64);
        self.wake.notify_one();
        match self.write(self.failsafe, WriteKind::Failsafe).await {
            Ok(_) => {
                tracing::info!(output = %self.output, line = %self.label, active = self.failsafe, "GPIO failsafe applied")
            }
            Err(e) => {
                self.counters.failed();
                tracing::error!(output = %self.output, line = %self.label, error = %e, "GPIO failsafe write failed, retrying in the background");
                let me = self.clone();
                tokio::spawn(async move { me.retry_failsafe().await });
            }
        }
    }

    async fn retry_failsafe(self: Arc<Self>) {
        while self.failsafe_pending.load(Ordering::Acquire) && !self.closed.load(Ordering::Acquire)
        {
            tokio::time::sleep(self.write_timeout).await;
            if let Ok(true) = self.write(self.failsafe, WriteKind::FailsafeRetry).await {
                tracing::info!(output = %self.output, line = %self.label, "GPIO failsafe applied after retry");
                return;
            }
        }
    }

    /// At drop: refuse every later effect write, then write the failsafe state
    /// synchronously. Waits briefly for an in-flight write; a line stuck in
    /// the kernel is reported and left alone.
    /// Closes the line (failsafe state) and gives it back to the kernel at
    /// once, before this value is dropped: what a reload does to an output
    /// it replaces, so the replacement can request the same line.
    pub(crate) fn release(&self) {
        self.close();
        self.driver.release();
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for _ in 0..200 {
            let gate = match self.gate.try_lock() {
                Ok(g) => g,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
            };
            if let Err(e) = self.driver.write(self.failsafe) {
                tracing::error!(output = %self.output, line = %self.label, error = %e, "GPIO failsafe at close failed");
            }
            drop(gate);
            return;
        }
        tracing::error!(output = %self.output, line = %self.label, "GPIO stuck: failsafe at close not applied");
    }
}

/// The output's task: applies effects in order and ends pulses.
///
/// A pulse sets the line and arms one deadline; another pulse moves the
/// deadline later (never earlier), `activate`/`deactivate` cancel it. A
/// failed clear is retried so a pulse cannot leave the line stuck on.
pub(crate) async fn run(line: Arc<GpioLine>) {
    let mut epoch = line.epoch.load(Ordering::Acquire);
    let mut state = Some(line.failsafe);
    let mut pulse_until: Option<Instant> = None;
    loop {
        enum Ev {
            Effect(OutputAction),
            PulseEnd,
            Wake,
        }
        let ev = tokio::select! {
            e = line.queue.pop() => match e {
                Some(e) => Ev::Effect(e.action),
                None => return,
            },
            _ = sleep_until(pulse_until.unwrap_or_else(Instant::now)), if pulse_until.is_some() => Ev::PulseEnd,
            _ = line.wake.notified() => Ev::Wake,
        };
        let current = line.epoch.load(Ordering::Acquire);
        if current != epoch {
            // failsafe() ran: forget the pulse and what we believed the line was.
            epoch = current;
            state = None;
            pulse_until = None;
            if matches!(ev, Ev::PulseEnd) {
                continue;
            }
        }
        let (target, is_effect) = match ev {
            Ev::Effect(OutputAction::Activate) => {
                pulse_until = None;
                (true, true)
            }
            Ev::Effect(OutputAction::Deactivate) => {
                pulse_until = None;
                (false, true)
            }
            Ev::Effect(OutputAction::Pulse { ms }) => {
                let end = Instant::now() + Duration::from_millis(ms);
                pulse_until = Some(pulse_until.map_or(end, |p| p.max(end)));
                (true, true)
            }
            Ev::Effect(OutputAction::Deliver) => {
                tracing::debug!(output = %line.output, "deliver ignored by GPIO output");
                continue;
            }
            Ev::PulseEnd => {
                pulse_until = None;
                (false, false)
            }
            Ev::Wake => continue,
        };
        if state == Some(target) {
            if is_effect {
                line.counters.sent();
            }
            continue;
        }
        match line.write(target, WriteKind::Effect(epoch)).await {
            Ok(true) => {
                state = Some(target);
                if is_effect {
                    line.counters.sent();
                }
            }
            Ok(false) => line.counters.dropped(1),
            Err(e) => {
                state = None;
                line.counters.failed();
                tracing::warn!(output = %line.output, line = %line.label, active = target, error = %e, "GPIO write failed");
                if !target {
                    // Never leave a pulse stuck on: try the clear again.
                    pulse_until = Some(Instant::now() + line.write_timeout);
                }
            }
        }
    }
}

fn device(output: &str, field: &'static str, source: GpioDeviceError) -> ActionError {
    ActionError::Device {
        output: output.to_string(),
        field,
        source: Box::new(source),
    }
}

/// Finds the chip and the line offset a `gpiocdev` output names, without
/// requesting the line: what `check` can verify on the board without
/// touching a line another process may hold. Reads every chip's line names
/// ([`probe_chips`]), so a wrong name is answered with the names there are.
pub(crate) fn locate_line(output: &str, cfg: &GpioConfig) -> Result<(PathBuf, u32), ActionError> {
    let spec = cfg
        .line
        .as_ref()
        .ok_or_else(|| device(output, "line", GpioDeviceError::LineRequired))?;
    // A path may be a link (udev's) to the chip: the kernel names its node.
    let chip = match cfg.chip.as_deref() {
        Some(path) if path.starts_with('/') => {
            let node = gpiocdev::chip::is_chip(path).map_err(|source| {
                device(
                    output,
                    "chip",
                    GpioDeviceError::NotAChip {
                        chip: path.to_string(),
                        source,
                    },
                )
            })?;
            Some(node.to_string_lossy().into_owned())
        }
        other => other.map(str::to_owned),
    };
    let found = probe_chips().locate(chip.as_deref(), spec).map_err(|e| {
        let field = match e {
            GpioDeviceError::NoSuchChip { .. }
            | GpioDeviceError::ReadChip { .. }
            | GpioDeviceError::ChipRequired => "chip",
            _ => "line",
        };
        device(output, field, e)
    })?;
    Ok((found.chip, found.offset))
}

/// Resolves chip and line, then requests the line as an output already at
/// its failsafe value (so start-up never glitches through the other state).
fn open_cdev(
    output: &str,
    cfg: &GpioConfig,
    failsafe: bool,
) -> Result<(Driver, Arc<str>), ActionError> {
    let (chip_path, offset) = locate_line(output, cfg)?;
    let spec = cfg
        .line
        .as_ref()
        .ok_or_else(|| device(output, "line", GpioDeviceError::LineRequired))?;
    let value = if failsafe {
        gpiocdev::line::Value::Active
    } else {
        gpiocdev::line::Value::Inactive
    };
    let mut b = gpiocdev::Request::builder();
    b.on_chip(chip_path.clone())
        .with_consumer(CONSUMER)
        .with_line(offset)
        .as_output(value)
        .with_drive(match cfg.drive {
            Drive::PushPull => gpiocdev::line::Drive::PushPull,
            Drive::OpenDrain => gpiocdev::line::Drive::OpenDrain,
            Drive::OpenSource => gpiocdev::line::Drive::OpenSource,
        })
        .with_bias(cfg.bias.map(|b| match b {
            Bias::PullUp => gpiocdev::line::Bias::PullUp,
            Bias::PullDown => gpiocdev::line::Bias::PullDown,
            Bias::Disabled => gpiocdev::line::Bias::Disabled,
        }));
    if cfg.active_low {
        b.as_active_low();
    }
    let request = b.request().map_err(|source| {
        device(
            output,
            "line",
            GpioDeviceError::Request {
                line: spec.clone(),
                chip: chip_path.clone(),
                source,
            },
        )
    })?;
    let label = format!("{}:{spec}", chip_path.display()).into();
    Ok((
        Driver::Cdev {
            request: Mutex::new(Some(request)),
            offset,
        },
        label,
    ))
}
