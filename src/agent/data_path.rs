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
use std::time::Duration;

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
use crate::trickle::{IncomingSegment, Subscriber};

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
    /// Segments the subscriber jumped over because the server no longer
    /// held them (an outage longer than the ring): items lost, counted.
    pub segments_skipped: AtomicU64,
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
    /// Segments a newer one overtook while they stalled ([`STALL_OVERTAKE`]).
    pub stalled_overtaken: AtomicU64,
    /// Overtaken segments still open when another stalled: their rest is lost.
    pub stalled_abandoned: AtomicU64,
    /// Items a rule skipped as older than one it had seen on that channel.
    pub out_of_order: AtomicU64,
    /// Items whose timestamp was too far ahead to order by (see
    /// [`crate::rules::FUTURE_TOLERANCE`]).
    pub untrusted_timestamps: AtomicU64,
    /// From an item's arrival (its first byte decoded) to its effects queued.
    pub item_to_effect: Histogram,
    /// Unix time (ms) of the last item, for `/healthz`.
    pub last_item_unix_ms: AtomicU64,
    /// Boxes, fires, output and rule states for the status page and Home
    /// Assistant (`status/feed.rs`).
    pub live: Arc<crate::status::LiveFeed>,
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
    /// A Livepeer job's watch: the channel ending (the orchestrator closed
    /// or removed it) is reported there, so the job fails over at once.
    pub watch: Option<Arc<crate::job::watch::JobWatch>>,
}

/// How long a segment may be silent, while a newer one on the same channel
/// has begun, before the newer one overtakes it. A publisher that starts
/// segment N+1 has given up on N (its headers reach us only with N+1's first
/// byte), so N is a straggler: its writer hung, or a restarted publisher left
/// it open. Items are independent of each other, so nothing is gained by
/// waiting, and everything behind it would wait too (up to the ring's
/// eviction, five segments later). Long enough not to overtake a segment
/// whose writer merely paused between two lines.
pub const STALL_OVERTAKE: Duration = Duration::from_secs(2);

/// How a segment's reading ended.
enum SegmentEnd {
    /// Read to its end, or it broke off (already counted and logged).
    Done,
    /// Silent for [`STALL_OVERTAKE`] while a newer segment began: handed back
    /// still open, to be drained beside the newer ones.
    Overtaken(Box<OpenSegment>),
    /// Shutdown, or the rules task is gone.
    Stop,
}

/// A segment being read and decoded.
struct OpenSegment {
    seg: IncomingSegment,
    decoder: SegmentDecoder,
    keepalives: u64,
}

/// What every segment reader of one channel shares.
#[derive(Clone)]
struct ChannelSink {
    channel: Arc<str>,
    items: mpsc::Sender<DataEvent>,
    stats: Arc<DataPathStats>,
    health: Option<Arc<PipelineHealth>>,
}

impl ChannelSink {
    fn seen(&self) {
        if let Some(h) = &self.health {
            h.event_seen();
        }
    }

    /// Counts and sends decoded items; false once the rules task is gone.
    async fn send_items(&self, items: Vec<Item>) -> bool {
        if items.is_empty() {
            return true;
        }
        self.seen();
        self.stats
            .items
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        self.stats
            .last_item_unix_ms
            .store(unix_ms(), Ordering::Relaxed);
        for item in items {
            if self.items.send(DataEvent::Item(item)).await.is_err() {
                return false;
            }
        }
        true
    }

    async fn send_channel(&self, event: ChannelEvent) -> bool {
        self.items.send(DataEvent::Channel(event)).await.is_ok()
    }

    /// Reads `open` to its end. With `newer` (the channel's subscriber), a
    /// silent segment is handed back once a newer one has begun.
    async fn read(
        &self,
        mut open: OpenSegment,
        newer: Option<&Subscriber>,
        shutdown: &mut Shutdown,
    ) -> SegmentEnd {
        let mut last_byte = Instant::now();
        let check = tokio::time::sleep_until(last_byte + STALL_OVERTAKE);
        tokio::pin!(check);
        loop {
            let chunk = tokio::select! {
                c = open.seg.chunk() => c,
                _ = &mut check, if newer.is_some() => {
                    let silent = last_byte.elapsed();
                    if silent >= STALL_OVERTAKE && newer.is_some_and(Subscriber::newer_segment_began) {
                        return SegmentEnd::Overtaken(Box::new(open));
                    }
                    let next = if silent >= STALL_OVERTAKE {
                        Instant::now() + STALL_OVERTAKE / 4
                    } else {
                        last_byte + STALL_OVERTAKE
                    };
                    check.as_mut().reset(next);
                    continue;
                }
                _ = shutdown.recv() => return SegmentEnd::Stop,
            };
            match chunk {
                Ok(Some(bytes)) => {
                    last_byte = Instant::now();
                    let items = open.decoder.push(&bytes, last_byte);
                    // A keepalive line is proof of life for `no_data` rules.
                    let k = open.decoder.stats().keepalive;
                    if k > open.keepalives {
                        open.keepalives = k;
                        if !self.send_channel(ChannelEvent::Data).await {
                            return SegmentEnd::Stop;
                        }
                    }
                    if !self.send_items(items).await {
                        return SegmentEnd::Stop;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // The items already decoded stand; the rest of this
                    // segment is lost, the next one is read normally.
                    self.stats.broken_segments.fetch_add(1, Ordering::Relaxed);
                    warn!(channel = %self.channel, seq = open.seg.seq, error = %e, "segment broke off");
                    break;
                }
            }
        }
        let (items, seg_stats) = open.decoder.finish(Instant::now());
        self.stats.add_decode(&seg_stats);
        if self.send_items(items).await {
            SegmentEnd::Done
        } else {
            SegmentEnd::Stop
        }
    }
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
            items,
            stats,
            health,
            watch,
        } = self;
        let sink = ChannelSink {
            channel: channel.clone(),
            items,
            stats: stats.clone(),
            health,
        };
        // At most one overtaken segment drains beside the live ones; a
        // second straggler ends the first (counted as abandoned).
        let mut straggler: Option<tokio::task::JoinHandle<()>> = None;
        let mut overtakes = WarnLimiter::new(std::time::Duration::from_secs(10));
        let mut reconnects_seen = sub.reconnects;
        let mut skipped_seen = sub.skipped;
        loop {
            let next = tokio::select! {
                r = sub.next_segment() => r,
                _ = shutdown.recv() => break,
            };
            let seg = match next {
                Ok(Some(seg)) => seg,
                Ok(None) => {
                    info!(%channel, "channel ended");
                    if let Some(w) = &watch {
                        w.fail(format!(
                            "the {channel} channel {} was closed by the orchestrator",
                            sub.url()
                        ));
                    }
                    break;
                }
                Err(e) => {
                    warn!(%channel, error = %e, "channel reader gave up");
                    break;
                }
            };
            if sub.skipped > skipped_seen {
                stats
                    .segments_skipped
                    .fetch_add(sub.skipped - skipped_seen, Ordering::Relaxed);
                skipped_seen = sub.skipped;
            }
            if sub.reconnects > reconnects_seen {
                reconnects_seen = sub.reconnects;
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                if !sink.send_channel(ChannelEvent::Reconnected).await {
                    break;
                }
            }
            stats.segments.fetch_add(1, Ordering::Relaxed);
            if !sink.send_channel(ChannelEvent::Data).await {
                break;
            }
            let decoder = SegmentDecoder::new(
                channel.clone(),
                seg.seq,
                seg.content_type.as_deref(),
                limits,
            );
            let open = OpenSegment {
                seg,
                decoder,
                keepalives: 0,
            };
            match sink.read(open, Some(&sub), &mut shutdown).await {
                SegmentEnd::Done => {}
                SegmentEnd::Stop => break,
                SegmentEnd::Overtaken(open) => {
                    stats.stalled_overtaken.fetch_add(1, Ordering::Relaxed);
                    let seq = open.seg.seq;
                    if let Some(suppressed) = overtakes.hit(Instant::now()) {
                        warn!(
                            %channel,
                            seq,
                            silent_s = STALL_OVERTAKE.as_secs_f64(),
                            held_back = suppressed,
                            "segment stalled while a newer one began: reading on past it; \
                             it keeps draining beside the newer ones"
                        );
                    }
                    if let Some(old) = straggler.take()
                        && !old.is_finished()
                    {
                        old.abort();
                        stats.stalled_abandoned.fetch_add(1, Ordering::Relaxed);
                        warn!(%channel, "an older stalled segment was still open: abandoned, its unread rest is lost");
                    }
                    let (sink, mut shutdown) = (sink.clone(), shutdown.clone());
                    straggler = Some(tokio::spawn(async move {
                        sink.read(*open, None, &mut shutdown).await;
                    }));
                }
            }
        }
        if let Some(task) = straggler {
            task.abort();
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
        // The status page and Home Assistant (status/feed.rs).
        let fired = stats.live.effects(&effects);
        stats.live.rule_states(rules.held(), &fired);
        for effect in effects.drain(..) {
            stats.effects.fetch_add(1, Ordering::Relaxed);
            debug!(rule = %effect.rule, output = %effect.output, action = ?effect.action, "rule fired");
            match outputs.dispatch(effect) {
                Dispatched::Queued | Dispatched::Spilled | Dispatched::Coalesced => {}
                Dispatched::Dropped | Dispatched::UnknownOutput => {
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
                    stats.live.item(&item);
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
