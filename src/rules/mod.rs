//! The rule engine: matches decoded items and channel events against the
//! configured `[[rules]]` and decides, with debounce, cooldown, hold and rate
//! limits, which output effects to produce. Pure and clock-injected: every
//! entry point takes `now`, nothing here sleeps or does I/O, so all timing
//! is testable with constructed instants.
//!
//! Semantics, in the order they apply to an item:
//! - An item whose numeric `timestamp`/`ts` (seconds, or milliseconds when
//!   above 1e11) is older than the latest seen by the rule *on the same
//!   channel* is ignored and counted (`RuleStats::out_of_order`). A
//!   timestamp more than `FUTURE_TOLERANCE` (10 min) ahead of this machine's
//!   clock is not ordered by: the item is evaluated as one without a
//!   timestamp and counted (`RuleStats::untrusted_timestamps`), so one bad
//!   value costs nothing to the items after it.
//! - Match: `match.type` against `Item::item_type`; detections in the list
//!   at `match.any` (default `/boxes`), where a box is in a zone if its
//!   **centre** is inside it; then every `where` condition.
//! - Debounce turns matches into triggers: `"N of M"` triggers on a match when
//!   N of the last M evaluated items matched; a duration triggers once a run
//!   of matches (no non-match between) has lasted that long, from the item or
//!   from the timer, and then on every further match of the run.
//! - A trigger fires all `then` actions unless the rule is held (`hold`: it
//!   only extends the hold; any match, debounced or not, extends it), within
//!   `cooldown` of the last fire, or over `rate_limit` (sliding window).
//! - When a hold runs out, `action = "hold"` outputs get `Deactivate`.
//! - Timers run at their own deadline, so a late `on_tick` gives the same
//!   effects as a punctual one; a `now` earlier than a previous one counts
//!   as no time passing.

mod config;
mod engine;
mod error;
mod matcher;
mod timing;
mod zone;

pub use crate::duration::{DurationError, MAX_DURATION, parse_duration};
pub use config::{
    ActionConfig, ActionKind, ChannelCondition, ConditionConfig, Labels, MatchConfig, RuleConfig,
    ZoneConfig,
};
pub use engine::{ChannelEvent, Effect, FUTURE_TOLERANCE, OutputAction, RuleSet, RuleStats};
pub use error::{RuleError, RuleErrorKind};
pub use timing::MAX_WINDOW;
