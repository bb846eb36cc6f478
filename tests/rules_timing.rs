//! Rule engine behaviour with constructed or paused time: every timing mode,
//! ordering, clock jumps, channel conditions, zones, conditions and every
//! validation error.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::time::{Duration, Instant};
use trickle_edge::data::{Item, Payload};
use trickle_edge::rules::{ChannelEvent, Effect, OutputAction, RuleConfig, RuleError, RuleSet};

fn ruleset(rules: Value) -> RuleSet {
    RuleSet::new(configs(rules)).expect("valid rules")
}

fn configs(rules: Value) -> Vec<RuleConfig> {
    serde_json::from_value(rules).expect("rules deserialize")
}

/// A clock: `at(ms)` is `ms` milliseconds after a fixed start.
fn clock() -> impl Fn(u64) -> Instant {
    let t0 = Instant::now();
    move |ms| t0 + Duration::from_millis(ms)
}

fn item(v: Value) -> Item {
    Item::json("data".into(), 1, Instant::now(), v)
}

/// A detection with one box; `(x, y)` is the box's top-left, 0.1 square.
fn det(label: &str, confidence: f64, x: f64, y: f64) -> Item {
    item(json!({"type": "detection", "boxes": [
        {"label": label, "confidence": confidence, "x": x, "y": y, "w": 0.1, "h": 0.1}
    ]}))
}

fn person() -> Item {
    det("person", 0.9, 0.1, 0.1)
}

fn nobody() -> Item {
    item(json!({"type": "detection", "boxes": []}))
}

/// `(output, action)` pairs, the part of effects most tests care about.
fn acts(effects: &[Effect]) -> Vec<(String, OutputAction)> {
    effects
        .iter()
        .map(|e| (e.output.to_string(), e.action.clone()))
        .collect()
}

fn pulse() -> (String, OutputAction) {
    ("door".into(), OutputAction::Pulse { ms: 500 })
}

fn door_rule(extra: Value) -> Value {
    let mut rule = json!({
        "name": "door",
        "match": {"type": "detection", "any": "/boxes", "label": "person", "min_confidence": 0.6},
        "then": [{"output": "door", "action": "pulse", "ms": 500}]
    });
    rule.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    json!([rule])
}

#[test]
fn no_timing_fires_on_every_match() {
    let at = clock();
    let mut rs = ruleset(door_rule(json!({})));
    let e = rs.on_item(&person(), at(0));
    assert_eq!(acts(&e), [pulse()]);
    assert_eq!(&*e[0].rule, "door");
    assert_eq!(
        e[0].item.as_ref().map(|i| &i.payload),
        Some(&person().payload)
    );
    assert!(rs.on_item(&nobody(), at(1)).is_empty());
    assert!(
        rs.on_item(&det("person", 0.5, 0.1, 0.1), at(2)).is_empty(),
        "below min_confidence"
    );
    assert!(rs.on_item(&det("dog", 0.9, 0.1, 0.1), at(3)).is_empty());
    assert_eq!(rs.stats().fires, 1);
}

#[test]
fn debounce_n_of_m() {
    let at = clock();
    let mut rs = ruleset(door_rule(json!({"debounce": "2 of 3"})));
    assert!(rs.on_item(&person(), at(0)).is_empty()); // [T]
    assert!(rs.on_item(&nobody(), at(100)).is_empty()); // [T F]
    assert_eq!(acts(&rs.on_item(&person(), at(200))), [pulse()]); // [T F T]
    assert!(rs.on_item(&nobody(), at(300)).is_empty()); // [F T F]: a non-match never fires
    assert!(rs.on_item(&nobody(), at(400)).is_empty()); // [T F F]
    assert!(rs.on_item(&person(), at(500)).is_empty()); // [F F T]
    assert_eq!(acts(&rs.on_item(&person(), at(600))), [pulse()]); // [F T T]
}

#[test]
fn debounce_duration_fires_from_items_and_ticks() {
    let at = clock();
    let mut rs = ruleset(door_rule(json!({"debounce": "500ms"})));
    assert!(rs.on_item(&person(), at(0)).is_empty());
    assert!(rs.on_item(&person(), at(300)).is_empty());
    assert_eq!(rs.next_deadline(), Some(at(500)));
    assert!(rs.on_tick(at(499)).is_empty());
    let e = rs.on_tick(at(500));
    assert_eq!(acts(&e), [pulse()]);
    assert!(e[0].item.is_some(), "a timer fire carries the latest match");
    assert_eq!(rs.next_deadline(), None);

    // Once reached, every further match of the run counts (like "N of M"):
    // cooldown, hold or rate_limit decide how often that fires.
    assert_eq!(acts(&rs.on_item(&person(), at(550))), [pulse()]);

    // A non-match breaks the run. Without a tick, the next call first fires
    // the timer at its deadline (1200), then evaluates its own item (1300).
    assert!(rs.on_item(&nobody(), at(600)).is_empty());
    assert!(rs.on_item(&person(), at(700)).is_empty());
    assert!(rs.on_item(&person(), at(1100)).is_empty());
    let e = rs.on_item(&person(), at(1300));
    assert_eq!(acts(&e), [pulse(), pulse()]);
    assert_ne!(e[0].item, e[1].item);

    // A run broken before the duration never fires.
    rs.on_item(&nobody(), at(2000));
    rs.on_item(&person(), at(2100));
    rs.on_item(&nobody(), at(2400));
    assert!(rs.on_tick(at(5000)).is_empty());
    assert_eq!(rs.stats().fires, 4);
}

#[test]
fn cooldown_suppresses_fires() {
    let at = clock();
    let mut rs = ruleset(door_rule(json!({"cooldown": "10s"})));
    assert_eq!(acts(&rs.on_item(&person(), at(0))), [pulse()]);
    assert!(rs.on_item(&person(), at(5_000)).is_empty());
    assert!(rs.on_item(&person(), at(9_999)).is_empty());
    assert_eq!(rs.stats().suppressed_cooldown, 2);
    assert_eq!(acts(&rs.on_item(&person(), at(10_000))), [pulse()]);
}

#[tokio::test(start_paused = true)]
async fn hold_keeps_output_active_until_matches_stop() {
    let mut rs = ruleset(json!([{
        "name": "light",
        "match": {"label": "person"},
        "hold": "5s",
        "then": [{"output": "lamp", "action": "hold"}, {"output": "log"}]
    }]));
    let start = Instant::now();
    let e = rs.on_item(&person(), Instant::now());
    assert_eq!(
        acts(&e),
        [
            ("lamp".into(), OutputAction::Activate),
            ("log".into(), OutputAction::Deliver)
        ]
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(
        rs.on_item(&person(), Instant::now()).is_empty(),
        "held: no new effects"
    );
    tokio::time::advance(Duration::from_secs(4)).await;
    assert!(
        rs.on_item(&person(), Instant::now()).is_empty(),
        "held: extended to 11 s"
    );
    assert_eq!(rs.next_deadline(), Some(start + Duration::from_secs(11)));

    // Sleep exactly until the next deadline, as the agent's loop does.
    tokio::time::sleep_until(rs.next_deadline().unwrap()).await;
    let e = rs.on_tick(Instant::now());
    assert_eq!(acts(&e), [("lamp".into(), OutputAction::Deactivate)]);
    assert!(e[0].item.is_none());
    assert_eq!(rs.next_deadline(), None);

    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        rs.on_item(&person(), Instant::now()).len(),
        2,
        "fires again after release"
    );
}

#[test]
fn hold_is_extended_by_raw_matches_under_debounce() {
    let at = clock();
    let mut rs = ruleset(json!([{
        "name": "light", "match": {"label": "person"}, "debounce": "2 of 2", "hold": "1s",
        "then": [{"output": "lamp", "action": "hold"}]
    }]));
    rs.on_item(&person(), at(0));
    assert_eq!(
        acts(&rs.on_item(&person(), at(100))),
        [("lamp".into(), OutputAction::Activate)]
    );
    rs.on_item(&nobody(), at(900));
    rs.on_item(&person(), at(1000)); // one match in [F T]: not debounced, still extends
    assert!(rs.on_tick(at(1999)).is_empty());
    assert_eq!(
        acts(&rs.on_tick(at(2000))),
        [("lamp".into(), OutputAction::Deactivate)]
    );
}

#[test]
fn late_tick_processes_timers_at_their_deadlines() {
    let at = clock();
    let mut rs = ruleset(json!([{
        "name": "light", "match": {"label": "person"}, "debounce": "500ms", "hold": "1s",
        "then": [{"output": "lamp", "action": "hold"}]
    }]));
    rs.on_item(&person(), at(0));
    // One tick long after: fire at 500 ms, release at 1.5 s, in that order.
    assert_eq!(
        acts(&rs.on_tick(at(10_000))),
        [
            ("lamp".into(), OutputAction::Activate),
            ("lamp".into(), OutputAction::Deactivate)
        ]
    );
}

#[test]
fn rate_limit_is_a_sliding_window() {
    let at = clock();
    let mut rs = ruleset(door_rule(json!({"rate_limit": "2/1m"})));
    assert_eq!(rs.on_item(&person(), at(0)).len(), 1);
    assert_eq!(rs.on_item(&person(), at(10_000)).len(), 1);
    assert!(rs.on_item(&person(), at(20_000)).is_empty());
    assert!(rs.on_item(&person(), at(59_999)).is_empty());
    assert_eq!(
        rs.on_item(&person(), at(60_000)).len(),
        1,
        "the 0 s fire left the window"
    );
    assert!(rs.on_item(&person(), at(61_000)).is_empty());
    assert_eq!(rs.on_item(&person(), at(70_000)).len(), 1);
    assert_eq!(rs.stats().suppressed_rate_limit, 3);
}

#[test]
fn out_of_order_items_are_ignored_and_counted() {
    let at = clock();
    let mut rs = ruleset(
        json!([{"name": "any", "match": {"type": "detection"}, "then": [{"output": "log"}]}]),
    );
    let stamped = |ts: Value| item(json!({"type": "detection", "timestamp": ts}));
    assert_eq!(rs.on_item(&stamped(json!(5.0)), at(0)).len(), 1);
    assert!(rs.on_item(&stamped(json!(4.0)), at(1)).is_empty());
    assert_eq!(rs.stats().out_of_order, 1);
    assert_eq!(
        rs.on_item(&stamped(json!(5.0)), at(2)).len(),
        1,
        "same time is in order (batches)"
    );
    // `ts` in milliseconds compares with seconds.
    let ts_ms = |ms: u64| item(json!({"type": "detection", "ts": ms}));
    assert_eq!(rs.on_item(&ts_ms(1_764_000_000_500), at(3)).len(), 1);
    assert!(rs.on_item(&ts_ms(1_764_000_000_400), at(4)).is_empty());
    // Ordering is per channel: another channel's clock is its own.
    let mut other = stamped(json!(1.0));
    other.channel = Arc::from("events");
    assert_eq!(rs.on_item(&other, at(5)).len(), 1);
    // Items without a numeric timestamp are never out of order.
    assert_eq!(rs.on_item(&stamped(json!("soon")), at(6)).len(), 1);
    assert_eq!(rs.stats().out_of_order, 2);
}

/// Issue 15: one item with `"timestamp": 1e300` made every later item on
/// the channel "out of order". A far-future timestamp now costs nothing to
/// the items after it: it is not ordered by, and it is counted.
#[test]
fn a_far_future_timestamp_does_not_poison_later_items() {
    let at = clock();
    let mut rs = ruleset(
        json!([{"name": "any", "match": {"type": "detection"}, "then": [{"output": "log"}]}]),
    );
    let stamped = |ts: Value| item(json!({"type": "detection", "timestamp": ts}));
    let now = rs.wall_at(at(0));
    assert_eq!(rs.on_item(&stamped(json!(now)), at(0)).len(), 1);
    // Hostile or broken: evaluated like an item without a timestamp.
    assert_eq!(rs.on_item(&stamped(json!(1e300)), at(1)).len(), 1);
    assert_eq!(rs.stats().untrusted_timestamps, 1);
    // Every later, honest item is still in order.
    for i in 1..=20 {
        let ts = now + f64::from(i) * 0.033;
        assert_eq!(
            rs.on_item(&stamped(json!(ts)), at(1 + i as u64)).len(),
            1,
            "item {i}"
        );
    }
    assert_eq!(rs.stats().out_of_order, 0);
    // Milliseconds far ahead are caught the same way.
    let ms = (now + 86_400.0) * 1000.0;
    assert_eq!(
        rs.on_item(&item(json!({"type": "detection", "ts": ms})), at(30))
            .len(),
        1
    );
    assert_eq!(rs.stats().untrusted_timestamps, 2);
    assert_eq!(rs.on_item(&stamped(json!(now + 1.0)), at(31)).len(), 1);
    assert_eq!(rs.stats().out_of_order, 0);
}

/// A sender whose clock runs an hour ahead still drives the rules (its
/// items are counted as untrusted), and within the tolerance a clock a few
/// minutes ahead is still ordered by.
#[test]
fn a_sender_clock_ahead_is_tolerated_or_not_ordered_by() {
    let at = clock();
    let mut rs = ruleset(
        json!([{"name": "any", "match": {"type": "detection"}, "then": [{"output": "log"}]}]),
    );
    let stamped = |ts: f64| item(json!({"type": "detection", "timestamp": ts}));
    let now = rs.wall_at(at(0));
    // Five minutes ahead: within FUTURE_TOLERANCE, ordered.
    assert_eq!(rs.on_item(&stamped(now + 300.0), at(0)).len(), 1);
    assert!(rs.on_item(&stamped(now + 299.0), at(1)).is_empty());
    assert_eq!(rs.stats().out_of_order, 1);
    assert_eq!(rs.stats().untrusted_timestamps, 0);
    // An hour ahead, steadily: every item evaluated, none ordered by.
    for i in 0..10 {
        assert_eq!(
            rs.on_item(&stamped(now + 3600.0 + f64::from(i)), at(2 + i as u64))
                .len(),
            1
        );
    }
    assert_eq!(rs.stats().untrusted_timestamps, 10);
    // The wall clock moves with `now`: what was ahead becomes trusted.
    let later = at(0) + Duration::from_secs(3600);
    assert_eq!(rs.on_item(&stamped(now + 3600.0), later).len(), 1);
    assert_eq!(rs.stats().untrusted_timestamps, 10);
}

#[test]
fn clock_jump_back_counts_as_no_time_passing() {
    let at = clock();
    let mut rs = ruleset(json!([{
        "name": "light", "match": {"label": "person"}, "hold": "5s", "cooldown": "10s",
        "then": [{"output": "lamp", "action": "hold"}]
    }]));
    assert_eq!(rs.on_item(&person(), at(10_000)).len(), 1);
    assert!(rs.on_tick(at(5_000)).is_empty());
    assert!(
        rs.on_item(&person(), at(1_000)).is_empty(),
        "treated as 10 s: held"
    );
    assert_eq!(rs.stats().clock_jumps, 2);
    assert!(rs.on_tick(at(14_999)).is_empty());
    assert_eq!(
        acts(&rs.on_tick(at(15_000))),
        [("lamp".into(), OutputAction::Deactivate)]
    );
    // Back again, after the release: cooldown still measured from 10 s.
    assert!(rs.on_item(&person(), at(0)).is_empty());
    assert_eq!(rs.stats().suppressed_cooldown, 1);

    let mut rs = ruleset(door_rule(json!({"debounce": "500ms"})));
    rs.on_item(&person(), at(10_000));
    assert!(
        rs.on_item(&person(), at(0)).is_empty(),
        "no spurious fire from a jump"
    );
    assert!(rs.on_tick(at(10_499)).is_empty());
    assert_eq!(rs.on_tick(at(10_500)).len(), 1);
}

#[test]
fn no_data_fires_after_silence_once_per_silence() {
    let at = clock();
    let mut rs = ruleset(json!([{
        "name": "stale", "on": "no_data", "after": "30s", "then": [{"output": "led", "action": "set"}]
    }]));
    assert_eq!(rs.next_deadline(), None, "not started");
    assert!(rs.on_tick(at(0)).is_empty());
    assert_eq!(rs.next_deadline(), Some(at(30_000)));
    assert!(
        rs.on_channel_event(ChannelEvent::Data, at(20_000))
            .is_empty()
    );
    assert!(
        rs.on_item(&person(), at(45_000)).is_empty(),
        "items do not feed no_data"
    );
    assert!(rs.on_tick(at(49_999)).is_empty());
    let e = rs.on_tick(at(50_000));
    assert_eq!(acts(&e), [("led".into(), OutputAction::Activate)]);
    assert!(e[0].item.is_none());
    assert!(rs.on_tick(at(100_000)).is_empty(), "fires once per silence");
    assert_eq!(rs.next_deadline(), None);
    rs.on_channel_event(ChannelEvent::Data, at(110_000));
    assert_eq!(rs.on_tick(at(140_000)).len(), 1);
}

#[test]
fn pipeline_dead_and_reconnected_rules() {
    let at = clock();
    let mut rs = ruleset(json!([
        {"name": "dead", "on": "pipeline_dead", "then": [{"output": "alarm", "action": "set"}]},
        {"name": "back", "on": "reconnected", "cooldown": "1m", "then": [{"output": "alarm", "action": "clear"}]}
    ]));
    assert!(rs.on_channel_event(ChannelEvent::Data, at(0)).is_empty());
    assert!(rs.on_item(&person(), at(1)).is_empty());
    let e = rs.on_channel_event(ChannelEvent::PipelineDead, at(2));
    assert_eq!(acts(&e), [("alarm".into(), OutputAction::Activate)]);
    assert_eq!(&*e[0].rule, "dead");
    let e = rs.on_channel_event(ChannelEvent::Reconnected, at(3));
    assert_eq!(acts(&e), [("alarm".into(), OutputAction::Deactivate)]);
    assert!(
        rs.on_channel_event(ChannelEvent::Reconnected, at(4))
            .is_empty(),
        "cooldown applies"
    );
}

#[test]
fn zone_rect_uses_box_centre() {
    let at = clock();
    let mut rs = ruleset(json!([{
        "name": "porch", "match": {"label": ["person", "car"], "zone": {"rect": [0.0, 0.0, 0.5, 0.5]}},
        "then": [{"output": "log"}]
    }]));
    assert_eq!(rs.on_item(&det("person", 0.9, 0.1, 0.1), at(0)).len(), 1);
    assert_eq!(
        rs.on_item(&det("car", 0.9, 0.4, 0.4), at(1)).len(),
        1,
        "centre 0.45 is inside"
    );
    assert!(
        rs.on_item(&det("car", 0.9, 0.46, 0.1), at(2)).is_empty(),
        "centre 0.51 is outside"
    );
    assert!(rs.on_item(&det("dog", 0.9, 0.1, 0.1), at(3)).is_empty());
    let bbox =
        item(json!({"boxes": [{"label": "person", "score": 0.3, "bbox": [0.1, 0.1, 0.3, 0.3]}]}));
    assert_eq!(rs.on_item(&bbox, at(4)).len(), 1);
    let no_box = item(json!({"boxes": [{"label": "person"}]}));
    assert!(rs.on_item(&no_box, at(5)).is_empty(), "a zone needs a box");
}

#[test]
fn zone_polygon_uses_box_centre() {
    let at = clock();
    let mut rs = ruleset(json!([{
        "name": "drive", "match": {"any": "/objects", "zone": {"polygon": [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]}},
        "then": [{"output": "log"}]
    }]));
    let at_pos = |x: f64, y: f64| item(json!({"objects": [{"x": x, "y": y, "w": 0.1, "h": 0.1}]}));
    assert_eq!(rs.on_item(&at_pos(0.2, 0.2), at(0)).len(), 1);
    assert!(rs.on_item(&at_pos(0.7, 0.7), at(1)).is_empty());
    assert!(
        rs.on_item(&item(json!({"objects": "none"})), at(2))
            .is_empty()
    );
}

#[test]
fn where_conditions() {
    let at = clock();
    let mut rs = ruleset(json!([
        {"name": "crowd", "where": [{"path": "/people_count", "ge": 3, "lt": 10}, {"path": "/alarm", "eq": true}],
         "then": [{"output": "a"}]},
        {"name": "zone", "where": [{"path": "/occupancy/zone_a", "eq": 2}], "then": [{"output": "b"}]},
        {"name": "kind", "where": [{"path": "/type", "one_of": ["metrics", "status"]}], "then": [{"output": "c"}]},
        {"name": "gate", "where": [{"path": "/text", "regex": "(?i)open .*gate"}], "then": [{"output": "d"}]},
        {"name": "text", "where": [{"path": "", "regex": "front door"}], "then": [{"output": "e"}]},
        {"name": "hot", "where": [{"path": "/t", "gt": 30.5}, {"path": "/t", "le": 40}], "then": [{"output": "f"}]}
    ]));
    let outputs = |e: Vec<Effect>| e.iter().map(|e| e.output.to_string()).collect::<Vec<_>>();
    let metrics = item(
        json!({"type": "metrics", "people_count": 3, "occupancy": {"zone_a": 2.0}, "alarm": true}),
    );
    assert_eq!(outputs(rs.on_item(&metrics, at(0))), ["a", "b", "c"]);
    let few = item(json!({"type": "metrics", "people_count": 2, "alarm": true}));
    assert_eq!(outputs(rs.on_item(&few, at(1))), ["c"]);
    let speech = item(json!({"type": "transcription", "text": "Open the gate please"}));
    assert_eq!(outputs(rs.on_item(&speech, at(2))), ["d"]);
    let mut text = item(json!(null));
    text.payload = Payload::Text("person detected at the front door".into());
    assert_eq!(outputs(rs.on_item(&text, at(3))), ["e"]);
    assert_eq!(outputs(rs.on_item(&item(json!({"t": 35})), at(4))), ["f"]);
    assert!(rs.on_item(&item(json!({"t": 30.5})), at(5)).is_empty());
    assert!(
        rs.on_item(&item(json!({"t": "35"})), at(6)).is_empty(),
        "strings are not numbers"
    );
}

#[test]
fn binary_items_match_only_unconditional_rules() {
    let at = clock();
    let mut rs = ruleset(json!([
        {"name": "all", "then": [{"output": "log"}]},
        {"name": "typed", "where": [{"path": "", "regex": "."}], "then": [{"output": "x"}]}
    ]));
    let mut bin = item(json!(null));
    bin.payload = Payload::Binary {
        size: 3,
        sha256: [0; 32],
    };
    let e = rs.on_item(&bin, at(0));
    assert_eq!(acts(&e), [("log".into(), OutputAction::Deliver)]);
}

#[test]
fn actions_map_to_output_actions() {
    let at = clock();
    let mut rs = ruleset(json!([{
        "name": "all", "hold": "1s",
        "then": [{"output": "a", "action": "set"}, {"output": "b", "action": "clear"},
                 {"output": "c", "action": "pulse", "ms": 250}, {"output": "d", "action": "hold"}, {"output": "e"}]
    }]));
    assert_eq!(
        acts(&rs.on_item(&person(), at(0))),
        [
            ("a".into(), OutputAction::Activate),
            ("b".into(), OutputAction::Deactivate),
            ("c".into(), OutputAction::Pulse { ms: 250 }),
            ("d".into(), OutputAction::Activate),
            ("e".into(), OutputAction::Deliver)
        ]
    );
    assert_eq!(
        acts(&rs.on_tick(at(1000))),
        [("d".into(), OutputAction::Deactivate)]
    );
}

fn build_err(rule: Value) -> RuleError {
    RuleSet::new(configs(json!([rule]))).expect_err("invalid rule")
}

fn with(extra: Value) -> Value {
    let mut rule = json!({"name": "r", "then": [{"output": "o"}]});
    rule.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    rule
}

#[test]
fn every_validation_error_names_rule_and_field() {
    let pointer_msg = "must be empty or start with `/`, and `~` must be `~0` or `~1`";
    let cases: Vec<(Value, String)> = vec![
        (with(json!({"name": " "})), "rule ` `: `name`: a rule needs a non-empty name".into()),
        (
            with(json!({"where": [{"path": "a/b", "eq": 1}]})),
            format!("rule `r`: `where[0].path`: invalid JSON pointer \"a/b\": {pointer_msg}"),
        ),
        (
            with(json!({"match": {"any": "/boxes~2"}})),
            format!("rule `r`: `match.any`: invalid JSON pointer \"/boxes~2\": {pointer_msg}"),
        ),
        (
            with(json!({"cooldown": "10x"})),
            "rule `r`: `cooldown`: invalid duration \"10x\": expected e.g. \"500ms\", \"10s\", \"2m\", \"1h\" or \"1m30s\"".into(),
        ),
        (
            with(json!({"hold": "5"})),
            "rule `r`: `hold`: invalid duration \"5\": expected e.g. \"500ms\", \"10s\", \"2m\", \"1h\" or \"1m30s\"".into(),
        ),
        (
            with(json!({"match": {"min_confidence": 1.5}})),
            "rule `r`: `match.min_confidence`: confidence 1.5 is outside 0..=1".into(),
        ),
        (
            with(json!({"match": {"min_confidence": -0.1}})),
            "rule `r`: `match.min_confidence`: confidence -0.1 is outside 0..=1".into(),
        ),
        (
            with(json!({"match": {"zone": {"polygon": [[0, 0], [1, 1]]}}})),
            "rule `r`: `match.zone.polygon`: a polygon needs at least 3 points, got 2".into(),
        ),
        (
            with(json!({"match": {"zone": {"rect": [0.5, 0, 0.1, 1]}}})),
            "rule `r`: `match.zone.rect`: rect [x0, y0, x1, y1] needs x0 <= x1 and y0 <= y1".into(),
        ),
        (
            with(json!({"debounce": "0 of 3"})),
            "rule `r`: `debounce`: N must be at least 1 in \"N of M\"".into(),
        ),
        (
            with(json!({"debounce": "4 of 3"})),
            "rule `r`: `debounce`: N (4) is greater than M (3) in \"N of M\"".into(),
        ),
        (
            with(json!({"debounce": "2 of 5000"})),
            "rule `r`: `debounce`: M (5000) is over the limit of 1000".into(),
        ),
        (
            with(json!({"debounce": "soon"})),
            "rule `r`: `debounce`: invalid debounce \"soon\": expected \"N of M\" (e.g. \"2 of 3\") or a duration".into(),
        ),
        (
            with(json!({"rate_limit": "5"})),
            "rule `r`: `rate_limit`: invalid rate limit \"5\": expected \"N/duration\", e.g. \"5/1m\"".into(),
        ),
        (
            with(json!({"rate_limit": "0/1m"})),
            "rule `r`: `rate_limit`: a rate limit needs N >= 1 and a non-zero window".into(),
        ),
        (
            with(json!({"rate_limit": "5/1y"})),
            "rule `r`: `rate_limit`: invalid duration \"1y\": expected e.g. \"500ms\", \"10s\", \"2m\", \"1h\" or \"1m30s\"".into(),
        ),
        (
            with(json!({"where": [{"path": "/a"}]})),
            "rule `r`: `where[0].path`: condition has no operator: use eq, one_of, gt, ge, lt, le or regex".into(),
        ),
        (
            with(json!({"cooldown": "9000h"})),
            "rule `r`: `cooldown`: duration \"9000h\" is longer than the maximum of 366 days".into(),
        ),
        (with(json!({"then": []})), "rule `r`: `then`: a rule needs at least one action".into()),
        (
            with(json!({"then": [{"output": "o"}, {"output": ""}]})),
            "rule `r`: `then[1].output`: output name is empty".into(),
        ),
        (
            with(json!({"then": [{"output": "o", "action": "pulse"}]})),
            "rule `r`: `then[0].ms`: `action = \"pulse\"` needs `ms` >= 1".into(),
        ),
        (
            with(json!({"then": [{"output": "o", "action": "set", "ms": 5}]})),
            "rule `r`: `then[0].ms`: `ms` is only used with `action = \"pulse\"`".into(),
        ),
        (
            with(json!({"then": [{"output": "o", "action": "hold"}]})),
            "rule `r`: `then[0].action`: `action = \"hold\"` needs the rule's `hold` duration".into(),
        ),
        (with(json!({"on": "no_data"})), "rule `r`: `after`: `on = \"no_data\"` needs `after`".into()),
        (
            with(json!({"on": "pipeline_dead", "after": "5s"})),
            "rule `r`: `after`: `after` is only used with `on = \"no_data\"`".into(),
        ),
        (
            with(json!({"after": "5s"})),
            "rule `r`: `after`: `after` is only used with `on = \"no_data\"`".into(),
        ),
        (
            with(json!({"on": "reconnected", "match": {"type": "x"}})),
            "rule `r`: `match`: not allowed in a channel-condition rule (`on`)".into(),
        ),
        (
            with(json!({"on": "no_data", "after": "1s", "debounce": "2 of 3"})),
            "rule `r`: `debounce`: not allowed in a channel-condition rule (`on`)".into(),
        ),
    ];
    for (rule, expected) in cases {
        assert_eq!(build_err(rule.clone()).to_string(), expected, "{rule}");
    }
}

#[test]
fn bad_regex_error_names_field() {
    let err = build_err(with(
        json!({"where": [{"path": "/text", "regex": "(unclosed"}]}),
    ));
    let msg = err.to_string();
    assert!(
        msg.starts_with("rule `r`: `where[0].regex`: invalid regex: "),
        "{msg}"
    );
    assert!(msg.contains("unclosed"), "{msg}");
}

#[test]
fn duplicate_names_are_rejected() {
    let err = RuleSet::new(configs(json!([with(json!({})), with(json!({}))]))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "rule `r`: `name`: another rule has the same name"
    );
}

#[test]
fn unknown_fields_are_rejected() {
    let err = serde_json::from_value::<Vec<RuleConfig>>(json!([with(json!({"colour": "red"}))]))
        .unwrap_err();
    assert!(err.to_string().contains("unknown field `colour`"), "{err}");
    let err =
        serde_json::from_value::<Vec<RuleConfig>>(json!([with(json!({"match": {"lable": "x"}}))]))
            .unwrap_err();
    assert!(err.to_string().contains("unknown field `lable`"), "{err}");
}

/// Decodes a fixture from `tests/fixtures/data-channel` into items, on the
/// channel that carries its content type (JSONL: data, JSON: events).
fn fixture_items(rel: &str, ct: &str) -> Vec<Item> {
    use trickle_edge::data::{DecodeLimits, SegmentDecoder};
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data-channel");
    let bytes = std::fs::read(dir.join(rel)).expect("fixture");
    let channel = if ct.ends_with("jsonl") {
        "data"
    } else {
        "events"
    };
    let mut dec = SegmentDecoder::new(channel.into(), 1, Some(ct), DecodeLimits::default());
    let mut items = dec.push(&bytes, Instant::now());
    items.extend(dec.finish(Instant::now()).0);
    items
}

#[test]
fn decoded_fixtures_drive_rules() {
    let at = clock();
    let mut rs = ruleset(json!([
        {"name": "door", "match": {"type": "detection", "label": "person", "min_confidence": 0.6},
         "then": [{"output": "door", "action": "pulse", "ms": 500}]},
        {"name": "busy", "where": [{"path": "/people_count", "ge": 3}], "then": [{"output": "log"}]},
        {"name": "ill", "match": {"type": "status"}, "where": [{"path": "/inference_status/restart_count", "gt": 0}],
         "then": [{"output": "log"}]}
    ]));
    let mut fired = Vec::new();
    for (i, (name, ct)) in [
        ("good/data-batches.jsonl", "application/jsonl"),
        ("good/event-detection.json", "application/json"),
        ("good/event-metrics.json", "application/json"),
        ("good/event-wrapped-status.json", "application/json"),
        ("bad/wrong-types.json", "application/json"),
    ]
    .into_iter()
    .enumerate()
    {
        for item in fixture_items(name, ct) {
            for e in rs.on_item(&item, at(i as u64 * 1000)) {
                fired.push((name, e.rule.to_string()));
            }
        }
    }
    assert_eq!(
        fired,
        [
            ("good/data-batches.jsonl", "door".to_string()),
            ("good/event-detection.json", "door".to_string()),
            ("good/event-metrics.json", "busy".to_string()),
        ]
    );
    assert_eq!(rs.stats().out_of_order, 0);
}

#[test]
fn engine_and_decoder_can_move_to_tasks() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<RuleSet>();
    assert_send::<Effect>();
    assert_send::<trickle_edge::data::SegmentDecoder>();
}
