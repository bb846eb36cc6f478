//! The bounded queue in front of every output: `push` never waits, so a slow
//! output can never stall the rules engine or the data decoder behind it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

use crate::rules::Effect;
use crate::sync::LockIgnoringPoison;

/// Which effect to give up when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropPolicy {
    /// Keep what is queued, refuse the new effect (GPIO, log, exec, MQTT:
    /// order and the earliest evidence matter more than recency).
    Newest,
    /// Evict the oldest queued effect (webhook: a receiver wants the latest
    /// state more than a backlog that piled up while it was down).
    Oldest,
}

/// Single-consumer bounded FIFO of effects.
#[derive(Debug)]
pub(crate) struct Queue {
    items: Mutex<VecDeque<Effect>>,
    capacity: usize,
    policy: DropPolicy,
    ready: Notify,
    closed: AtomicBool,
}

/// What became of a pushed effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// Queued, and the oldest queued effect was evicted to make room.
    QueuedDroppedOldest,
    /// Refused: queue full (policy `Newest`) or closed.
    Dropped,
}

impl Queue {
    pub(crate) fn new(capacity: usize, policy: DropPolicy) -> Self {
        Self {
            items: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity: capacity.max(1),
            policy,
            ready: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// Adds an effect without waiting; the caller counts drops.
    pub(crate) fn push(&self, effect: Effect) -> Pushed {
        if self.closed.load(Ordering::Acquire) {
            return Pushed::Dropped;
        }
        let outcome = {
            let mut items = self.items.lock_ignoring_poison();
            if items.len() < self.capacity {
                items.push_back(effect);
                Pushed::Queued
            } else if self.policy == DropPolicy::Oldest {
                items.pop_front();
                items.push_back(effect);
                Pushed::QueuedDroppedOldest
            } else {
                Pushed::Dropped
            }
        };
        if outcome != Pushed::Dropped {
            // notify_one stores a permit when the consumer is not waiting yet.
            self.ready.notify_one();
        }
        outcome
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
