//! Per-output counters, written by the output's task and read as a snapshot
//! (the metrics exporter comes later and only needs `snapshot`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Live counters of one output; cheap to bump from any task.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    retries: AtomicU64,
    timeouts: AtomicU64,
    fired: AtomicU64,
    spilled: AtomicU64,
    coalesced: AtomicU64,
}

/// A point-in-time copy of one output's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputCounters {
    /// Effects carried out (line written, line logged, command exited 0,
    /// webhook answered 2xx, MQTT publish written to the broker connection).
    pub sent: u64,
    /// Effects that finally failed (after retries where there are retries).
    pub failed: u64,
    /// Effects dropped because the output's queue was full (or, for GPIO,
    /// discarded by `failsafe`).
    pub dropped: u64,
    /// Webhook attempts beyond the first; MQTT reconnect attempts.
    pub retries: u64,
    /// Calls cut off by a timeout (stuck GPIO, exec killed, webhook attempt);
    /// each is also counted in `failed` or `retries`.
    pub timeouts: u64,
    /// Effects handed to this output by the rules (whatever became of them).
    pub fired: u64,
    /// Effects that went through the output's overflow file (log, webhook,
    /// MQTT at QoS 1 or 2) because its queue was full; not lost (they are
    /// also counted in `sent` once written, POSTed or published).
    pub spilled: u64,
    /// GPIO levels replaced in the queue by a later level: not lost, only
    /// the latest level matters.
    pub coalesced: u64,
}

impl Counters {
    pub(crate) fn sent(&self) {
        self.sent.fetch_add(1, Relaxed);
    }
    pub(crate) fn failed(&self) {
        self.failed.fetch_add(1, Relaxed);
    }
    pub(crate) fn dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Relaxed);
    }
    pub(crate) fn retry(&self) {
        self.retries.fetch_add(1, Relaxed);
    }
    pub(crate) fn timeout(&self) {
        self.timeouts.fetch_add(1, Relaxed);
    }
    pub(crate) fn fired(&self) {
        self.fired.fetch_add(1, Relaxed);
    }
    pub(crate) fn spilled(&self) {
        self.spilled.fetch_add(1, Relaxed);
    }
    pub(crate) fn coalesced(&self) {
        self.coalesced.fetch_add(1, Relaxed);
    }
    pub(crate) fn snapshot(&self) -> OutputCounters {
        OutputCounters {
            sent: self.sent.load(Relaxed),
            failed: self.failed.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            retries: self.retries.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            fired: self.fired.load(Relaxed),
            spilled: self.spilled.load(Relaxed),
            coalesced: self.coalesced.load(Relaxed),
        }
    }
}

impl std::fmt::Display for OutputCounters {
    /// The summary's words: fired, then what became of them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fired={} delivered={} failed={} dropped={} spilled={} coalesced={}",
            self.fired, self.sent, self.failed, self.dropped, self.spilled, self.coalesced
        )
    }
}
