//! Exponential backoff with full jitter, shared by every retry loop in the agent.
//!
//! Full jitter (a uniformly random delay between zero and the current ceiling)
//! keeps a fleet of boards that lost the same server from reconnecting in
//! lock-step. The config is validated once, so a retry loop never has to think
//! about a zero or inverted range.

use std::time::Duration;

/// Why a backoff config was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackoffError {
    #[error("backoff minimum must be greater than zero")]
    ZeroMin,
    #[error("backoff maximum ({max:?}) is below its minimum ({min:?})")]
    MaxBelowMin { min: Duration, max: Duration },
}

/// Validated backoff bounds; cheap to copy into every task that retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    min: Duration,
    max: Duration,
}

impl BackoffConfig {
    pub fn new(min: Duration, max: Duration) -> Result<Self, BackoffError> {
        if min.is_zero() {
            return Err(BackoffError::ZeroMin);
        }
        if max < min {
            return Err(BackoffError::MaxBelowMin { min, max });
        }
        Ok(Self { min, max })
    }

    pub fn min(&self) -> Duration {
        self.min
    }

    pub fn max(&self) -> Duration {
        self.max
    }

    pub fn start(&self) -> Backoff {
        Backoff {
            config: *self,
            attempt: 0,
        }
    }
}

/// The running state of one retry loop.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
}

impl Backoff {
    /// A backoff from bounds already validated elsewhere (config parsing):
    /// a zero minimum becomes 1 ms and a maximum below the minimum is raised
    /// to it, rather than failing at run time.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let min = min.max(Duration::from_millis(1));
        BackoffConfig {
            min,
            max: max.max(min),
        }
        .start()
    }

    /// The ceiling for the next delay: `min * 2^attempt`, capped at `max`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.config
            .min
            .checked_mul(factor)
            .unwrap_or(self.config.max)
            .min(self.config.max)
    }

    /// Draws the next delay (uniform in `[0, ceiling]`) and raises the ceiling.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let nanos = ceiling.as_nanos().min(u64::MAX as u128) as u64;
        Duration::from_nanos(rand::random_range(0..=nanos))
    }

    /// Sleeps for the next delay (tokio time, so paused clocks drive it in tests).
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    /// Number of delays drawn since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Called after a success so the next failure starts small again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_bounds() {
        assert_eq!(
            BackoffConfig::new(Duration::ZERO, Duration::from_secs(1)),
            Err(BackoffError::ZeroMin)
        );
        assert!(matches!(
            BackoffConfig::new(Duration::from_secs(2), Duration::from_secs(1)),
            Err(BackoffError::MaxBelowMin { .. })
        ));
    }

    #[test]
    fn delays_stay_within_doubling_ceiling_and_cap() {
        let cfg = BackoffConfig::new(Duration::from_millis(100), Duration::from_secs(5)).unwrap();
        let mut b = cfg.start();
        for attempt in 0..200u32 {
            let ceiling = b.ceiling();
            let expected = Duration::from_millis(100)
                .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
                .min(Duration::from_secs(5));
            assert_eq!(ceiling, expected, "attempt {attempt}");
            let d = b.next_delay();
            assert!(d <= ceiling, "delay {d:?} above ceiling {ceiling:?}");
        }
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }

    #[test]
    fn jitter_spreads_delays() {
        let cfg = BackoffConfig::new(Duration::from_secs(1), Duration::from_secs(1)).unwrap();
        let mut b = cfg.start();
        let delays: Vec<_> = (0..64).map(|_| b.next_delay()).collect();
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 32, "full jitter should rarely repeat");
    }

    #[tokio::test(start_paused = true)]
    async fn wait_uses_tokio_time() {
        let cfg = BackoffConfig::new(Duration::from_millis(10), Duration::from_millis(10)).unwrap();
        let mut b = cfg.start();
        let start = tokio::time::Instant::now();
        b.wait().await;
        // Paused clock: the wait advances virtual time by exactly the delay drawn.
        let waited = start.elapsed();
        assert!(waited <= Duration::from_millis(10), "waited {waited:?}");
        assert_eq!(b.attempts(), 1);
    }
}
