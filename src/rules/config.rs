//! The `[[rules]]` config shape, as deserialized (strings not yet parsed).
//! `RuleSet::new` validates it; nothing here is trusted before that.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One `[[rules]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    /// Item rules: what an item must look like (see [`MatchConfig`]).
    #[serde(rename = "match")]
    pub match_: Option<MatchConfig>,
    /// Item rules: further conditions on the payload, all of which must hold.
    #[serde(rename = "where", default)]
    pub where_: Vec<ConditionConfig>,
    /// `"N of M"` items, or a duration the match must hold for.
    pub debounce: Option<String>,
    /// Minimum time between two fires.
    pub cooldown: Option<String>,
    /// Keep firing latched (and `hold` outputs active) until no match for this long.
    pub hold: Option<String>,
    /// `"N/window"`: at most N fires in any sliding window.
    pub rate_limit: Option<String>,
    /// Channel-condition rules: fire on a channel event instead of items.
    pub on: Option<ChannelCondition>,
    /// With `on = "no_data"`: how long without data before firing.
    pub after: Option<String>,
    pub then: Vec<ActionConfig>,
}

/// A channel condition a rule can fire on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelCondition {
    NoData,
    PipelineDead,
    Reconnected,
}

/// `match = { type = "detection", any = "/boxes", label = "person", min_confidence = 0.6, zone = … }`.
/// Every field is optional; `label`, `min_confidence` and `zone` look at the
/// elements of the list at `any` (default `/boxes`) and need one element that
/// satisfies all of them. `any` alone means "the list is not empty". A list
/// that is missing or not an array matches nothing.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// The item's type (`Item::item_type`) must equal this.
    #[serde(rename = "type")]
    pub item_type: Option<String>,
    /// JSON pointer to the list of detections.
    pub any: Option<String>,
    pub label: Option<Labels>,
    pub min_confidence: Option<f64>,
    pub zone: Option<ZoneConfig>,
}

/// `label = "person"` or `label = ["person", "car"]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Labels {
    One(String),
    Many(Vec<String>),
}

/// `zone = { rect = [x0, y0, x1, y1] }` or `zone = { polygon = [[x, y], …] }`,
/// in the same coordinates as the boxes (normalised 0..1 for `x,y,w,h` boxes).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ZoneConfig {
    Rect([f64; 4]),
    Polygon(Vec<[f64; 2]>),
}

/// `{ path = "/a/b", eq = … }`; several operators in one condition must all hold
/// (`{ path = "/n", ge = 1, lt = 5 }` is a range).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionConfig {
    /// JSON pointer into the payload (`""` is the whole payload; a text
    /// payload is a JSON string there).
    pub path: String,
    pub eq: Option<Value>,
    pub one_of: Option<Vec<Value>>,
    pub gt: Option<f64>,
    pub ge: Option<f64>,
    pub lt: Option<f64>,
    pub le: Option<f64>,
    /// Matched against string values only.
    pub regex: Option<String>,
}

/// `{ output = "door", action = "pulse", ms = 500 }`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    pub output: String,
    /// None: the item is delivered (log, exec, webhook, mqtt outputs).
    pub action: Option<ActionKind>,
    /// Pulse length, only with `action = "pulse"`.
    pub ms: Option<u64>,
}

/// What a fire does to an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Activate.
    Set,
    /// Deactivate.
    Clear,
    /// Activate for `ms`, then deactivate (timed by the output).
    Pulse,
    /// Activate on fire, deactivate when the rule's hold expires.
    Hold,
}
