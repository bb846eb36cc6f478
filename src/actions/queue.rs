//! The bounded queue in front of every output: `push` never waits, so a slow
//! output can never stall the rules engine or the data decoder behind it.
//!
//! What happens when it is full depends on the output (see
//! `docs/architecture.md`, "When an output cannot keep up"): the log, a
//! webhook and MQTT at QoS 1 or 2 spill to their own file (lossless up to
//! that file's bound), GPIO levels coalesce (only the latest level
//! matters), exec and MQTT at QoS 0 shed the new effect. Every shed effect
//! is counted.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

use super::error::ActionError;
use super::spill::{SpillFile, SpillRefused};
use crate::rules::{Effect, OutputAction};
use crate::sync::LockIgnoringPoison;

/// Which effect to give up when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropPolicy {
    /// Keep what is queued, refuse the new effect (exec, MQTT at QoS 0, and
    /// the in-memory part of a lossless queue: order and the earliest
    /// evidence matter more than recency).
    Newest,
    /// A new level (activate/deactivate) replaces the level queued last:
    /// only the latest level matters (GPIO). A pulse that finds no room is
    /// refused, as with `Newest`.
    CoalesceLevels,
}

/// Renders an effect as one spill line: what the output will send, ending
/// in its only newline.
pub(crate) type Render = Box<dyn Fn(&Effect) -> Vec<u8> + Send + Sync>;

/// The overflow of a lossless queue: effects rendered as the lines the
/// output writes (a log line, a webhook body, an MQTT topic and payload),
/// kept in a file.
pub(crate) struct Overflow {
    pub(crate) file: SpillFile,
    pub(crate) render: Render,
}

/// Single-consumer bounded FIFO of effects.
#[derive(Debug)]
pub(crate) struct Queue {
    items: Mutex<VecDeque<Effect>>,
    capacity: usize,
    policy: DropPolicy,
    ready: Notify,
    closed: AtomicBool,
    /// Where effects go when the queue is full, for a lossless output.
    /// Locked before `items` when both are.
    overflow: Option<Mutex<Overflow>>,
}

impl Overflow {
    /// Opens the overflow file at `path` (one left by an earlier run is
    /// taken up: its lines go first); an error names the output and the
    /// config field that put the file there.
    pub(crate) fn open(
        output: &str,
        field: &'static str,
        path: PathBuf,
        max_bytes: u64,
        render: Render,
    ) -> Result<Overflow, ActionError> {
        let file = SpillFile::open(path.clone(), max_bytes).map_err(|source| ActionError::Io {
            output: output.to_string(),
            field,
            path,
            source,
        })?;
        Ok(Overflow { file, render })
    }
}

impl std::fmt::Debug for Overflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overflow")
            .field("file", &self.file)
            .finish()
    }
}

/// What became of a pushed effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// Replaced the level queued last (policy `CoalesceLevels`).
    Coalesced,
    /// Written to the overflow file (the queue was full, or the overflow
    /// still holds older effects that must go first).
    Spilled,
    /// Refused: queue full (policy `Newest`) or closed.
    Dropped,
    /// The overflow refused it too: full, or it could not be written.
    SpillRefused(String),
}

fn is_level(e: &Effect) -> bool {
    matches!(e.action, OutputAction::Activate | OutputAction::Deactivate)
}

impl Queue {
    pub(crate) fn new(capacity: usize, policy: DropPolicy) -> Self {
        Self {
            items: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity: capacity.max(1),
            policy,
            ready: Notify::new(),
            closed: AtomicBool::new(false),
            overflow: None,
        }
    }

    /// A queue that never drops while `overflow` has room: what does not fit
    /// goes there, and everything after it too until the consumer has taken
    /// the overflow back, so order is kept.
    pub(crate) fn lossless(capacity: usize, overflow: Overflow) -> Self {
        let mut q = Self::new(capacity, DropPolicy::Newest);
        q.overflow = Some(Mutex::new(overflow));
        q
    }

    /// Adds an effect without waiting; the caller counts drops.
    pub(crate) fn push(&self, effect: Effect) -> Pushed {
        if self.closed.load(Ordering::Acquire) {
            return Pushed::Dropped;
        }
        let outcome = match &self.overflow {
            Some(overflow) => {
                let mut overflow = overflow.lock_ignoring_poison();
                let effect = if overflow.file.pending() == 0 {
                    self.try_queue(effect).err()
                } else {
                    Some(effect)
                };
                match effect {
                    None => Pushed::Queued,
                    Some(effect) => {
                        let line = (overflow.render)(&effect);
                        match overflow.file.append(&line) {
                            Ok(()) => Pushed::Spilled,
                            Err(SpillRefused::Full { max_bytes }) => Pushed::SpillRefused(format!(
                                "overflow file {} is full ({max_bytes} bytes)",
                                overflow.file.path().display()
                            )),
                            Err(SpillRefused::Io(e)) => Pushed::SpillRefused(format!(
                                "cannot write the overflow file {}: {e}",
                                overflow.file.path().display()
                            )),
                        }
                    }
                }
            }
            None => self.push_in_memory(effect),
        };
        if matches!(
            outcome,
            Pushed::Queued | Pushed::Coalesced | Pushed::Spilled
        ) {
            // notify_one stores a permit when the consumer is not waiting yet.
            self.ready.notify_one();
        }
        outcome
    }

    /// Queues `effect` if there is room; hands it back otherwise.
    fn try_queue(&self, effect: Effect) -> Result<(), Effect> {
        let mut items = self.items.lock_ignoring_poison();
        if items.len() < self.capacity {
            items.push_back(effect);
            Ok(())
        } else {
            Err(effect)
        }
    }

    fn push_in_memory(&self, effect: Effect) -> Pushed {
        let mut items = self.items.lock_ignoring_poison();
        if items.len() < self.capacity {
            items.push_back(effect);
            return Pushed::Queued;
        }
        match self.policy {
            DropPolicy::CoalesceLevels
                if is_level(&effect) && items.back().is_some_and(is_level) =>
            {
                *items.back_mut().expect("checked above") = effect;
                Pushed::Coalesced
            }
            DropPolicy::CoalesceLevels | DropPolicy::Newest => Pushed::Dropped,
        }
    }

    /// Waits until there is something to take (queued or in the overflow);
    /// false once closed and drained.
    pub(crate) async fn ready(&self) -> bool {
        loop {
            if !self.items.lock_ignoring_poison().is_empty() || self.spilled() > 0 {
                return true;
            }
            if self.closed.load(Ordering::Acquire) {
                return false;
            }
            self.ready.notified().await;
        }
    }

    /// Effects waiting in the overflow file.
    pub(crate) fn spilled(&self) -> u64 {
        self.overflow
            .as_ref()
            .map_or(0, |o| o.lock_ignoring_poison().file.pending())
    }

    /// Up to `max` lines from the overflow, oldest first, left there until
    /// [`consume_spilled`](Self::consume_spilled): for the consumer, only
    /// once the in-memory queue is empty (those effects are older). While
    /// they are there, new effects keep going behind them, so order holds.
    /// Blocking file I/O.
    pub(crate) fn peek_spilled(&self, max: usize) -> std::io::Result<Vec<Vec<u8>>> {
        match &self.overflow {
            Some(o) => o.lock_ignoring_poison().file.peek(max),
            None => Ok(Vec::new()),
        }
    }

    /// The first `lines` peeked lines (`bytes` long in all) were sent.
    /// Rewrites the overflow file's small header (or removes the file once
    /// drained): blocking, but no more than the push path's own append.
    pub(crate) fn consume_spilled(&self, lines: u64, bytes: u64) -> std::io::Result<()> {
        match &self.overflow {
            Some(o) => o.lock_ignoring_poison().file.consume(lines, bytes),
            None => Ok(()),
        }
    }

    /// The oldest queued effect, left queued until [`sent`](Self::sent):
    /// an output stopped while sending it keeps it (see
    /// [`keep_unsent`](Self::keep_unsent)).
    pub(crate) fn front(&self) -> Option<Effect> {
        self.items.lock_ignoring_poison().front().cloned()
    }

    /// The effect [`front`](Self::front) gave was sent (or given up on).
    pub(crate) fn sent(&self) {
        self.items.lock_ignoring_poison().pop_front();
    }

    /// For a lossless queue whose consumer has stopped: moves what is still
    /// queued in memory to the front of the overflow file, so the next
    /// start sends it first. Returns how many; an error says how many could
    /// not be kept and why (they are discarded). Blocking file I/O.
    pub(crate) fn keep_unsent(&self) -> Result<usize, (usize, String)> {
        let Some(overflow) = &self.overflow else {
            return Ok(0);
        };
        let mut overflow = overflow.lock_ignoring_poison();
        let items: Vec<Effect> = self.items.lock_ignoring_poison().drain(..).collect();
        let lines: Vec<Vec<u8>> = items.iter().map(|e| (overflow.render)(e)).collect();
        overflow.file.prepend(&lines).map_err(|e| {
            let why = format!(
                "cannot keep unsent effects in {} at a stop: {e}",
                overflow.file.path().display()
            );
            (lines.len(), why)
        })?;
        Ok(lines.len())
    }

    /// Next effect; after `close`, drains what is left and then returns `None`.
    pub(crate) async fn pop(&self) -> Option<Effect> {
        loop {
            if let Some(e) = self.items.lock_ignoring_poison().pop_front() {
                return Some(e);
            }
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            self.ready.notified().await;
        }
    }

    /// Everything queued right now (for batching writers), without waiting.
    pub(crate) fn drain_ready(&self) -> Vec<Effect> {
        self.items.lock_ignoring_poison().drain(..).collect()
    }

    /// Discards everything queued; returns how many were discarded.
    pub(crate) fn clear(&self) -> usize {
        let mut items = self.items.lock_ignoring_poison();
        let n = items.len();
        items.clear();
        n
    }

    /// No more pushes; the consumer drains and then sees `None`.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.ready.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn effect(n: u64, action: OutputAction) -> Effect {
        Effect {
            rule: Arc::from(format!("r{n}")),
            output: Arc::from("o"),
            action,
            item: None,
        }
    }

    fn render(e: &Effect) -> Vec<u8> {
        format!("{}\n", e.rule).into_bytes()
    }

    #[tokio::test]
    async fn a_full_lossless_queue_spills_and_is_drained_in_order() {
        let dir = std::env::temp_dir().join(format!("queue-spill-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = SpillFile::open(dir.join("log.spill"), 1 << 20).unwrap();
        let q = Queue::lossless(
            3,
            Overflow {
                file,
                render: Box::new(render),
            },
        );
        let mut outcomes = Vec::new();
        for n in 0..10 {
            outcomes.push(q.push(effect(n, OutputAction::Deliver)));
        }
        assert_eq!(
            &outcomes[..3],
            &[Pushed::Queued, Pushed::Queued, Pushed::Queued]
        );
        assert!(
            outcomes[3..].iter().all(|o| *o == Pushed::Spilled),
            "{outcomes:?}"
        );
        // The consumer takes the queue first, then the overflow.
        let mut seen: Vec<String> = q.drain_ready().iter().map(|e| e.rule.to_string()).collect();
        // Room in memory again, but older effects are still in the overflow:
        // a new one goes behind them.
        assert_eq!(q.push(effect(10, OutputAction::Deliver)), Pushed::Spilled);
        assert!(q.ready().await);
        while q.spilled() > 0 {
            let lines = q.peek_spilled(4).unwrap();
            let bytes = lines.iter().map(|l| l.len() as u64).sum();
            q.consume_spilled(lines.len() as u64, bytes).unwrap();
            for line in lines {
                seen.push(String::from_utf8(line).unwrap().trim_end().to_string());
            }
        }
        // Caught up: the next one is queued in memory again.
        assert_eq!(q.push(effect(11, OutputAction::Deliver)), Pushed::Queued);
        seen.extend(q.drain_ready().iter().map(|e| e.rule.to_string()));
        let want: Vec<String> = (0..12).map(|n| format!("r{n}")).collect();
        assert_eq!(seen, want);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn a_full_overflow_refuses_and_says_why() {
        let dir = std::env::temp_dir().join(format!("queue-full-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = SpillFile::open(dir.join("log.spill"), 6).unwrap();
        let q = Queue::lossless(
            1,
            Overflow {
                file,
                render: Box::new(render),
            },
        );
        assert_eq!(q.push(effect(0, OutputAction::Deliver)), Pushed::Queued);
        assert_eq!(q.push(effect(1, OutputAction::Deliver)), Pushed::Spilled);
        assert_eq!(q.push(effect(2, OutputAction::Deliver)), Pushed::Spilled);
        let Pushed::SpillRefused(why) = q.push(effect(3, OutputAction::Deliver)) else {
            panic!("a full overflow accepted an effect")
        };
        assert!(why.contains("is full (6 bytes)"), "{why}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn levels_coalesce_and_pulses_do_not() {
        let q = Queue::new(2, DropPolicy::CoalesceLevels);
        assert_eq!(
            q.push(effect(0, OutputAction::Pulse { ms: 5 })),
            Pushed::Queued
        );
        assert_eq!(q.push(effect(1, OutputAction::Activate)), Pushed::Queued);
        assert_eq!(
            q.push(effect(2, OutputAction::Deactivate)),
            Pushed::Coalesced
        );
        assert_eq!(
            q.push(effect(3, OutputAction::Pulse { ms: 5 })),
            Pushed::Dropped
        );
        let left: Vec<String> = q.drain_ready().iter().map(|e| e.rule.to_string()).collect();
        assert_eq!(left, ["r0", "r2"]);
    }
}
