//! What the agent's stages learn about a running job's channels, for the
//! supervisor to act on at its next tick: a Livepeer job fails over the
//! moment one of its channels answers 404 or is closed by the orchestrator
//! (as Livepeer's gateway does), not 30 s later when its events go silent.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::sync::LockIgnoringPoison;

/// One job's fault and output liveness, shared by its payment loop, its
/// channel readers and its camera publisher.
#[derive(Debug)]
pub struct JobWatch {
    fault: Mutex<Option<String>>,
    /// The last output segment's start, or the job's start before the first.
    last_output: Mutex<Instant>,
    /// Wakes the supervisor at once instead of at its next tick.
    failed: tokio::sync::Notify,
}

impl Default for JobWatch {
    fn default() -> Self {
        Self {
            fault: Mutex::new(None),
            last_output: Mutex::new(Instant::now()),
            failed: tokio::sync::Notify::new(),
        }
    }
}

impl JobWatch {
    /// The job cannot go on; the first reason is kept (later ones are
    /// usually the same closure seen from another channel).
    pub fn fail(&self, reason: String) {
        let mut f = self.fault.lock_ignoring_poison();
        if f.is_none() {
            *f = Some(reason);
            self.failed.notify_one();
        }
    }

    /// Resolves once the job has failed (at once if it already has).
    pub async fn failed(&self) {
        if self.fault().is_some() {
            return;
        }
        self.failed.notified().await;
    }

    pub fn fault(&self) -> Option<String> {
        self.fault.lock_ignoring_poison().clone()
    }

    /// An output segment began.
    pub fn output_seen(&self) {
        *self.last_output.lock_ignoring_poison() = Instant::now();
    }

    /// Since the last output segment (or the job's start).
    pub fn output_silent_for(&self) -> Duration {
        self.last_output.lock_ignoring_poison().elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reason_is_kept() {
        let w = JobWatch::default();
        assert_eq!(w.fault(), None);
        w.fail("publish channel closed".into());
        w.fail("events channel closed".into());
        assert_eq!(w.fault().as_deref(), Some("publish channel closed"));
    }

    #[tokio::test(start_paused = true)]
    async fn output_silence_counts_from_the_last_segment() {
        let w = JobWatch::default();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(w.output_silent_for(), Duration::from_secs(5));
        w.output_seen();
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(w.output_silent_for(), Duration::from_secs(1));
    }
}
