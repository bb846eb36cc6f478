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
}

impl PipelineHealth {
    /// Starts the clock now: a job gets `dead_after` to send its first event.
    pub fn new(dead_after: Duration) -> Self {
        Self {
            dead_after,
            last: Mutex::new(Instant::now()),
        }
    }

    pub fn event_seen(&self) {
        *self.last.lock_ignoring_poison() = Instant::now();
    }

    /// A restarted job gets a fresh grace period.
    pub fn reset(&self) {
        self.event_seen();
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
}
