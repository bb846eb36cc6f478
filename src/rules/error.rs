//! Validation errors: each names the rule and the config field at fault.

use crate::duration::DurationError;

/// A rule that cannot be built, e.g.
/// ``rule `door`: `match.zone.polygon`: a polygon needs at least 3 points, got 2``.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("rule `{rule}`: `{field}`: {kind}")]
pub struct RuleError {
    pub rule: String,
    /// Path of the field inside the rule, e.g. `where[1].regex`, `then[0].ms`.
    pub field: String,
    pub kind: RuleErrorKind,
}

/// What is wrong with the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleErrorKind {
    #[error("a rule needs a non-empty name")]
    EmptyName,
    #[error("another rule has the same name")]
    DuplicateName,
    #[error("invalid regex: {0}")]
    BadRegex(String),
    #[error(
        "invalid JSON pointer {0:?}: must be empty or start with `/`, and `~` must be `~0` or `~1`"
    )]
    BadPointer(String),
    #[error(transparent)]
    BadDuration(#[from] DurationError),
    #[error("confidence {0} is outside 0..=1")]
    ConfidenceOutOfRange(f64),
    #[error("a polygon needs at least 3 points, got {0}")]
    PolygonTooSmall(usize),
    #[error("rect [x0, y0, x1, y1] needs x0 <= x1 and y0 <= y1")]
    BadRect,
    #[error("invalid debounce {0:?}: expected \"N of M\" (e.g. \"2 of 3\") or a duration")]
    BadDebounce(String),
    #[error("N must be at least 1 in \"N of M\"")]
    ZeroN,
    #[error("N ({n}) is greater than M ({m}) in \"N of M\"")]
    NGreaterThanM { n: usize, m: usize },
    #[error("M ({0}) is over the limit of {max}", max = super::timing::MAX_WINDOW)]
    WindowTooLarge(usize),
    #[error("invalid rate limit {0:?}: expected \"N/duration\", e.g. \"5/1m\"")]
    BadRateLimit(String),
    #[error("a rate limit needs N >= 1 and a non-zero window")]
    ZeroRate,
    #[error("condition has no operator: use eq, one_of, gt, ge, lt, le or regex")]
    NoOperator,
    #[error("a rule needs at least one action")]
    NoActions,
    #[error("output name is empty")]
    EmptyOutput,
    #[error("`action = \"pulse\"` needs `ms` >= 1")]
    PulseWithoutMs,
    #[error("`ms` is only used with `action = \"pulse\"`")]
    MsWithoutPulse,
    #[error("`action = \"hold\"` needs the rule's `hold` duration")]
    HoldWithoutDuration,
    #[error("`on = \"no_data\"` needs `after`")]
    NoDataWithoutAfter,
    #[error("`after` is only used with `on = \"no_data\"`")]
    AfterWithoutNoData,
    #[error("not allowed in a channel-condition rule (`on`)")]
    NotWithOn,
}
