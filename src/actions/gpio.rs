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
//!
//! A chip can go away under a held line (a GPIO expander unplugged, its
//! driver unbound): the kernel then answers every call with ENODEV. The line
//! is marked lost (writes count as failed, [`GpioLine::is_lost`] says so),
//! and its task requests it again, at its failsafe state, once the chip is
//! back. A held line is probed every [`PROBE_EVERY`], so a chip that goes
//! away is noticed without waiting for the next write.

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

/// How often a held kernel line is probed for its chip, and a lost one
/// requested again.
pub(crate) const PROBE_EVERY: Duration = Duration::from_millis(500);

/// ENODEV: the chip behind a request went away.
const ENODEV: i32 = 19;

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
        state: Mutex<CdevState>,
        /// What to request again when a lost chip returns.
        output: Arc<str>,
        config: GpioConfig,
    },
}

/// A kernel line's request.
enum CdevState {
    /// Requested: the request and the line's offset on its chip.
    Held(gpiocdev::Request, u32),
    /// The chip went away (ENODEV); the request was dropped.
    Lost,
    /// Given back: the kernel may give the line to another request (a
    /// reload's rebuilt output) while this value still lives.
    Released,
}

/// Why a kernel call on a line did not land.
#[derive(Debug, thiserror::Error)]
enum DriverError {
    #[error("{0}")]
    Kernel(#[source] gpiocdev::Error),
    #[error("the GPIO chip is gone (waiting for it to return)")]
    ChipGone,
}

/// Whether the kernel said the chip behind a request is gone.
fn chip_gone(e: &gpiocdev::Error) -> bool {
    match e {
        gpiocdev::Error::Os(errno) => errno.0 == ENODEV,
        gpiocdev::Error::Uapi(_, gpiocdev_uapi::Error::Os(errno)) => errno.0 == ENODEV,
        _ => false,
    }
}

impl Driver {
    /// Blocking: only ever called on the blocking pool or at drop. Only the
    /// kernel can refuse a write; a simulated line records every one. A
    /// released line is written no more.
    fn write(&self, active: bool) -> Result<(), DriverError> {
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
            Driver::Cdev { state, output, .. } => {
                let v = if active {
                    gpiocdev::line::Value::Active
                } else {
                    gpiocdev::line::Value::Inactive
                };
                let mut st = state.lock_ignoring_poison();
                match &*st {
                    CdevState::Held(r, offset) => match r.set_value(*offset, v) {
                        Ok(()) => Ok(()),
                        Err(e) if chip_gone(&e) => {
                            lose(&mut st, output, &e);
                            Err(DriverError::ChipGone)
                        }
                        Err(e) => Err(DriverError::Kernel(e)),
                    },
                    CdevState::Lost => Err(DriverError::ChipGone),
                    CdevState::Released => Ok(()),
                }
            }
        }
    }

    /// Blocking. A held kernel line: asks the kernel for its value, which
    /// fails with ENODEV once the chip is gone (the line is then lost). A
    /// lost one: requests it again (at `failsafe`); `true` when it is back.
    fn probe_or_recover(&self, failsafe: bool) -> bool {
        let Driver::Cdev {
            state,
            output,
            config,
        } = self
        else {
            return false;
        };
        let mut st = state.lock_ignoring_poison();
        match &*st {
            CdevState::Held(r, offset) => {
                if let Err(e) = r.value(*offset)
                    && chip_gone(&e)
                {
                    lose(&mut st, output, &e);
                }
                false
            }
            CdevState::Lost => match request_cdev(output, config, failsafe) {
                Ok((r, offset, label)) => {
                    *st = CdevState::Held(r, offset);
                    tracing::info!(output = %output, line = %label, active = failsafe, "GPIO chip back: line requested again at its failsafe state");
                    true
                }
                Err(_) => false,
            },
            CdevState::Released => false,
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
            Driver::Cdev { state, .. } => {
                let old =
                    std::mem::replace(&mut *state.lock_ignoring_poison(), CdevState::Released);
                drop(old);
            }
        }
    }

    fn is_lost(&self) -> bool {
        match self {
            Driver::Cdev { state, .. } => {
                matches!(*state.lock_ignoring_poison(), CdevState::Lost)
            }
            Driver::Simulated { .. } => false,
        }
    }
}

/// Marks a kernel line lost (its chip went away) and reports it once.
fn lose(st: &mut CdevState, output: &str, e: &gpiocdev::Error) {
    *st = CdevState::Lost;
    tracing::error!(output = %output, error = %e, "GPIO chip gone: output failed until the chip returns");
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
    /// The kernel refused the value, or the chip is gone.
    #[error("{0}")]
    Driver(#[source] DriverError),
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
    fn write_blocking(&self, active: bool, kind: WriteKind) -> Result<bool, DriverError> {
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
            Ok(Ok(r)) => r.map_err(WriteError::Driver),
            Ok(Err(join)) => Err(WriteError::Task(join)),
            Err(_) => {
                self.counters.timeout();
                Err(WriteError::TimedOut)
            }
        }
    }

    /// Whether the line's chip is gone (the output fails until it returns).
    pub(crate) fn is_lost(&self) -> bool {
        self.driver.is_lost()
    }

    /// Probes a held kernel line or requests a lost one again, on the
    /// blocking pool under the gate (so never beside a write). `true` when
    /// a lost line is back, at its failsafe state.
    async fn probe_or_recover(self: &Arc<Self>) -> bool {
        if !matches!(self.driver, Driver::Cdev { .. }) || self.closed.load(Ordering::Acquire) {
            return false;
        }
        if self.in_flight.swap(true, Ordering::AcqRel) {
            return false;
        }
        let me = self.clone();
        let call = tokio::task::spawn_blocking(move || {
            let _gate = me.gate.lock_ignoring_poison();
            let back =
                !me.closed.load(Ordering::Acquire) && me.driver.probe_or_recover(me.failsafe);
            me.in_flight.store(false, Ordering::Release);
            back
        });
        matches!(timeout(self.write_timeout, call).await, Ok(Ok(true)))
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
/// A pulse sets the line and arms one deadline, counted from when the set
/// landed; another pulse moves the deadline later (never earlier),
/// `activate`/`deactivate` cancel it. A
/// failed clear is retried so a pulse cannot leave the line stuck on.
pub(crate) async fn run(line: Arc<GpioLine>) {
    let mut epoch = line.epoch.load(Ordering::Acquire);
    let mut state = Some(line.failsafe);
    let mut pulse_until: Option<Instant> = None;
    let cdev = matches!(line.driver, Driver::Cdev { .. });
    let mut probe = tokio::time::interval(PROBE_EVERY);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        enum Ev {
            Effect(OutputAction),
            PulseEnd,
            Wake,
            Probe,
        }
        let ev = tokio::select! {
            e = line.queue.pop() => match e {
                Some(e) => Ev::Effect(e.action),
                None => return,
            },
            _ = sleep_until(pulse_until.unwrap_or_else(Instant::now)), if pulse_until.is_some() => Ev::PulseEnd,
            _ = line.wake.notified() => Ev::Wake,
            _ = probe.tick(), if cdev => Ev::Probe,
        };
        if let Ev::Probe = ev {
            if line.probe_or_recover().await {
                // Requested again at its failsafe state: what the line is now.
                state = Some(line.failsafe);
                pulse_until = None;
            }
            continue;
        }
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
        let mut pulse = None;
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
                pulse = Some(Duration::from_millis(ms));
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
            Ev::Wake | Ev::Probe => continue,
        };
        if state == Some(target) {
            if is_effect {
                line.counters.sent();
            }
            extend_pulse(&mut pulse_until, pulse);
            continue;
        }
        let written = line.write(target, WriteKind::Effect(epoch)).await;
        // Armed once the set has landed: a slow kernel call must not
        // shorten the pulse on the wire. Armed even if the set failed, so
        // the line is cleared in any case.
        extend_pulse(&mut pulse_until, pulse);
        match written {
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

/// Moves the pulse's end to `pulse` from now, never earlier than it was.
fn extend_pulse(pulse_until: &mut Option<Instant>, pulse: Option<Duration>) {
    if let Some(d) = pulse {
        let end = Instant::now() + d;
        *pulse_until = Some(pulse_until.map_or(end, |p| p.max(end)));
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
    output: &Arc<str>,
    cfg: &GpioConfig,
    failsafe: bool,
) -> Result<(Driver, Arc<str>), ActionError> {
    let (request, offset, label) = request_cdev(output, cfg, failsafe)?;
    Ok((
        Driver::Cdev {
            state: Mutex::new(CdevState::Held(request, offset)),
            output: output.clone(),
            config: cfg.clone(),
        },
        label,
    ))
}

/// The request of [`open_cdev`]: the request, the line's offset and a
/// label (`/dev/gpiochipN:LINE`) for logs.
fn request_cdev(
    output: &str,
    cfg: &GpioConfig,
    failsafe: bool,
) -> Result<(gpiocdev::Request, u32, Arc<str>), ActionError> {
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
        // Busy: say who holds it, which is what the reader needs to know.
        let holder = gpiocdev::Chip::from_path(&chip_path)
            .and_then(|c| c.line_info(offset))
            .ok()
            .filter(|i| i.used);
        let line = spec.clone();
        let chip = chip_path.clone();
        let e = match holder {
            Some(info) => GpioDeviceError::Held {
                line,
                chip,
                consumer: info.consumer,
            },
            None => GpioDeviceError::Request { line, chip, source },
        };
        device(output, "line", e)
    })?;
    let label = format!("{}:{spec}", chip_path.display()).into();
    Ok((request, offset, label))
}

#[cfg(test)]
mod chip_gone_tests {
    use super::*;
    use crate::actions::config::LineSpec;

    #[test]
    fn only_enodev_means_the_chip_is_gone() {
        let os = |n| gpiocdev::Error::Os(gpiocdev_uapi::Errno(n));
        let uapi = |n| {
            gpiocdev::Error::Uapi(
                gpiocdev::UapiCall::SetLineValues,
                gpiocdev_uapi::Error::Os(gpiocdev_uapi::Errno(n)),
            )
        };
        assert!(chip_gone(&os(ENODEV)));
        assert!(chip_gone(&uapi(ENODEV)));
        // EBUSY, EINVAL, EPERM: the chip is there, the call was refused.
        for n in [16, 22, 1] {
            assert!(!chip_gone(&os(n)) && !chip_gone(&uapi(n)), "errno {n}");
        }
        assert!(!chip_gone(&gpiocdev::Error::InvalidArgument("x".into())));
    }

    #[test]
    fn a_held_line_names_its_holder() {
        let e = GpioDeviceError::Held {
            line: LineSpec::Name("GPIO17".into()),
            chip: "/dev/gpiochip0".into(),
            consumer: "door-daemon".into(),
        };
        assert_eq!(
            e.to_string(),
            "line GPIO17 on /dev/gpiochip0 is held by \"door-daemon\": the kernel refuses a second request (busy)"
        );
    }
}
