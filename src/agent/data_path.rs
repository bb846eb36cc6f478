//! Data and events channels to actions: subscribers decode segments into
//! items as bytes arrive, one rules task turns items into effects, and the
//! outputs run each effect behind their own queues.
//!
//! The hop between decoding and rules is a bounded channel: readers of
//! several channels (data, events) feed one rule set, whose timers need a
//! single owner. Outputs never block this task (`Outputs::dispatch` only
//! queues), so a slow webhook cannot stall decoding.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::metrics::Histogram;
use crate::actions::{Dispatched, Outputs};
use crate::data::{DecodeLimits, DecodeStats, Item, SegmentDecoder};
use crate::job::health::PipelineHealth;
use crate::logging::WarnLimiter;
use crate::rules::{ChannelEvent, RuleSet, RuleStats};
use crate::shutdown::Shutdown;
use crate::stage::StageHandle;
use crate::trickle::Subscriber;

/// What channel readers hand to the rules task.
#[derive(Debug)]
pub enum DataEvent {
    Item(Item),
    Channel(ChannelEvent),
}

/// Counters for `/metrics` and the demo's live view.
#[derive(Debug, Default)]
pub struct DataPathStats {
    pub segments: AtomicU64,
    pub items: AtomicU64,
    pub keepalives: AtomicU64,
    /// Items that came as JSON text inside a batch string (pytrickle's
    /// `send_data(str)`), so a user can see their worker sends strings.
    pub json_strings: AtomicU64,
    pub decode_errors: AtomicU64,
    pub broken_segments: AtomicU64,
    pub reconnects: AtomicU64,
    /// Times a rule fired (one fire may queue several effects).
    pub rule_fires: AtomicU64,
    /// Effects queued on outputs: one per action of a fire, plus releases.
    pub effects: AtomicU64,
    pub effects_dropped: AtomicU64,
    /// Items a rule skipped as older than one it had seen on that channel.
    pub out_of_order: AtomicU64,
    /// Items whose timestamp was too far ahead to order by (see
    /// [`crate::rules::FUTURE_TOLERANCE`]).
    pub untrusted_timestamps: AtomicU64,
    /// From an item's arrival (its first byte decoded) to its effects queued.
    pub item_to_effect: Histogram,
    /// Unix time (ms) of the last item, for `/healthz`.
    pub last_item_unix_ms: AtomicU64,
}

impl DataPathStats {
    /// Items are counted as they are sent on; this adds the rest of a
    /// finished segment's counters.
    fn add_decode(&self, st: &DecodeStats) {
        self.keepalives.fetch_add(st.keepalive, Ordering::Relaxed);
        self.json_strings
            .fetch_add(st.json_strings, Ordering::Relaxed);
        self.decode_errors
            .fetch_add(st.warnings(), Ordering::Relaxed);
    }
}

/// One channel (data or events) followed from a subscriber: every item,
/// and a `Data` event per segment or keepalive, goes to the rules task.
pub struct ChannelReader {
    pub subscriber: Subscriber,
    /// The name in logs and on items (`data`, `events`).
    pub channel: Arc<str>,
    pub limits: DecodeLimits,
    pub items: mpsc::Sender<DataEvent>,
    pub stats: Arc<DataPathStats>,
    /// Set on the events channel: anything read there proves the pipeline lives.
    pub health: Option<Arc<PipelineHealth>>,
}

impl ChannelReader {
    /// Follows the channel until it ends, its reader gives up, the rules
    /// task is gone, or `shutdown` fires.
    pub fn spawn(self, shutdown: &Shutdown) -> StageHandle {
        StageHandle::spawn("channel reader", shutdown, |s| self.run(s))
    }

    async fn run(self, mut shutdown: Shutdown) {
        let ChannelReader {
            subscriber: mut sub,
            channel,
            limits,
            items: tx,
            stats,
            health,
        } = self;
        let seen = |health: &Option<Arc<PipelineHealth>>| {
            if let Some(h) = health {
                h.event_seen();
            }
        };
        let mut reconnects_seen = sub.reconnects;
        loop {
            let next = tokio::select! {
                r = sub.next_segment() => r,
                _ = shutdown.recv() => return,
            };
            let mut seg = match next {
                Ok(Some(seg)) => seg,
                Ok(None) => {
                    info!(%channel, "channel ended");
                    return;
                }
                Err(e) => {
                    warn!(%channel, error = %e, "channel reader gave up");
                    return;
                }
            };
            if sub.reconnects > reconnects_seen {
                reconnects_seen = sub.reconnects;
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                if tx
                    .send(DataEvent::Channel(ChannelEvent::Reconnected))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            stats.segments.fetch_add(1, Ordering::Relaxed);
            if tx
                .send(DataEvent::Channel(ChannelEvent::Data))
                .await
                .is_err()
            {
                return;
            }
            let mut decoder = SegmentDecoder::new(
                channel.clone(),
                seg.seq,
                seg.content_type.as_deref(),
                limits,
            );
            let mut keepalives = 0;
            loop {
                let chunk = tokio::select! {
                    c = seg.chunk() => c,
                    _ = shutdown.recv() => return,
                };
                match chunk {
                    Ok(Some(bytes)) => {
                        let items = decoder.push(&bytes, Instant::now());
                        if !items.is_empty() {
                            seen(&health);
                            stats.items.fetch_add(items.len() as u64, Ordering::Relaxed);
                            stats.last_item_unix_ms.store(unix_ms(), Ordering::Relaxed);
                        }
                        // A keepalive line is proof of life for `no_data` rules.
                        let k = decoder.stats().keepalive;
                        if k > keepalives {
                            keepalives = k;
                            if tx
                                .send(DataEvent::Channel(ChannelEvent::Data))
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                        for item in items {
                            if tx.send(DataEvent::Item(item)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        // The items already decoded stand; the rest of this
                        // segment is lost, the next one is read normally.
                        stats.broken_segments.fetch_add(1, Ordering::Relaxed);
                        warn!(%channel, seq = seg.seq, error = %e, "segment broke off");
                        break;
                    }
                }
            }
            let (items, seg_stats) = decoder.finish(Instant::now());
            stats.add_decode(&seg_stats);
            if !items.is_empty() {
                seen(&health);
                stats.items.fetch_add(items.len() as u64, Ordering::Relaxed);
                stats.last_item_unix_ms.store(unix_ms(), Ordering::Relaxed);
            }
            for item in items {
                if tx.send(DataEvent::Item(item)).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A new rule set and outputs, swapped in by a config reload.
pub struct Replace {
    pub rules: RuleSet,
    pub outputs: Arc<Outputs>,
}

/// The rule set's owner: applies items and channel events, fires timers
/// exactly at their deadlines, and queues effects on the outputs.
pub struct RulesStage {
    pub rules: RuleSet,
    pub outputs: Arc<Outputs>,
    pub items: mpsc::Receiver<DataEvent>,
    pub stats: Arc<DataPathStats>,
}

/// The running rules task and its two side doors.
pub struct RulesHandle {
    /// Ends with the rule set as it was last (its counters).
    pub stage: StageHandle<RuleSet>,
    /// A reload's new rules and outputs, swapped in without losing queued items.
    pub replace: mpsc::Sender<Replace>,
    /// Outputs a [`Replace`] displaced, for the caller to put in failsafe and
    /// shut down (this task must never wait on an output).
    pub retired: mpsc::UnboundedReceiver<Arc<Outputs>>,
}

impl RulesStage {
    /// Runs until every item sender is gone or `shutdown` fires.
    pub fn spawn(self, shutdown: &Shutdown) -> RulesHandle {
        let (replace, replace_rx) = mpsc::channel(1);
        let (retired_tx, retired) = mpsc::unbounded_channel();
        let stage = StageHandle::spawn("rules", shutdown, |s| {
            run_rules(self, replace_rx, retired_tx, s)
        });
        RulesHandle {
            stage,
            replace,
            retired,
        }
    }
}

async fn run_rules(
    stage: RulesStage,
    mut replace: mpsc::Receiver<Replace>,
    retired: mpsc::UnboundedSender<Arc<Outputs>>,
    mut shutdown: Shutdown,
) -> RuleSet {
    let RulesStage {
        mut rules,
        mut outputs,
        items: mut rx,
        stats,
    } = stage;
    let mut effects = rules.on_tick(Instant::now());
    // Fires of rule sets replaced by reloads, so the counter never goes back.
    let mut before = RuleStats::default();
    let mut ordering = OrderingWarnings::new();
    loop {
        let now_stats = *rules.stats();
        stats
            .rule_fires
            .store(before.fires + now_stats.fires, Ordering::Relaxed);
        stats.out_of_order.store(
            before.out_of_order + now_stats.out_of_order,
            Ordering::Relaxed,
        );
        stats.untrusted_timestamps.store(
            before.untrusted_timestamps + now_stats.untrusted_timestamps,
            Ordering::Relaxed,
        );
        for effect in effects.drain(..) {
            stats.effects.fetch_add(1, Ordering::Relaxed);
            debug!(rule = %effect.rule, output = %effect.output, action = ?effect.action, "rule fired");
            match outputs.dispatch(effect) {
                Dispatched::Queued => {}
                Dispatched::QueuedDroppedOldest
                | Dispatched::Dropped
                | Dispatched::UnknownOutput => {
                    stats.effects_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let deadline = rules.next_deadline();
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(DataEvent::Item(item)) => {
                    let arrived = item.received_at;
                    let seen = *rules.stats();
                    let now = Instant::now();
                    effects = rules.on_item(&item, now);
                    ordering.check(&seen, &rules, &item, now);
                    if !effects.is_empty() {
                        stats.item_to_effect.observe(arrived.elapsed().as_secs_f64());
                    }
                }
                Some(DataEvent::Channel(c)) => effects = rules.on_channel_event(c, Instant::now()),
                None => return rules,
            },
            _ = sleep_until_opt(deadline) => effects = rules.on_tick(Instant::now()),
            Some(r) = replace.recv() => {
                info!("rules and outputs reloaded");
                let old_stats = *rules.stats();
                before.fires += old_stats.fires;
                before.out_of_order += old_stats.out_of_order;
                before.untrusted_timestamps += old_stats.untrusted_timestamps;
                rules = r.rules;
                let old = std::mem::replace(&mut outputs, r.outputs);
                let _ = retired.send(old);
                effects = rules.on_tick(Instant::now());
            }
            _ = shutdown.recv() => return rules,
        }
    }
}

/// The rate-limited warnings for items the rules skipped or could not order,
/// naming the item that caused each (the counters are in `/metrics`).
struct OrderingWarnings {
    out_of_order: WarnLimiter,
    untrusted: WarnLimiter,
}

impl OrderingWarnings {
    fn new() -> Self {
        Self {
            out_of_order: WarnLimiter::new(WARN_EVERY),
            untrusted: WarnLimiter::new(WARN_EVERY),
        }
    }

    /// Compares the rules' counters from before `item` with after it.
    fn check(&mut self, before: &RuleStats, rules: &RuleSet, item: &Item, now: Instant) {
        let after = rules.stats();
        let ts = item
            .json_payload()
            .and_then(|v| v.get("timestamp").or_else(|| v.get("ts")))
            .map(|v| v.to_string())
            .unwrap_or_default();
        if after.untrusted_timestamps > before.untrusted_timestamps
            && let Some(held) = self.untrusted.hit(now)
        {
            warn!(
                channel = %item.channel,
                seq = item.seq,
                timestamp = %ts,
                held_back = held,
                "item timestamp is far ahead of this machine's clock: not used for ordering (a broken sender clock, or this board's clock not yet set)"
            );
        }
        if after.out_of_order > before.out_of_order
            && let Some(held) = self.out_of_order.hit(now)
        {
            warn!(
                channel = %item.channel,
                seq = item.seq,
                timestamp = %ts,
                held_back = held,
                "item skipped by rules: its timestamp is older than one already seen on this channel"
            );
        }
    }
}

/// At most one warning of each kind per this period.
const WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
