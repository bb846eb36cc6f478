//! The rules evaluator: an arbitrary `[[rules]]` config, then a script of
//! items and clock steps, evaluated with an injected clock.
//!
//! Input: UTF-8 text; everything before the first line `---` is TOML with
//! `[[rules]]` tables (as in a config file); every later line is one step:
//! `+N` advances the clock N ms and runs the timers, `!data`, `!dead` and
//! `!reconnected` report a channel event, anything else is an item's JSON
//! (on channel `data`, or `events` when it starts with `@`).
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use tokio::time::Instant;
use trickle_edge::data::Item;
use trickle_edge::rules::{ChannelEvent, RuleConfig, RuleSet};

#[derive(Deserialize)]
struct Rules {
    #[serde(default)]
    rules: Vec<RuleConfig>,
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (config, script) = text.split_once("\n---\n").unwrap_or((text, ""));
    let Ok(Rules { rules }) = toml::from_str::<Rules>(config) else {
        return;
    };
    let Ok(mut set) = RuleSet::new(rules) else {
        return;
    };
    let start = Instant::now();
    // A fixed wall clock, so a run depends on the input alone.
    set.set_wall_clock(start, 1.7e9);
    let mut now = start;
    let (data, events): (Arc<str>, Arc<str>) = (Arc::from("data"), Arc::from("events"));
    for (seq, line) in script.lines().enumerate() {
        let effects = if let Some(ms) = line.strip_prefix('+') {
            let ms: u64 = ms.trim().parse().unwrap_or(0);
            // Up to a day per step: far enough to pass every window.
            now += Duration::from_millis(ms.min(86_400_000));
            let effects = set.on_tick(now);
            // A tick runs every timer due by `now`: none is left behind.
            if let Some(deadline) = set.next_deadline() {
                assert!(
                    deadline > now,
                    "a timer due {:?} ago was left",
                    now - deadline
                );
            }
            effects
        } else if let Some(event) = line.strip_prefix('!') {
            let event = match event {
                "data" => ChannelEvent::Data,
                "dead" => ChannelEvent::PipelineDead,
                _ => ChannelEvent::Reconnected,
            };
            set.on_channel_event(event, now)
        } else {
            let (channel, json) = match line.strip_prefix('@') {
                Some(rest) => (events.clone(), rest),
                None => (data.clone(), line),
            };
            let Ok(value) = serde_json::from_str(json) else {
                continue;
            };
            set.on_item(&Item::json(channel, seq as i64, now, value), now)
        };
        std::hint::black_box(effects);
    }
});
