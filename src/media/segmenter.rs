//! Cuts the muxer's MPEG-TS output into one segment per GOP and hands the
//! bytes on as they are produced, behind a bounded queue that drops whole GOPs.
//!
//! When the queue is full the *oldest waiting* GOP is dropped, not the new
//! one: after an uplink outage the freshest media goes out first, which is
//! what live AI wants (a detection on 20-second-old frames drives nothing
//! useful). The GOP the consumer is already sending is never touched, and
//! every segment still starts at a keyframe.
//!
//! The producer side ([`GopWriter`]) runs inside the appsink callback, so
//! it never blocks: a short lock on the queue, or an unbounded send into a
//! GOP whose total size is bounded by the GOP count (see [`GopQueueLimits`]).

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};

use crate::sync::LockIgnoringPoison;

const TS_PACKET: usize = 188;
/// Drops are logged at most this often, however fast they happen.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// `next_chunk` merges already-waiting packets up to this size into one chunk.
const MAX_CHUNK: usize = 64 * 1024;

/// Limits of the GOP queue between the appsink and the consumer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GopQueueLimits {
    /// GOPs that may wait for the consumer; beyond this the oldest waiting
    /// GOP is dropped whole to make room for the new one.
    pub capacity_gops: usize,
    /// A GOP larger than this is cut short, so a source that never sends a
    /// keyframe cannot grow memory without bound.
    pub max_gop_bytes: usize,
}

impl Default for GopQueueLimits {
    fn default() -> Self {
        Self {
            capacity_gops: 2,
            max_gop_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Counters shared by the producer, the supervisor and `/metrics`.
#[derive(Debug, Default)]
pub struct MediaStats {
    /// GOPs admitted to the queue.
    pub segments: AtomicU64,
    /// Waiting GOPs dropped whole to make room for a newer one.
    pub dropped_gops: AtomicU64,
    /// GOPs cut short for exceeding `max_gop_bytes`.
    pub oversized_gops: AtomicU64,
    /// MPEG-TS bytes handed to admitted segments.
    pub bytes: AtomicU64,
    /// GOPs that did not start with PAT/PMT and got cached copies prepended.
    pub psi_repairs: AtomicU64,
    /// Pipeline (re)builds, including the first.
    pub pipeline_starts: AtomicU64,
    /// Pipeline runs that ended in an error (each one costs a backoff wait).
    pub pipeline_failures: AtomicU64,
    /// Why the camera is not producing now: set when a run fails or the
    /// camera gives up, cleared by the next keyframe.
    camera_error: std::sync::Mutex<Option<String>>,
}

impl MediaStats {
    /// Why the camera is not producing now, if it is not.
    pub fn camera_error(&self) -> Option<String> {
        self.camera_error.lock_ignoring_poison().clone()
    }

    pub(crate) fn set_camera_error(&self, reason: Option<String>) {
        *self.camera_error.lock_ignoring_poison() = reason;
    }
}

enum Chunk {
    Data(Bytes),
    /// The GOP ended at the next keyframe (as opposed to a teardown or cut).
    End,
}

/// One GOP of MPEG-TS: starts with PAT/PMT, SPS/PPS and a keyframe, so it decodes alone.
///
/// Its bytes arrive while the GOP is still being encoded; read them with
/// [`GopSegment::next_chunk`] until it returns `None`.
pub struct GopSegment {
    /// Increases by one per GOP admitted, across pipeline rebuilds; a gap
    /// at the consumer means waiting GOPs were dropped for newer ones.
    pub seq: u64,
    /// Pipeline build this GOP came from; changes after a self-healing rebuild.
    pub generation: u64,
    /// Running-time PTS of the GOP's first buffer, if the muxer stamped it.
    pub pts: Option<Duration>,
    /// When the keyframe reached the appsink: the start of the agent's own
    /// share of the latency to the wire.
    pub started_at: std::time::Instant,
    rx: mpsc::UnboundedReceiver<Chunk>,
    complete: bool,
}

impl GopSegment {
    /// The next bytes of this GOP; `None` once it has ended.
    ///
    /// Packets already waiting are merged (up to 64 KiB) so a slow consumer
    /// gets larger writes instead of one 188-byte packet per call.
    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        let first = match self.rx.recv().await? {
            Chunk::Data(b) => b,
            Chunk::End => {
                self.complete = true;
                return None;
            }
        };
        let mut merged: Option<BytesMut> = None;
        while merged.as_ref().map_or(first.len(), BytesMut::len) < MAX_CHUNK {
            match self.rx.try_recv() {
                Ok(Chunk::Data(b)) => merged
                    .get_or_insert_with(|| BytesMut::from(&first[..]))
                    .extend_from_slice(&b),
                Ok(Chunk::End) => {
                    self.complete = true;
                    break;
                }
                Err(_) => break,
            }
        }
        Some(merged.map_or(first, BytesMut::freeze))
    }

    /// True once the GOP ended at the next keyframe; false while streaming or if
    /// it was cut short (pipeline torn down, or larger than `max_gop_bytes`).
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Reads the rest of the GOP into one buffer (tests and debugging tools).
    pub async fn collect(&mut self) -> Bytes {
        let mut all = BytesMut::new();
        while let Some(c) = self.next_chunk().await {
            all.extend_from_slice(&c);
        }
        all.freeze()
    }
}

/// The GOPs waiting between producer and consumer.
struct Waiting {
    gops: Mutex<VecDeque<GopSegment>>,
    /// One consumer: `notify_one` keeps a permit if it is not waiting yet.
    pushed: Notify,
}

/// The consumer end: yields whole-GOP segments in order. Survives pipeline rebuilds.
pub struct SegmentQueue {
    waiting: Arc<Waiting>,
    /// Never carries a message: it ends when every producer handle is gone,
    /// and its sender side sees it dropped (`SegmentSender::closed`).
    producers: mpsc::Receiver<()>,
    stats: Arc<MediaStats>,
}

impl SegmentQueue {
    /// The next GOP, or `None` once the camera has stopped for good and
    /// every waiting GOP was taken.
    pub async fn next(&mut self) -> Option<GopSegment> {
        loop {
            if let Some(gop) = self.waiting.gops.lock_ignoring_poison().pop_front() {
                return Some(gop);
            }
            tokio::select! {
                _ = self.waiting.pushed.notified() => {}
                None = self.producers.recv() => {
                    return self.waiting.gops.lock_ignoring_poison().pop_front();
                }
            }
        }
    }

    /// GOPs waiting (never more than `capacity_gops`).
    pub fn len(&self) -> usize {
        self.waiting.gops.lock_ignoring_poison().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> Arc<MediaStats> {
        self.stats.clone()
    }
}

/// The producer end kept by the camera supervisor; makes one writer per pipeline build.
#[derive(Clone)]
pub struct SegmentSender {
    producer: mpsc::Sender<()>,
    shared: Arc<Shared>,
}

struct Shared {
    waiting: Arc<Waiting>,
    cfg: GopQueueLimits,
    stats: Arc<MediaStats>,
    next_seq: AtomicU64,
    last_drop_log: Mutex<Option<Instant>>,
    consumer_gone_logged: AtomicBool,
}

/// Creates the queue's two ends.
pub fn segment_queue(cfg: GopQueueLimits) -> (SegmentSender, SegmentQueue) {
    let (producer, producers) = mpsc::channel(1);
    let stats = Arc::new(MediaStats::default());
    let waiting = Arc::new(Waiting {
        gops: Mutex::new(VecDeque::with_capacity(cfg.capacity_gops.max(1))),
        pushed: Notify::new(),
    });
    let shared = Arc::new(Shared {
        waiting: waiting.clone(),
        cfg,
        stats: stats.clone(),
        next_seq: AtomicU64::new(0),
        last_drop_log: Mutex::new(None),
        consumer_gone_logged: AtomicBool::new(false),
    });
    (
        SegmentSender { producer, shared },
        SegmentQueue {
            waiting,
            producers,
            stats,
        },
    )
}

impl SegmentSender {
    /// A fresh writer for a new pipeline: it discards bytes until the first keyframe.
    ///
    /// `keyframes` (if given) receives the PTS of each GOP start, best effort:
    /// the supervisor uses it to request the next keyframe and to tell "media
    /// flows again" from "pipeline merely started".
    pub fn writer(
        &self,
        generation: u64,
        keyframes: Option<mpsc::Sender<Option<Duration>>>,
    ) -> GopWriter {
        GopWriter {
            keyframes,
            producer: self.producer.clone(),
            shared: self.shared.clone(),
            generation,
            current: None,
            headers_only: false,
            psi: PsiCache::default(),
        }
    }

    pub fn stats(&self) -> Arc<MediaStats> {
        self.shared.stats.clone()
    }

    /// Completes when the consumer has dropped its [`SegmentQueue`].
    pub async fn closed(&self) {
        self.producer.closed().await
    }
}

struct CurrentGop {
    tx: mpsc::UnboundedSender<Chunk>,
    bytes: usize,
}

/// Cuts one pipeline build's muxer output into GOPs and writes their bytes
/// into the queue; fed from the appsink callback.
pub struct GopWriter {
    /// Held for its lifetime only: the queue ends when every writer and
    /// sender is gone.
    producer: mpsc::Sender<()>,
    shared: Arc<Shared>,
    keyframes: Option<mpsc::Sender<Option<Duration>>>,
    generation: u64,
    /// `None` while waiting for a keyframe: after start, a drop or a cut.
    current: Option<CurrentGop>,
    /// The current GOP so far holds only stream headers (buffers flagged
    /// HEADER: PAT/PMT, SPS/PPS). A keyframe now is the IDR those headers
    /// belong to, not a new GOP: mpegtsmux flags both the first header packet
    /// and the IDR's first packet as non-delta when H.264 is passed through
    /// (an RTSP camera), which would otherwise cut a GOP of headers alone.
    headers_only: bool,
    psi: PsiCache,
}

impl GopWriter {
    /// Takes one muxer output buffer. `keyframe` is "no DELTA_UNIT flag":
    /// mpegtsmux clears it on the first packet of a GOP (PAT/PMT before the IDR).
    /// Never blocks.
    pub fn push(&mut self, data: &[u8], keyframe: bool, pts: Option<Duration>) {
        self.push_buffer(data, keyframe, false, pts);
    }

    /// [`GopWriter::push`], also told whether the buffer carries stream
    /// headers (GStreamer's HEADER flag), so that headers flagged as a
    /// keyframe and their IDR right after them stay one GOP.
    pub fn push_buffer(
        &mut self,
        data: &[u8],
        keyframe: bool,
        header: bool,
        pts: Option<Duration>,
    ) {
        self.psi.observe(data);
        let joins_headers = keyframe && self.current.is_some() && self.headers_only;
        if joins_headers || !header {
            self.headers_only = false;
        }
        if keyframe && !joins_headers {
            self.headers_only = header;
            self.finish();
            self.start_gop(pts);
            // mpegtsmux (1.22) emits PAT/PMT on a timer, not at keyframes,
            // unless a force-key-unit with all-headers reached it. When the
            // GOP does not start with a PAT, repeat the last PAT/PMT so the
            // segment still decodes alone (passthrough sources ignore FKU).
            if !starts_with_pid(data, 0)
                && let Some(psi) = self.psi.tables()
            {
                self.shared
                    .stats
                    .psi_repairs
                    .fetch_add(1, Ordering::Relaxed);
                self.append(psi);
            }
        }
        if self.current.is_some() {
            self.append(Bytes::copy_from_slice(data));
        }
    }

    /// Ends the current GOP as complete (end of stream: nothing more will follow).
    pub fn finish(&mut self) {
        if let Some(gop) = self.current.take() {
            let _ = gop.tx.send(Chunk::End);
        }
    }

    fn start_gop(&mut self, pts: Option<Duration>) {
        if let Some(tx) = &self.keyframes {
            let _ = tx.try_send(pts); // full means the supervisor lags; skipping one is harmless
        }
        let (chunk_tx, rx) = mpsc::unbounded_channel();
        let seg = GopSegment {
            seq: 0,
            generation: self.generation,
            pts,
            started_at: std::time::Instant::now(),
            rx,
            complete: false,
        };
        if self.producer.is_closed() {
            if !self
                .shared
                .consumer_gone_logged
                .swap(true, Ordering::Relaxed)
            {
                tracing::debug!("segment queue consumer gone; discarding media");
            }
            return;
        }
        let seq = self.shared.next_seq.fetch_add(1, Ordering::Relaxed);
        let evicted = {
            let mut gops = self.shared.waiting.gops.lock_ignoring_poison();
            let evicted = (gops.len() >= self.shared.cfg.capacity_gops.max(1))
                .then(|| gops.pop_front())
                .flatten();
            gops.push_back(GopSegment { seq, ..seg });
            evicted
        };
        self.shared.waiting.pushed.notify_one();
        self.shared.stats.segments.fetch_add(1, Ordering::Relaxed);
        self.current = Some(CurrentGop {
            tx: chunk_tx,
            bytes: 0,
        });
        if let Some(old) = evicted {
            // Dropped outside the lock; its bytes go with it.
            drop(old);
            self.note_drop();
        }
    }

    fn append(&mut self, data: Bytes) {
        let Some(gop) = self.current.as_mut() else {
            return;
        };
        gop.bytes += data.len();
        if gop.bytes > self.shared.cfg.max_gop_bytes {
            self.shared
                .stats
                .oversized_gops
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                max_bytes = self.shared.cfg.max_gop_bytes,
                "GOP exceeded max_gop_bytes without a keyframe; segment cut short"
            );
            self.current = None;
            return;
        }
        self.shared
            .stats
            .bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        if gop.tx.send(Chunk::Data(data)).is_err() {
            // The consumer dropped this segment: stop feeding it until the next GOP.
            self.current = None;
        }
    }

    fn note_drop(&self) {
        let total = self
            .shared
            .stats
            .dropped_gops
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        let mut last = self.shared.last_drop_log.lock_ignoring_poison();
        if last.is_none_or(|t| t.elapsed() >= DROP_LOG_INTERVAL) {
            *last = Some(Instant::now());
            tracing::warn!(
                dropped_gops_total = total,
                "uplink slower than camera: dropping the oldest waiting GOPs"
            );
        }
    }
}

fn pid(packet: &[u8]) -> Option<u16> {
    (packet.len() >= 4 && packet[0] == 0x47)
        .then(|| (u16::from(packet[1] & 0x1f) << 8) | u16::from(packet[2]))
}

fn starts_with_pid(data: &[u8], want: u16) -> bool {
    pid(data) == Some(want)
}

/// The last PAT and PMT packets seen, to re-emit at a GOP start if needed.
#[derive(Default)]
struct PsiCache {
    pat: Option<Bytes>,
    pmt_pid: Option<u16>,
    pmt: Option<Bytes>,
}

impl PsiCache {
    fn observe(&mut self, data: &[u8]) {
        for p in data.chunks_exact(TS_PACKET) {
            let Some(id) = pid(p) else { continue };
            let unit_start = p[1] & 0x40 != 0;
            if !unit_start {
                continue;
            }
            if id == 0 {
                self.pmt_pid = pat_first_pmt_pid(p).or(self.pmt_pid);
                self.pat = Some(Bytes::copy_from_slice(p));
            } else if Some(id) == self.pmt_pid {
                self.pmt = Some(Bytes::copy_from_slice(p));
            }
        }
    }

    fn tables(&self) -> Option<Bytes> {
        let (pat, pmt) = (self.pat.as_ref()?, self.pmt.as_ref()?);
        Some([&pat[..], &pmt[..]].concat().into())
    }
}

/// PMT PID of the first real program in a single-packet PAT.
fn pat_first_pmt_pid(p: &[u8]) -> Option<u16> {
    let mut i = 4;
    if p[3] & 0x20 != 0 {
        i += 1 + usize::from(*p.get(4)?); // adaptation field
    }
    i += 1 + usize::from(*p.get(i)?); // pointer field
    let section_len = usize::from(u16::from(p.get(i + 1)? & 0x0f) << 8 | u16::from(*p.get(i + 2)?));
    let programs = p.get(i + 8..(i + 3 + section_len).saturating_sub(4))?;
    programs
        .chunks_exact(4)
        .find(|e| e[0] != 0 || e[1] != 0)
        .map(|e| (u16::from(e[2] & 0x1f) << 8) | u16::from(e[3]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(pid: u16, unit_start: bool) -> Vec<u8> {
        let mut p = vec![0xff; TS_PACKET];
        p[0] = 0x47;
        p[1] = (pid >> 8) as u8 | if unit_start { 0x40 } else { 0 };
        p[2] = pid as u8;
        p[3] = 0x10;
        p
    }

    fn pat(pmt_pid: u16) -> Vec<u8> {
        let mut p = packet(0, true);
        let section = [
            0x00, // pointer
            0x00,
            0xb0,
            13,
            0x00,
            0x01,
            0xc1,
            0x00,
            0x00, // header, length 13
            0x00,
            0x01,
            0xe0 | (pmt_pid >> 8) as u8,
            pmt_pid as u8, // program 1
            0,
            0,
            0,
            0, // crc (unchecked)
        ];
        p[4..4 + section.len()].copy_from_slice(&section);
        p
    }

    #[test]
    fn finds_pmt_pid_in_pat() {
        assert_eq!(pat_first_pmt_pid(&pat(0x20)), Some(0x20));
    }

    #[tokio::test]
    async fn drops_the_oldest_whole_gops_when_full_and_keeps_order() {
        let (tx, mut q) = segment_queue(GopQueueLimits {
            capacity_gops: 2,
            max_gop_bytes: 1 << 20,
        });
        let mut w = tx.writer(1, None);
        // Bytes before the first keyframe are discarded.
        w.push(&packet(0x41, false), false, None);
        for _ in 0..5 {
            w.push(&pat(0x20), true, None);
            w.push(&packet(0x20, true), false, None);
            w.push(&packet(0x41, true), false, None);
        }
        assert_eq!(q.len(), 2);
        assert_eq!(q.stats().dropped_gops.load(Ordering::Relaxed), 3);
        // The freshest two waited: the three oldest were dropped.
        let mut first = q.next().await.unwrap();
        assert_eq!(first.seq, 3);
        assert_eq!(first.collect().await.len(), 3 * TS_PACKET);
        assert!(first.is_complete());
        // The queue has room again: the next GOP is admitted whole and starts with PAT.
        w.push(&pat(0x20), true, None);
        drop(w);
        let mut second = q.next().await.unwrap();
        assert_eq!(second.seq, 4);
        second.collect().await;
        let mut third = q.next().await.unwrap();
        assert_eq!(third.seq, 5);
        let bytes = third.collect().await;
        assert_eq!(pid(&bytes), Some(0));
        assert!(!third.is_complete(), "writer dropped mid-GOP");
        // Every producer gone and nothing waiting: the queue ends.
        drop(tx);
        assert!(q.next().await.is_none());
    }

    /// The GOP the consumer is sending is its own: a full queue drops only
    /// waiting ones, so the segment in flight still ends whole.
    #[tokio::test]
    async fn the_gop_being_sent_is_never_dropped() {
        let (tx, mut q) = segment_queue(GopQueueLimits {
            capacity_gops: 1,
            max_gop_bytes: 1 << 20,
        });
        let mut w = tx.writer(1, None);
        w.push(&pat(0x20), true, None);
        w.push(&packet(0x41, true), false, None);
        let mut sending = q.next().await.unwrap();
        for _ in 0..4 {
            w.push(&pat(0x20), true, None);
            w.push(&packet(0x41, true), false, None);
        }
        assert_eq!(sending.collect().await.len(), 2 * TS_PACKET);
        assert!(sending.is_complete());
        assert_eq!(q.stats().dropped_gops.load(Ordering::Relaxed), 3);
        assert_eq!(q.next().await.unwrap().seq, 4);
    }

    #[tokio::test]
    async fn prepends_cached_tables_when_keyframe_lacks_them() {
        let (tx, mut q) = segment_queue(GopQueueLimits::default());
        let mut w = tx.writer(1, None);
        w.push(&pat(0x20), true, None);
        w.push(&packet(0x20, true), false, None);
        w.push(&packet(0x41, true), true, None);
        drop(w);
        q.next().await.unwrap().collect().await;
        let bytes = q.next().await.unwrap().collect().await;
        let pids: Vec<_> = bytes.chunks(TS_PACKET).map(|p| pid(p).unwrap()).collect();
        assert_eq!(pids, [0, 0x20, 0x41]);
    }

    /// Passed-through H.264 (an RTSP camera): mpegtsmux flags the PAT that
    /// opens the headers and the IDR after them both as keyframes.
    #[tokio::test]
    async fn headers_and_their_idr_stay_one_gop() {
        let (tx, mut q) = segment_queue(GopQueueLimits::default());
        let mut w = tx.writer(1, None);
        for _ in 0..2 {
            w.push_buffer(&pat(0x20), true, true, None);
            w.push_buffer(&packet(0x20, true), false, true, None);
            w.push_buffer(&packet(0x41, true), false, true, None); // SPS/PPS
            w.push_buffer(&packet(0x41, true), true, true, None); // IDR
            w.push_buffer(&packet(0x41, true), false, false, None); // P
        }
        drop(w);
        for _ in 0..2 {
            let bytes = q.next().await.unwrap().collect().await;
            let pids: Vec<_> = bytes.chunks(TS_PACKET).map(|p| pid(p).unwrap()).collect();
            assert_eq!(pids, [0, 0x20, 0x41, 0x41, 0x41]);
        }
        // A keyframe after real frames is a new GOP, headers or not.
        let mut w = tx.writer(2, None);
        w.push_buffer(&pat(0x20), true, true, None);
        w.push_buffer(&packet(0x41, true), false, false, None);
        w.push_buffer(&packet(0x41, true), true, true, None);
        drop(w);
        assert_eq!(q.next().await.unwrap().collect().await.len(), 2 * TS_PACKET);
    }

    #[tokio::test]
    async fn oversized_gop_is_cut_and_counted() {
        let (tx, mut q) = segment_queue(GopQueueLimits {
            capacity_gops: 2,
            max_gop_bytes: 2 * TS_PACKET,
        });
        let mut w = tx.writer(1, None);
        w.push(&pat(0x20), true, None);
        for _ in 0..5 {
            w.push(&packet(0x41, true), false, None);
        }
        let mut seg = q.next().await.unwrap();
        assert_eq!(seg.collect().await.len(), 2 * TS_PACKET);
        assert!(!seg.is_complete());
        assert_eq!(q.stats().oversized_gops.load(Ordering::Relaxed), 1);
    }
}
