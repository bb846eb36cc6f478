//! The "when does a match fire" half of a rule: debounce, cooldown, hold,
//! rate limit and the no-data timer, as one state machine per rule.
//!
//! The model: an evaluated item feeds the *debounce*; a match that passes it
//! is a *trigger*; a trigger *fires* unless the rule is held (then it only
//! extends the hold), cooling down, or over its rate limit. Timers (a
//! duration debounce being reached, a hold running out, no data for too
//! long) are processed at their own deadline, not at the time the caller
//! happened to tick, so results do not depend on tick jitter.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::data::Item;

/// Largest M accepted in "N of M" (the window is kept per rule).
pub const MAX_WINDOW: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Debounce {
    /// Fire when N of the last M evaluated items matched.
    Count { n: usize, m: usize },
    /// Fire once matches have continued, with no non-match, for this long.
    For(Duration),
}

/// The parsed timing fields of one rule.
#[derive(Debug, Clone, Default)]
pub(crate) struct TimingSpec {
    pub debounce: Option<Debounce>,
    pub cooldown: Option<Duration>,
    pub hold: Option<Duration>,
    /// At most `.0` fires in any window of `.1`.
    pub rate_limit: Option<(usize, Duration)>,
    /// `on = "no_data"`: fire after this long without `ChannelEvent::Data`.
    pub no_data_after: Option<Duration>,
}

/// A run of consecutive matches, for a duration debounce.
#[derive(Debug, Clone)]
struct Streak {
    since: Instant,
    /// The run has reached the debounce duration and triggered.
    reached: bool,
    /// Latest matching item, attached to a fire made by the timer.
    item: Option<Arc<Item>>,
}

/// A timer that came due.
#[derive(Debug, Clone)]
pub(crate) enum Due {
    /// A duration debounce was reached; the item is the latest match.
    DebounceReached(Option<Arc<Item>>),
    /// No trigger for the hold duration: outputs held by this rule go inactive.
    HoldReleased,
    /// No data for `after`.
    NoData,
}

/// Why a trigger did not fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Fire,
    /// Held: the hold was extended, nothing new to do.
    Held,
    Cooldown,
    RateLimited,
}

#[derive(Debug, Clone)]
pub(crate) struct Timing {
    spec: TimingSpec,
    window: VecDeque<bool>,
    streak: Option<Streak>,
    last_fire: Option<Instant>,
    fires: VecDeque<Instant>,
    held_until: Option<Instant>,
    /// `Some(t)`: the no-data timer runs from `t`; `None`: fired, waiting for data.
    no_data_since: Option<Instant>,
}

impl Timing {
    /// Whether the rule is in its hold now (fired, and matched within `hold`).
    pub(crate) fn is_held(&self) -> bool {
        self.held_until.is_some()
    }

    pub(crate) fn new(spec: TimingSpec) -> Timing {
        Timing {
            spec,
            window: VecDeque::new(),
            streak: None,
            last_fire: None,
            fires: VecDeque::new(),
            held_until: None,
            no_data_since: None,
        }
    }

    /// Starts the no-data timer (on the rule set's first call).
    pub(crate) fn start(&mut self, now: Instant) {
        self.no_data_since = Some(now);
    }

    /// Data arrived: the no-data timer starts over (and may fire again).
    pub(crate) fn data_seen(&mut self, now: Instant) {
        self.no_data_since = Some(now);
    }

    /// Feeds one evaluated item through the debounce; true if it triggers.
    /// `item` is only called when the item must be kept for a later fire.
    /// While the rule is held, any match (debounced or not) extends the hold:
    /// the debounce decides when an output turns on, not how long it stays on.
    pub(crate) fn debounce(
        &mut self,
        matched: bool,
        now: Instant,
        item: impl FnOnce() -> Arc<Item>,
    ) -> bool {
        if let (true, Some(_), Some(hold)) = (matched, self.held_until, self.spec.hold) {
            self.held_until = Some(now + hold);
        }
        match self.spec.debounce {
            None => matched,
            Some(Debounce::Count { n, m }) => {
                if self.window.len() == m {
                    self.window.pop_front();
                }
                self.window.push_back(matched);
                matched && self.window.iter().filter(|&&b| b).count() >= n
            }
            Some(Debounce::For(d)) => {
                if !matched {
                    self.streak = None;
                    return false;
                }
                let streak = self.streak.get_or_insert(Streak {
                    since: now,
                    reached: false,
                    item: None,
                });
                streak.item = Some(item());
                if now.saturating_duration_since(streak.since) >= d {
                    streak.reached = true;
                }
                streak.reached
            }
        }
    }

    /// Decides what a trigger at `at` does, and records a fire.
    pub(crate) fn trigger(&mut self, at: Instant) -> Verdict {
        if let (Some(until), Some(hold)) = (self.held_until, self.spec.hold)
            && at < until
        {
            self.held_until = Some(at + hold);
            return Verdict::Held;
        }
        if let (Some(last), Some(cooldown)) = (self.last_fire, self.spec.cooldown)
            && at.saturating_duration_since(last) < cooldown
        {
            return Verdict::Cooldown;
        }
        if let Some((n, window)) = self.spec.rate_limit {
            while self
                .fires
                .front()
                .is_some_and(|&t| at.saturating_duration_since(t) >= window)
            {
                self.fires.pop_front();
            }
            if self.fires.len() >= n {
                return Verdict::RateLimited;
            }
            self.fires.push_back(at);
        }
        self.last_fire = Some(at);
        self.held_until = self.spec.hold.map(|h| at + h);
        Verdict::Fire
    }

    /// The earliest pending timer, if any.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let (debounce, hold, no_data) = self.deadlines();
        [debounce, hold, no_data].into_iter().flatten().min()
    }

    /// Deadlines of the three timers: debounce reached, hold release, no data.
    fn deadlines(&self) -> (Option<Instant>, Option<Instant>, Option<Instant>) {
        let debounce = match (&self.streak, self.spec.debounce) {
            (Some(s), Some(Debounce::For(d))) if !s.reached => Some(s.since + d),
            _ => None,
        };
        let no_data = self
            .no_data_since
            .zip(self.spec.no_data_after)
            .map(|(t, d)| t + d);
        (debounce, self.held_until, no_data)
    }

    /// Takes the earliest timer due at or before `now`, with its deadline.
    /// Call until `None`: handling one timer can schedule another.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, Due)> {
        let at = self.next_deadline().filter(|&t| t <= now)?;
        let (debounce, hold, _) = self.deadlines();
        if hold == Some(at) {
            self.held_until = None;
            Some((at, Due::HoldReleased))
        } else if debounce == Some(at) {
            let streak = self.streak.as_mut()?;
            streak.reached = true;
            Some((at, Due::DebounceReached(streak.item.clone())))
        } else {
            self.no_data_since = None;
            Some((at, Due::NoData))
        }
    }
}
