//! Counters for what a decoder kept and what it dropped, one per reason, so
//! `/metrics` can show why payloads were lost without reading logs.

/// Why a payload (or a line of one) was not turned into an item, or was
/// delivered with a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// A line (or a whole JSON/text segment) was over `max_line_bytes`.
    Oversize,
    /// A JSON value was nested deeper than `max_depth`.
    TooDeep,
    /// Not JSON (includes `NaN`/`Infinity`, which JSON does not allow).
    InvalidJson,
    InvalidUtf8,
    /// The segment ended in the middle of a value.
    Truncated,
    /// Elements of a batch array that are not objects (one warning per line).
    NonObject,
    /// A segment that should carry one value carried no bytes.
    Empty,
    /// Delivered, but a well-known field has the wrong type
    /// (`type` not a string, `timestamp`/`ts` not a number, `boxes` not a list).
    WrongTypes,
}

impl SkipReason {
    /// Stable name used in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Oversize => "oversize",
            SkipReason::TooDeep => "too_deep",
            SkipReason::InvalidJson => "invalid_json",
            SkipReason::InvalidUtf8 => "invalid_utf8",
            SkipReason::Truncated => "truncated",
            SkipReason::NonObject => "non_object",
            SkipReason::Empty => "empty",
            SkipReason::WrongTypes => "wrong_types",
        }
    }
}

/// Per-reason counts for one segment (or, added up, for a channel).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Items emitted.
    pub items: u64,
    /// Empty `[]` lines (pytrickle keepalives): no item, but proof of life.
    pub keepalive: u64,
    /// Batch elements that were strings holding a JSON object (pytrickle's
    /// `send_data(str)`), decoded into items (counted in `items` too).
    pub json_strings: u64,
    pub oversize: u64,
    pub too_deep: u64,
    pub invalid_json: u64,
    pub invalid_utf8: u64,
    pub truncated: u64,
    pub non_object: u64,
    pub empty: u64,
    pub wrong_types: u64,
}

impl DecodeStats {
    /// Counts one occurrence of `reason`.
    pub fn count(&mut self, reason: SkipReason) {
        *match reason {
            SkipReason::Oversize => &mut self.oversize,
            SkipReason::TooDeep => &mut self.too_deep,
            SkipReason::InvalidJson => &mut self.invalid_json,
            SkipReason::InvalidUtf8 => &mut self.invalid_utf8,
            SkipReason::Truncated => &mut self.truncated,
            SkipReason::NonObject => &mut self.non_object,
            SkipReason::Empty => &mut self.empty,
            SkipReason::WrongTypes => &mut self.wrong_types,
        } += 1;
    }

    /// Total warnings: every counter except `items`, `keepalive` and
    /// `json_strings`.
    /// Each of them was logged exactly once.
    pub fn warnings(&self) -> u64 {
        self.oversize
            + self.too_deep
            + self.invalid_json
            + self.invalid_utf8
            + self.truncated
            + self.non_object
            + self.empty
            + self.wrong_types
    }

    /// Adds another segment's counts into this one (channel totals).
    pub fn add(&mut self, other: &DecodeStats) {
        self.items += other.items;
        self.keepalive += other.keepalive;
        self.json_strings += other.json_strings;
        self.oversize += other.oversize;
        self.too_deep += other.too_deep;
        self.invalid_json += other.invalid_json;
        self.invalid_utf8 += other.invalid_utf8;
        self.truncated += other.truncated;
        self.non_object += other.non_object;
        self.empty += other.empty;
        self.wrong_types += other.wrong_types;
    }
}
