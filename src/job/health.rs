//! Pipeline liveness from the events channel: like Livepeer's gateway, a
//! pipeline that sent no event for `dead_after` is dead.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::sync::LockIgnoringPoison;

#[derive(Debug)]
pub struct PipelineHealth {
    dead_after: Duration,
    last: Mutex<Instant>,
    /// An event arrived since the last reset: the (re)started job proved
    /// alive, which is what may reset the restart backoff.
    heard: std::sync::atomic::AtomicBool,
}

impl PipelineHealth {
    /// Starts the clock now: a job gets `dead_after` to send its first event.
    pub fn new(dead_after: Duration) -> Self {
        Self {
            dead_after,
            last: Mutex::new(Instant::now()),
            heard: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn event_seen(&self) {
        *self.last.lock_ignoring_poison() = Instant::now();
        self.heard.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// A restarted job gets a fresh grace period, and has to be heard again.
    pub fn reset(&self) {
        *self.last.lock_ignoring_poison() = Instant::now();
        self.heard
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether an event arrived since the last [`reset`](Self::reset).
    pub fn heard_since_reset(&self) -> bool {
        self.heard.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn silent_for(&self) -> Duration {
        self.last.lock_ignoring_poison().elapsed()
    }

    pub fn is_dead(&self) -> bool {
        self.silent_for() > self.dead_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn dead_after_silence_alive_after_event() {
        let h = PipelineHealth::new(Duration::from_secs(30));
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(!h.is_dead());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(h.is_dead());
        h.event_seen();
        assert!(!h.is_dead());
    }

    #[tokio::test(start_paused = true)]
    async fn a_reset_job_must_be_heard_again() {
        let h = PipelineHealth::new(Duration::from_secs(30));
        h.event_seen();
        assert!(h.heard_since_reset());
        h.reset();
        assert!(!h.heard_since_reset(), "a restart alone proves nothing");
        assert!(!h.is_dead(), "but it gets a fresh grace period");
        h.event_seen();
        assert!(h.heard_since_reset());
    }
}
