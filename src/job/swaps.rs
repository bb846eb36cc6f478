//! Livepeer's gateway gives up on swapping after more than 2 swaps in 3
//! minutes: the network, not one orchestrator, is the problem then, and
//! hopping on would only burn start payments. This is that rule as a pure
//! piece (times passed in), so it is tested without clocks: a swap that
//! exceeds the budget asks for a back-off, with jitter so a fleet that lost
//! the same orchestrators does not come back in lock-step, after which the
//! agent starts over from discovery.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// The longest back-off, however often the budget is exceeded in a row.
pub const MAX_SWAP_BACKOFF: Duration = Duration::from_secs(300);

/// Swaps within a sliding window, and the back-off once they are too many.
#[derive(Debug, Clone)]
pub struct SwapGuard {
    max_swaps: u32,
    window: Duration,
    backoff: Duration,
    swaps: VecDeque<Instant>,
    /// Back-offs in a row (the window filled again soon after the last).
    streak: u32,
    last_backoff: Option<Instant>,
}

impl SwapGuard {
    /// More than `max_swaps` within `window` backs off; the first back-off's
    /// ceiling is `backoff`, doubled for each one that follows within a
    /// window of the last, up to [`MAX_SWAP_BACKOFF`].
    pub fn new(max_swaps: u32, window: Duration, backoff: Duration) -> Self {
        Self {
            max_swaps,
            window,
            backoff: backoff.max(Duration::from_millis(1)),
            swaps: VecDeque::new(),
            streak: 0,
            last_backoff: None,
        }
    }

    /// Swaps counted in the window ending at `now`.
    pub fn recent(&mut self, now: Instant) -> usize {
        while self
            .swaps
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            self.swaps.pop_front();
        }
        self.swaps.len()
    }

    /// The ceiling of the next back-off.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.streak.min(31)).unwrap_or(u32::MAX);
        self.backoff
            .checked_mul(factor)
            .unwrap_or(MAX_SWAP_BACKOFF)
            .min(MAX_SWAP_BACKOFF.max(self.backoff))
    }

    /// A swap is about to happen at `now`. `None`: go ahead. `Some(d)`:
    /// the budget is exceeded; wait `d` (between half the ceiling and the
    /// ceiling) and start over; the window starts empty again.
    pub fn swap(&mut self, now: Instant, jitter: f64) -> Option<Duration> {
        self.recent(now);
        self.swaps.push_back(now);
        if self.swaps.len() as u64 <= u64::from(self.max_swaps) {
            return None;
        }
        let settled = self
            .last_backoff
            .is_none_or(|t| now.saturating_duration_since(t) >= self.window * 2);
        if settled {
            self.streak = 0;
        }
        let ceiling = self.ceiling();
        self.streak = self.streak.saturating_add(1);
        self.last_backoff = Some(now);
        self.swaps.clear();
        Some(ceiling.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn guard() -> SwapGuard {
        SwapGuard::new(2, 180 * S, 10 * S)
    }

    #[test]
    fn two_swaps_in_three_minutes_go_ahead_the_third_backs_off() {
        let t0 = Instant::now();
        let mut g = guard();
        assert_eq!(g.swap(t0, 0.5), None);
        assert_eq!(g.swap(t0 + 60 * S, 0.5), None);
        let d = g
            .swap(t0 + 120 * S, 1.0)
            .expect("third swap in 3 min backs off");
        assert_eq!(d, 10 * S);
        // The window starts empty after a back-off.
        assert_eq!(g.recent(t0 + 121 * S), 0);
    }

    #[test]
    fn swaps_spread_over_more_than_the_window_never_back_off() {
        let t0 = Instant::now();
        let mut g = guard();
        for i in 0..20u32 {
            assert_eq!(g.swap(t0 + 100 * S * i, 0.5), None, "swap {i}");
        }
        assert_eq!(g.recent(t0 + 1900 * S), 2);
    }

    #[test]
    fn jitter_stays_between_half_the_ceiling_and_the_ceiling() {
        let t0 = Instant::now();
        for (jitter, want) in [(0.0, 5 * S), (1.0, 10 * S), (-3.0, 5 * S), (7.0, 10 * S)] {
            let mut g = guard();
            g.swap(t0, 0.0);
            g.swap(t0, 0.0);
            assert_eq!(g.swap(t0, jitter), Some(want), "jitter {jitter}");
        }
    }

    #[test]
    fn back_offs_in_a_row_double_up_to_the_cap_and_settle_again() {
        let t0 = Instant::now();
        let mut g = guard();
        let mut t = t0;
        let mut delays = Vec::new();
        for _ in 0..8 {
            for _ in 0..3 {
                t += S;
                if let Some(d) = g.swap(t, 1.0) {
                    delays.push(d);
                }
            }
        }
        assert_eq!(
            delays,
            [10, 20, 40, 80, 160, 300, 300, 300].map(|s| s * S).to_vec()
        );
        // Quiet for two windows: the next back-off starts small again.
        t += 360 * S;
        g.swap(t, 1.0);
        g.swap(t, 1.0);
        assert_eq!(g.swap(t, 1.0), Some(10 * S));
    }

    #[test]
    fn zero_swaps_allowed_backs_off_at_once() {
        let mut g = SwapGuard::new(0, 180 * S, 2 * S);
        assert_eq!(g.swap(Instant::now(), 1.0), Some(2 * S));
    }
}
