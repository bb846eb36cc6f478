//! `RuleSet`: validated rules plus their state, driven by items, channel
//! events and ticks, producing `Effect`s. Pure: no I/O, no clock of its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::config::{ActionKind, ChannelCondition, RuleConfig};
use super::error::{RuleError, RuleErrorKind};
use super::matcher::Matcher;
use super::timing::{Debounce, Due, MAX_WINDOW, Timing, TimingSpec, Verdict};
use crate::data::Item;
use crate::duration::parse_duration;

/// What an output should do.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputAction {
    Activate,
    Deactivate,
    Pulse {
        ms: u64,
    },
    /// Hand the item to the output (log, exec, webhook, mqtt).
    Deliver,
}

/// One instruction for the `actions` module.
#[derive(Debug, Clone, PartialEq)]
pub struct Effect {
    pub rule: std::sync::Arc<str>,
    pub output: std::sync::Arc<str>,
    pub action: OutputAction,
    /// The item that caused the fire; `None` for channel conditions and releases.
    pub item: Option<std::sync::Arc<crate::data::Item>>,
}

/// Channel happenings reported by the subscriber and job health tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelEvent {
    /// A data-channel segment or keepalive arrived (resets `no_data` timers).
    Data,
    /// The job's health check declared the pipeline dead.
    PipelineDead,
    /// The subscription is back after a failure.
    Reconnected,
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleStats {
    pub fires: u64,
    /// Items ignored because their timestamp was older than one already seen.
    pub out_of_order: u64,
    /// Items whose timestamp was too far ahead of this machine's clock to
    /// order by (more than [`FUTURE_TOLERANCE`]): evaluated as items without
    /// one, so a single bad value cannot hold back every later item.
    pub untrusted_timestamps: u64,
    pub suppressed_cooldown: u64,
    pub suppressed_rate_limit: u64,
    /// Calls whose `now` was earlier than a previous call's (treated as no time passing).
    pub clock_jumps: u64,
}

/// The rules of one agent, ready to evaluate.
///
/// Drive it with [`on_item`](Self::on_item) for each decoded item,
/// [`on_channel_event`](Self::on_channel_event) for channel news, and
/// [`on_tick`](Self::on_tick) at [`next_deadline`](Self::next_deadline).
/// Timers (including `no_data`) start at the first call of any of these, so
/// call `on_tick(now)` once when the agent starts.
#[derive(Debug)]
pub struct RuleSet {
    rules: Vec<Rule>,
    last_now: Option<Instant>,
    stats: RuleStats,
    /// This machine's clock at one instant, to judge item timestamps by.
    wall_anchor: (Instant, f64),
}

/// How far ahead of this machine's clock an item's timestamp may be and
/// still order items. Beyond it the value is a broken or hostile sender's,
/// and ordering by it would drop every later item as "out of order".
/// Generous, because a board without a real-time clock can boot minutes
/// behind until NTP catches up.
pub const FUTURE_TOLERANCE: Duration = Duration::from_secs(600);

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[derive(Debug)]
struct Rule {
    name: Arc<str>,
    trigger: Trigger,
    actions: Vec<Action>,
    timing: Timing,
    /// Latest item timestamp (seconds) seen per channel, for ordering.
    last_ts: HashMap<Arc<str>, f64>,
}

#[derive(Debug)]
enum Trigger {
    Items(Matcher),
    Channel(ChannelCondition),
}

#[derive(Debug)]
struct Action {
    output: Arc<str>,
    kind: Option<ActionKind>,
    ms: u64,
}

impl RuleSet {
    /// Validates every rule; the first problem found is returned.
    pub fn new(configs: Vec<RuleConfig>) -> Result<RuleSet, RuleError> {
        let mut rules: Vec<Rule> = Vec::with_capacity(configs.len());
        for config in &configs {
            let rule = Rule::build(config)?;
            if rules.iter().any(|r| r.name == rule.name) {
                return Err(RuleError {
                    rule: config.name.clone(),
                    field: "name".into(),
                    kind: RuleErrorKind::DuplicateName,
                });
            }
            rules.push(rule);
        }
        Ok(RuleSet {
            rules,
            last_now: None,
            stats: RuleStats::default(),
            wall_anchor: (Instant::now(), unix_now()),
        })
    }

    /// Evaluates one decoded item against every item rule.
    pub fn on_item(&mut self, item: &Item, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        let now = self.advance(now, &mut effects);
        // One shared copy of the item for all effects, made only if needed.
        let mut shared: Option<Arc<Item>> = None;
        let mut arc = || shared.get_or_insert_with(|| Arc::new(item.clone())).clone();
        let ts = timestamp_secs(item).filter(|&t| {
            let trusted = t <= self.wall_at(now) + FUTURE_TOLERANCE.as_secs_f64();
            if !trusted {
                self.stats.untrusted_timestamps += 1;
            }
            trusted
        });
        for rule in &mut self.rules {
            let Trigger::Items(matcher) = &rule.trigger else {
                continue;
            };
            if let Some(ts) = ts {
                let last = rule.last_ts.entry(item.channel.clone()).or_insert(ts);
                if ts < *last {
                    self.stats.out_of_order += 1;
                    continue;
                }
                *last = ts;
            }
            let matched = matcher.matches(item);
            if rule.timing.debounce(matched, now, &mut arc) {
                rule.fire(now, Some(arc()), &mut self.stats, &mut effects);
            }
        }
        effects
    }

    /// This machine's Unix time at `now`, from the anchor taken at creation
    /// (monotonic from there: a wall-clock step does not move it).
    pub fn wall_at(&self, now: Instant) -> f64 {
        let (at, unix) = self.wall_anchor;
        if now >= at {
            unix + (now - at).as_secs_f64()
        } else {
            unix - (at - now).as_secs_f64()
        }
    }

    /// Re-reads this machine's clock (after NTP set it, say).
    pub fn set_wall_clock(&mut self, at: Instant, unix_secs: f64) {
        self.wall_anchor = (at, unix_secs);
    }

    /// Each rule's name and whether it is in its hold now (the status page
    /// and Home Assistant show a rule as on while it holds).
    pub fn held(&self) -> impl Iterator<Item = (&Arc<str>, bool)> {
        self.rules.iter().map(|r| (&r.name, r.timing.is_held()))
    }

    /// Processes timers due by `now`: duration debounces, hold releases, no-data.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.advance(now, &mut effects);
        effects
    }

    /// Reports channel news; fires matching channel-condition rules.
    pub fn on_channel_event(&mut self, event: ChannelEvent, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        let now = self.advance(now, &mut effects);
        for rule in &mut self.rules {
            match (event, &rule.trigger) {
                (ChannelEvent::Data, Trigger::Channel(ChannelCondition::NoData)) => {
                    rule.timing.data_seen(now)
                }
                (ChannelEvent::PipelineDead, Trigger::Channel(ChannelCondition::PipelineDead))
                | (ChannelEvent::Reconnected, Trigger::Channel(ChannelCondition::Reconnected)) => {
                    rule.fire(now, None, &mut self.stats, &mut effects)
                }
                _ => {}
            }
        }
        effects
    }

    /// When `on_tick` next has something to do, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.rules
            .iter()
            .filter_map(|r| r.timing.next_deadline())
            .min()
    }

    pub fn stats(&self) -> &RuleStats {
        &self.stats
    }

    /// Moves the rule set's clock to `now` (never backwards: an earlier `now`
    /// counts as no time passing) and runs every timer due by then, earliest
    /// first across all rules, each at its own deadline.
    fn advance(&mut self, now: Instant, effects: &mut Vec<Effect>) -> Instant {
        let now = match self.last_now {
            Some(last) if now < last => {
                self.stats.clock_jumps += 1;
                last
            }
            Some(_) => now,
            None => {
                for rule in &mut self.rules {
                    rule.timing.start(now);
                }
                now
            }
        };
        self.last_now = Some(now);
        loop {
            let next = self
                .rules
                .iter()
                .enumerate()
                .filter_map(|(i, r)| r.timing.next_deadline().map(|t| (t, i)))
                .filter(|&(t, _)| t <= now)
                .min();
            let Some((_, i)) = next else { break };
            let rule = &mut self.rules[i];
            let Some((at, due)) = rule.timing.pop_due(now) else {
                break;
            };
            match due {
                Due::DebounceReached(item) => rule.fire(at, item, &mut self.stats, effects),
                Due::NoData => rule.fire(at, None, &mut self.stats, effects),
                Due::HoldReleased => rule.release(effects),
            }
        }
        now
    }
}

impl Rule {
    fn build(c: &RuleConfig) -> Result<Rule, RuleError> {
        let err = |field: &str, kind: RuleErrorKind| RuleError {
            rule: c.name.clone(),
            field: field.to_owned(),
            kind,
        };
        if c.name.trim().is_empty() {
            return Err(err("name", RuleErrorKind::EmptyName));
        }
        let duration = |field: &str, s: &Option<String>| -> Result<Option<Duration>, RuleError> {
            s.as_deref()
                .map(parse_duration)
                .transpose()
                .map_err(|e| err(field, e.into()))
        };
        let cooldown = duration("cooldown", &c.cooldown)?;
        let hold = duration("hold", &c.hold)?;
        let after = duration("after", &c.after)?;
        let debounce = c
            .debounce
            .as_deref()
            .map(parse_debounce)
            .transpose()
            .map_err(|k| err("debounce", k))?;
        let rate_limit = c
            .rate_limit
            .as_deref()
            .map(parse_rate_limit)
            .transpose()
            .map_err(|k| err("rate_limit", k))?;

        let trigger = match c.on {
            Some(cond) => {
                let extra = [
                    ("match", c.match_.is_some()),
                    ("where", !c.where_.is_empty()),
                    ("debounce", debounce.is_some()),
                ];
                if let Some((field, _)) = extra.iter().find(|(_, present)| *present) {
                    return Err(err(field, RuleErrorKind::NotWithOn));
                }
                match (cond, after) {
                    (ChannelCondition::NoData, None) => {
                        return Err(err("after", RuleErrorKind::NoDataWithoutAfter));
                    }
                    (ChannelCondition::NoData, Some(_)) | (_, None) => {}
                    (_, Some(_)) => return Err(err("after", RuleErrorKind::AfterWithoutNoData)),
                }
                Trigger::Channel(cond)
            }
            None => {
                if after.is_some() {
                    return Err(err("after", RuleErrorKind::AfterWithoutNoData));
                }
                let matcher =
                    Matcher::build(c.match_.as_ref(), &c.where_).map_err(|(f, k)| err(&f, k))?;
                Trigger::Items(matcher)
            }
        };

        if c.then.is_empty() {
            return Err(err("then", RuleErrorKind::NoActions));
        }
        let mut actions = Vec::with_capacity(c.then.len());
        for (i, a) in c.then.iter().enumerate() {
            let field = |f: &str| format!("then[{i}].{f}");
            if a.output.trim().is_empty() {
                return Err(err(&field("output"), RuleErrorKind::EmptyOutput));
            }
            match (a.action, a.ms) {
                (Some(ActionKind::Pulse), None | Some(0)) => {
                    return Err(err(&field("ms"), RuleErrorKind::PulseWithoutMs));
                }
                (Some(ActionKind::Pulse), Some(_)) | (_, None) => {}
                (_, Some(_)) => return Err(err(&field("ms"), RuleErrorKind::MsWithoutPulse)),
            }
            if a.action == Some(ActionKind::Hold) && hold.is_none() {
                return Err(err(&field("action"), RuleErrorKind::HoldWithoutDuration));
            }
            actions.push(Action {
                output: a.output.as_str().into(),
                kind: a.action,
                ms: a.ms.unwrap_or(0),
            });
        }

        let no_data_after = matches!(c.on, Some(ChannelCondition::NoData))
            .then_some(after)
            .flatten();
        Ok(Rule {
            name: c.name.as_str().into(),
            trigger,
            actions,
            timing: Timing::new(TimingSpec {
                debounce,
                cooldown,
                hold,
                rate_limit,
                no_data_after,
            }),
            last_ts: HashMap::new(),
        })
    }

    /// A trigger at `at`: emits every action if the timing allows a fire.
    fn fire(
        &mut self,
        at: Instant,
        item: Option<Arc<Item>>,
        stats: &mut RuleStats,
        effects: &mut Vec<Effect>,
    ) {
        match self.timing.trigger(at) {
            Verdict::Fire => stats.fires += 1,
            Verdict::Held => return,
            Verdict::Cooldown => {
                stats.suppressed_cooldown += 1;
                return;
            }
            Verdict::RateLimited => {
                stats.suppressed_rate_limit += 1;
                return;
            }
        }
        for a in &self.actions {
            let action = match a.kind {
                Some(ActionKind::Set | ActionKind::Hold) => OutputAction::Activate,
                Some(ActionKind::Clear) => OutputAction::Deactivate,
                Some(ActionKind::Pulse) => OutputAction::Pulse { ms: a.ms },
                None => OutputAction::Deliver,
            };
            effects.push(self.effect(a, action, item.clone()));
        }
    }

    /// The hold ran out: outputs with `action = "hold"` go inactive.
    fn release(&self, effects: &mut Vec<Effect>) {
        for a in self
            .actions
            .iter()
            .filter(|a| a.kind == Some(ActionKind::Hold))
        {
            effects.push(self.effect(a, OutputAction::Deactivate, None));
        }
    }

    fn effect(&self, a: &Action, action: OutputAction, item: Option<Arc<Item>>) -> Effect {
        Effect {
            rule: self.name.clone(),
            output: a.output.clone(),
            action,
            item,
        }
    }
}

/// `"N of M"`, or a duration.
fn parse_debounce(s: &str) -> Result<Debounce, RuleErrorKind> {
    let bad = || RuleErrorKind::BadDebounce(s.to_owned());
    let Some((n, m)) = s.split_once(" of ") else {
        return parse_duration(s).map(Debounce::For).map_err(|_| bad());
    };
    let n: usize = n.trim().parse().map_err(|_| bad())?;
    let m: usize = m.trim().parse().map_err(|_| bad())?;
    if n == 0 {
        Err(RuleErrorKind::ZeroN)
    } else if n > m {
        Err(RuleErrorKind::NGreaterThanM { n, m })
    } else if m > MAX_WINDOW {
        Err(RuleErrorKind::WindowTooLarge(m))
    } else {
        Ok(Debounce::Count { n, m })
    }
}

/// `"N/window"`, e.g. `"5/1m"`.
fn parse_rate_limit(s: &str) -> Result<(usize, Duration), RuleErrorKind> {
    let bad = || RuleErrorKind::BadRateLimit(s.to_owned());
    let (n, window) = s.split_once('/').ok_or_else(bad)?;
    let n: usize = n.trim().parse().map_err(|_| bad())?;
    let window = parse_duration(window)?;
    if n == 0 || window.is_zero() {
        return Err(RuleErrorKind::ZeroRate);
    }
    Ok((n, window))
}

/// The item's own time in seconds, from a numeric `timestamp` or `ts`.
/// Values above 1e11 can only be milliseconds (1e11 s is the year 5138).
fn timestamp_secs(item: &Item) -> Option<f64> {
    let v = item.json_payload()?;
    let t = v
        .get("timestamp")
        .or_else(|| v.get("ts"))
        .and_then(Value::as_f64)?;
    Some(if t > 1e11 { t / 1000.0 } else { t })
}
