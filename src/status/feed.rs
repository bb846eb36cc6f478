//! What the rules task tells the status page and Home Assistant: the latest
//! detection boxes (kept only while a page is open), rule fires, each
//! output's last commanded state, and which rules are on.
//!
//! Written from the rules task, so every write is a short lock or an atomic
//! and nothing here waits: the page and the MQTT discovery task read copies.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use crate::data::Item;
use crate::rules::{Effect, OutputAction};
use crate::sync::LockIgnoringPoison;

/// Rule fires kept for the page's timeline.
pub const FIRES_KEPT: usize = 100;
/// Boxes kept from the latest item (a detector gone wild cannot grow this).
pub const BOXES_KEPT: usize = 64;

/// The latest item that carried detection boxes.
#[derive(Debug, Clone, Serialize)]
pub struct Detections {
    pub channel: String,
    pub seq: i64,
    pub unix_ms: u64,
    /// As the item had them (`label`, `confidence`/`score`, `box`/`bbox` or `x,y,w,h`).
    pub boxes: Vec<Value>,
}

/// One rule fire.
#[derive(Debug, Clone, Serialize)]
pub struct Fire {
    pub unix_ms: u64,
    pub rule: String,
    pub outputs: Vec<String>,
}

/// What a rule last did to an output.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OutputState {
    /// `Some(true)` after an activate (or during a pulse), `Some(false)`
    /// after a deactivate: the level last commanded, for GPIO outputs.
    pub level: Option<bool>,
    pub last_action: Option<String>,
    pub last_unix_ms: Option<u64>,
}

/// A rule went on or off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleChange {
    pub rule: String,
    pub on: bool,
}

/// See the module doc.
pub struct LiveFeed {
    /// Open status pages: detections are copied only while this is not 0.
    watchers: AtomicUsize,
    /// Detection boxes seen in items, all the time (Home Assistant's
    /// detections-per-minute sensor).
    detections_total: AtomicU64,
    latest: std::sync::Mutex<Option<Detections>>,
    fires: std::sync::Mutex<VecDeque<Fire>>,
    outputs: std::sync::Mutex<BTreeMap<String, OutputState>>,
    rules_on: std::sync::Mutex<BTreeMap<String, bool>>,
    changes: broadcast::Sender<RuleChange>,
    /// The rules' names, sent when a reload changes them, so Home
    /// Assistant discovery can announce new rules and retract removed ones;
    /// `None` until the rules task first reports (no rules is `Some([])`).
    names: watch::Sender<Option<Vec<String>>>,
}

impl Default for LiveFeed {
    fn default() -> Self {
        Self {
            watchers: AtomicUsize::new(0),
            detections_total: AtomicU64::new(0),
            latest: Default::default(),
            fires: Default::default(),
            outputs: Default::default(),
            rules_on: Default::default(),
            changes: broadcast::channel(256).0,
            names: watch::channel(None).0,
        }
    }
}

impl std::fmt::Debug for LiveFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveFeed")
            .field("watchers", &self.watchers.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Keeps detections flowing into the feed while it lives.
pub struct Watching(Arc<LiveFeed>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl LiveFeed {
    pub fn watch(self: &Arc<Self>) -> Watching {
        self.watchers.fetch_add(1, Ordering::AcqRel);
        Watching(self.clone())
    }

    /// An item reached the rules: count its boxes; keep them if a page is open.
    pub fn item(&self, item: &Item) {
        let Some(boxes) = item
            .json_payload()
            .and_then(|v| v.get("boxes"))
            .and_then(Value::as_array)
        else {
            return;
        };
        self.detections_total
            .fetch_add(boxes.len() as u64, Ordering::Relaxed);
        if self.watchers.load(Ordering::Acquire) == 0 {
            return;
        }
        *self.latest.lock_ignoring_poison() = Some(Detections {
            channel: item.channel.to_string(),
            seq: item.seq,
            unix_ms: unix_ms(),
            boxes: boxes.iter().take(BOXES_KEPT).cloned().collect(),
        });
    }

    /// The effects of one step of the rules: fires for the timeline, and
    /// each output's last commanded state. Releases (a hold ran out) are not
    /// fires. Returns the rules that fired.
    pub fn effects(&self, effects: &[Effect]) -> Vec<Arc<str>> {
        if effects.is_empty() {
            return Vec::new();
        }
        let now = unix_ms();
        let mut fired: Vec<Fire> = Vec::new();
        let mut fired_rules = Vec::new();
        {
            let mut outputs = self.outputs.lock_ignoring_poison();
            for e in effects {
                let state = outputs.entry(e.output.to_string()).or_default();
                let (level, action) = match e.action {
                    OutputAction::Activate => (Some(true), "activate"),
                    OutputAction::Deactivate => (Some(false), "deactivate"),
                    OutputAction::Pulse { .. } => (Some(false), "pulse"),
                    OutputAction::Deliver => (state.level, "deliver"),
                };
                state.level = level;
                state.last_action = Some(action.to_string());
                state.last_unix_ms = Some(now);
                let release = e.item.is_none() && e.action == OutputAction::Deactivate;
                if release {
                    continue;
                }
                match fired.iter_mut().find(|f| *f.rule == *e.rule) {
                    Some(f) => f.outputs.push(e.output.to_string()),
                    None => {
                        fired_rules.push(e.rule.clone());
                        fired.push(Fire {
                            unix_ms: now,
                            rule: e.rule.to_string(),
                            outputs: vec![e.output.to_string()],
                        });
                    }
                }
            }
        }
        let mut fires = self.fires.lock_ignoring_poison();
        for f in fired {
            if fires.len() == FIRES_KEPT {
                fires.pop_front();
            }
            fires.push_back(f);
        }
        fired_rules
    }

    /// Each rule's state after a step: on while it holds, and on for the
    /// step in which it fired (a rule without `hold` is on for an instant).
    /// Changes go to [`LiveFeed::subscribe`]rs.
    pub fn rule_states<'a>(
        &self,
        held: impl Iterator<Item = (&'a Arc<str>, bool)>,
        fired: &[Arc<str>],
    ) {
        let mut on = self.rules_on.lock_ignoring_poison();
        let mut seen = Vec::new();
        let mut renamed = false;
        for (rule, held) in held {
            seen.push(rule.clone());
            let now_on = held || fired.iter().any(|f| f == rule);
            let before = on.insert(rule.to_string(), now_on);
            renamed |= before.is_none();
            if before != Some(now_on) {
                let _ = self.changes.send(RuleChange {
                    rule: rule.to_string(),
                    on: now_on,
                });
            }
            // A rule without hold that fired goes off again at once.
            if now_on && !held {
                on.insert(rule.to_string(), false);
                let _ = self.changes.send(RuleChange {
                    rule: rule.to_string(),
                    on: false,
                });
            }
        }
        // Rules removed by a reload.
        let count = on.len();
        on.retain(|r, _| seen.iter().any(|s| **s == **r));
        if renamed || on.len() != count || self.names.borrow().is_none() {
            self.names.send_replace(Some(on.keys().cloned().collect()));
        }
    }

    /// The rules' names (sorted), changed when a reload adds or removes one;
    /// `None` before the rules task's first step.
    pub fn rule_names(&self) -> watch::Receiver<Option<Vec<String>>> {
        self.names.subscribe()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<RuleChange> {
        self.changes.subscribe()
    }

    pub fn detections_total(&self) -> u64 {
        self.detections_total.load(Ordering::Relaxed)
    }

    pub fn latest_detections(&self) -> Option<Detections> {
        self.latest.lock_ignoring_poison().clone()
    }

    pub fn fires(&self) -> Vec<Fire> {
        self.fires.lock_ignoring_poison().iter().cloned().collect()
    }

    pub fn output_states(&self) -> BTreeMap<String, OutputState> {
        self.outputs.lock_ignoring_poison().clone()
    }

    pub fn rules_on(&self) -> BTreeMap<String, bool> {
        self.rules_on.lock_ignoring_poison().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokio::time::Instant;

    fn item(v: Value) -> Item {
        Item::json(Arc::from("data"), 1, Instant::now(), v)
    }

    fn effect(rule: &str, output: &str, action: OutputAction, with_item: bool) -> Effect {
        Effect {
            rule: Arc::from(rule),
            output: Arc::from(output),
            action,
            item: with_item.then(|| Arc::new(item(json!({})))),
        }
    }

    #[test]
    fn boxes_are_counted_always_and_kept_only_while_watched() {
        let feed = Arc::new(LiveFeed::default());
        let boxes = json!({"boxes": [{"label": "ball", "box": [0, 0, 1, 1]}]});
        feed.item(&item(boxes.clone()));
        assert_eq!(feed.detections_total(), 1);
        assert!(feed.latest_detections().is_none());
        let w = feed.watch();
        feed.item(&item(boxes));
        assert_eq!(feed.latest_detections().unwrap().boxes.len(), 1);
        drop(w);
        assert_eq!(feed.watchers.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_fire_is_one_timeline_entry_and_a_release_is_none() {
        let feed = LiveFeed::default();
        let fired = feed.effects(&[
            effect("r", "gpio", OutputAction::Activate, true),
            effect("r", "log", OutputAction::Deliver, true),
        ]);
        assert_eq!(fired.len(), 1);
        feed.effects(&[effect("r", "gpio", OutputAction::Deactivate, false)]);
        let fires = feed.fires();
        assert_eq!(fires.len(), 1);
        assert_eq!(fires[0].outputs, ["gpio", "log"]);
        assert_eq!(feed.output_states()["gpio"].level, Some(false));
    }

    #[test]
    fn rule_changes_are_sent_once_and_removed_rules_forgotten() {
        let feed = LiveFeed::default();
        let mut rx = feed.subscribe();
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        feed.rule_states([(&a, true), (&b, false)].into_iter(), &[]);
        feed.rule_states([(&a, true), (&b, false)].into_iter(), &[]);
        let got: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(
            got,
            [
                RuleChange {
                    rule: "a".into(),
                    on: true
                },
                RuleChange {
                    rule: "b".into(),
                    on: false
                }
            ]
        );
        feed.rule_states([(&b, false)].into_iter(), std::slice::from_ref(&b));
        let got: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(got.len(), 2, "b pulses on and off: {got:?}");
        assert_eq!(feed.rules_on().keys().collect::<Vec<_>>(), ["b"]);
    }

    #[test]
    fn rule_names_change_only_when_the_set_does() {
        let feed = LiveFeed::default();
        let mut names = feed.rule_names();
        assert_eq!(*names.borrow(), None, "not reported yet");
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        feed.rule_states([(&a, false), (&b, false)].into_iter(), &[]);
        assert!(names.has_changed().unwrap());
        assert_eq!(
            *names.borrow_and_update(),
            Some(vec!["a".into(), "b".into()])
        );
        feed.rule_states([(&a, true), (&b, false)].into_iter(), &[]);
        assert!(!names.has_changed().unwrap(), "a state change is no rename");
        feed.rule_states([(&a, true)].into_iter(), &[]);
        assert_eq!(*names.borrow_and_update(), Some(vec!["a".into()]));
        // No rules at all is a report too.
        let empty = LiveFeed::default();
        empty.rule_states(std::iter::empty(), &[]);
        assert_eq!(*empty.rule_names().borrow(), Some(vec![]));
    }
}
