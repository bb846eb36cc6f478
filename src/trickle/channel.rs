//! A trickle channel on the server: the ring of the last five segments and the
//! next write position, with the exact sequence rules Livepeer's server uses
//! (see `trickle-protocol.md`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::segment::Segment;
use crate::sync::LockIgnoringPoison;

/// Segments a channel keeps; readers further behind get 470.
pub const RING_SIZE: usize = 5;

/// Outcome of resolving a GET.
#[derive(Debug)]
pub enum ReadSlot {
    /// The segment exists (or was pre-created for a reader at the live edge).
    Found(Arc<Segment>),
    /// Not held: answer 470.
    Missing(Missing),
    /// The channel is closing: end of stream.
    Closed { seq: i64, latest: i64 },
}

/// A seq the channel does not hold, as a 470 tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missing {
    /// The seq asked.
    pub seq: i64,
    /// Where the reader should go on: the next write seq, or (when
    /// `rewound`) the oldest held segment of the restarted publisher's run.
    pub latest: i64,
    /// The seq was the live edge before a publisher restarted below it: the
    /// reader must go back to `latest` rather than wait for the new run to
    /// climb up to it.
    pub rewound: bool,
}

/// Outcome of resolving a POST.
#[derive(Debug)]
pub enum WriteSlot {
    Claimed(Arc<Segment>),
    /// Another POST holds this seq and has not sent a byte yet.
    Taken {
        seq: i64,
    },
    Closed,
}

#[derive(Debug)]
struct ChannelState {
    ring: [Option<Arc<Segment>>; RING_SIZE],
    next_write: i64,
    /// The highest `next_write` ever reached. Above `next_write` only after
    /// a publisher restarted at an older seq: seqs in between were the live
    /// edge of the run that stopped.
    high_water: i64,
    /// The seq the last restart below the write position began at.
    rewound_to: i64,
    /// Last time a segment began (first byte of a POST) or the channel was made.
    last_write: Instant,
    closed: bool,
}

impl ChannelState {
    fn set_next_write(&mut self, seq: i64) {
        self.next_write = seq;
        self.high_water = self.high_water.max(seq);
    }

    /// Whether `seq` was the live edge of a run that a publisher restarted
    /// below.
    fn left_behind(&self, seq: i64) -> bool {
        seq > self.next_write && seq <= self.high_water
    }

    /// A reader left behind by a restart is sent to the first segment of
    /// the new run that the ring still holds, not to the write position: by
    /// the time it asks, the new run may be several segments on.
    fn missing(&self, seq: i64) -> Missing {
        if !self.left_behind(seq) {
            return Missing {
                seq,
                latest: self.next_write,
                rewound: false,
            };
        }
        let oldest_held = self.next_write - (RING_SIZE as i64 - 1);
        Missing {
            seq,
            latest: self.rewound_to.max(oldest_held).min(self.next_write),
            rewound: true,
        }
    }

    /// Takes out of the ring every segment `retire` picks, waking its
    /// readers: one that holds data is closed (readers finish what it
    /// holds); one that never got a byte is evicted, so its readers get a
    /// 470 naming the live edge instead of an empty segment that would send
    /// them on to the next seq.
    fn retire(&mut self, retire: impl Fn(&Segment) -> bool) {
        for entry in self.ring.iter_mut() {
            let Some(seg) = entry.as_ref() else { continue };
            if !retire(seg) {
                continue;
            }
            if seg.is_empty() {
                seg.evict();
                *entry = None;
            } else {
                seg.close();
            }
        }
    }
}

#[derive(Debug)]
pub struct Channel {
    name: String,
    content_type: Option<String>,
    state: Mutex<ChannelState>,
    /// POST requests open on this channel right now (waiting or streaming).
    open_posts: AtomicUsize,
}

/// One open POST on a channel, counted until dropped.
#[derive(Debug)]
pub struct OpenPost {
    channel: Arc<Channel>,
}

impl Drop for OpenPost {
    fn drop(&mut self) {
        self.channel.open_posts.fetch_sub(1, Ordering::AcqRel);
    }
}

fn slot(seq: i64) -> usize {
    seq.rem_euclid(RING_SIZE as i64) as usize
}

impl Channel {
    pub fn new(name: String, content_type: Option<String>) -> Self {
        Self {
            name,
            content_type,
            state: Mutex::new(ChannelState {
                ring: Default::default(),
                next_write: 0,
                high_water: 0,
                rewound_to: 0,
                last_write: Instant::now(),
                closed: false,
            }),
            open_posts: AtomicUsize::new(0),
        }
    }

    /// Counts one more open POST, refusing past `max` at once: a publisher
    /// needs two (the segment streaming and its preconnected successor).
    pub fn open_post(self: &Arc<Self>, max: usize) -> Option<OpenPost> {
        let prev = self.open_posts.fetch_add(1, Ordering::AcqRel);
        let post = OpenPost {
            channel: self.clone(),
        };
        (prev < max).then_some(post)
    }

    /// POSTs open on this channel now.
    pub fn open_posts(&self) -> usize {
        self.open_posts.load(Ordering::Acquire)
    }

    /// Whether a POST for `seq` is still queued behind the segment before
    /// it: `seq - 1` is held and a POST is still writing it. Such a POST is
    /// a publisher's preconnect; once the segment before it ends (or there
    /// is none), it is the channel's current write and must start sending.
    pub fn waits_behind(&self, seq: i64) -> bool {
        let st = self.state.lock_ignoring_poison();
        let Some(before) = seq.checked_sub(1).filter(|s| *s >= 0) else {
            return false;
        };
        st.ring[slot(before)]
            .as_ref()
            .is_some_and(|s| s.seq() == before && s.is_being_written())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The type given at creation (`Expect-Content`): what every GET answers,
    /// whatever type the publisher's POSTs name.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    pub fn next_write(&self) -> i64 {
        self.state.lock_ignoring_poison().next_write
    }

    pub fn is_closed(&self) -> bool {
        self.state.lock_ignoring_poison().closed
    }

    pub fn last_write(&self) -> Instant {
        self.state.lock_ignoring_poison().last_write
    }

    /// How a 470 for `seq` reads now (for a reader whose segment was evicted).
    pub fn missing(&self, seq: i64) -> Missing {
        self.state.lock_ignoring_poison().missing(seq)
    }

    /// Resolves `-1` (next write) and `-2` (current write) to a real seq.
    fn resolve_read_seq(st: &ChannelState, seq: i64) -> i64 {
        match seq {
            -1 => st.next_write,
            -2 => (st.next_write - 1).max(0),
            s => s,
        }
    }

    /// Finds the segment a GET asks for, pre-creating it when the reader is
    /// exactly at the live edge (or asks seq 1 on a fresh channel).
    pub fn for_read(&self, seq: i64) -> ReadSlot {
        let mut st = self.state.lock_ignoring_poison();
        let seq = Self::resolve_read_seq(&st, seq);
        let latest = st.next_write;
        if seq >= 0
            && let Some(seg) = &st.ring[slot(seq)]
            && seg.seq() == seq
        {
            return ReadSlot::Found(seg.clone());
        }
        if st.closed {
            return ReadSlot::Closed { seq, latest };
        }
        if seq >= 0 && (seq == st.next_write || (st.next_write == 0 && seq == 1)) {
            let seg = Segment::new(seq);
            if let Some(old) = st.ring[slot(seq)].replace(seg.clone()) {
                old.evict();
            }
            return ReadSlot::Found(seg);
        }
        ReadSlot::Missing(st.missing(seq))
    }

    /// Finds or creates the segment a POST writes.
    ///
    /// A seq that holds no byte yet (waiting for its POST, or whose POST died
    /// first or ended empty) is the same publisher trying it again: it gets
    /// that segment. A POST at 0 below the write position is a publisher
    /// that restarted without saying so (Go's and pytrickle's start again at
    /// 0; any other older seq whose bytes arrived, or whose slot a newer seq
    /// holds, is a late duplicate and is refused as taken; an older seq never
    /// written is a preconnect that lost a race and is written):
    /// like `reset`, it retires the older segments, and it also wakes the
    /// readers parked above it and moves the write position back to its seq,
    /// so live readers follow the new run. A seq that holds data is never
    /// written into: the POST gets a fresh segment in its place.
    pub fn for_write(&self, seq: i64, reset: bool) -> WriteSlot {
        let mut st = self.state.lock_ignoring_poison();
        if st.closed {
            return WriteSlot::Closed;
        }
        let seq = if seq == -1 { st.next_write } else { seq };
        let pos = slot(seq);
        let held = st.ring[pos].as_ref().filter(|s| s.seq() == seq).cloned();
        let retry = held.as_ref().is_some_and(|s| s.is_empty());
        // Restarted publishers (Go's, pytrickle's) begin again at 0. A POST
        // to another seq below the position is a late duplicate, such as a
        // client's retry of a segment whose bytes did arrive: it must
        // neither send live readers back nor evict a newer segment.
        let rewind = seq < st.next_write && !retry && seq == 0;
        // A first POST for a seq below the position that was never written:
        // its slot is free or holds an older seq, and it is still within the
        // ring. The SDK's preconnected POST for N can reach us after the one
        // for N+1 has begun (two connections race); Go's server accepts it,
        // and refusing it lost segment N (`interop_python`). Writing it
        // evicts nothing newer and leaves the position where it is.
        let late_first = seq < st.next_write
            && held.is_none()
            && seq > st.next_write - RING_SIZE as i64
            && st.ring[pos].as_ref().is_none_or(|s| s.seq() < seq);
        if seq < st.next_write && !retry && !rewind && !reset && !late_first {
            return WriteSlot::Taken { seq };
        }
        if reset || rewind {
            // Only older segments: the same publisher's preconnected POSTs for
            // later seqs may already be waiting and must survive.
            st.retire(|s| s.seq() < seq);
            st.set_next_write(seq);
        }
        if rewind {
            tracing::info!(channel = %self.name, seq, was = st.next_write, "a POST at 0 below the write position: the publisher restarted; readers go back");
            // Readers parked above the new seq wait for the run that stopped.
            // A POST waiting right above it may be the new run's preconnect;
            // one further up is the old run's and goes too.
            st.retire(|s| s.seq() > seq && s.is_empty() && (s.seq() > seq + 1 || s.is_unclaimed()));
            st.rewound_to = seq;
        }
        let seg = match held {
            Some(existing) if existing.is_empty() && !existing.is_closed() => existing,
            _ => {
                let seg = Segment::new(seq);
                if let Some(old) = st.ring[pos].replace(seg.clone()) {
                    old.evict();
                }
                seg
            }
        };
        if seg.attach_writer() {
            WriteSlot::Claimed(seg)
        } else {
            WriteSlot::Taken { seq }
        }
    }

    /// Releases a segment whose POST failed before its first byte, so a retry
    /// can claim it. One the old run left above a restarted publisher is
    /// retired instead: no one will write it, and its readers must go back.
    pub fn writer_failed(&self, seg: &Arc<Segment>) {
        seg.detach_writer();
        let mut st = self.state.lock_ignoring_poison();
        if st.left_behind(seg.seq()) && seg.is_unclaimed() {
            st.retire(|s| std::ptr::eq(s, seg.as_ref()));
        }
    }

    /// Called when a POST delivers its first byte, or ends empty: either way
    /// the next write position moves past `seq`. Not for a segment retired
    /// from the ring: a restart below it moved the position on purpose.
    pub fn advance_past(&self, seq: i64) {
        let mut st = self.state.lock_ignoring_poison();
        let held = st.ring[slot(seq)].as_ref().is_some_and(|s| s.seq() == seq);
        if !held {
            return;
        }
        let next = st.next_write.max(seq + 1);
        st.set_next_write(next);
        st.last_write = Instant::now();
    }

    /// Closes one segment early; false when that seq is not held.
    pub fn close_segment(&self, seq: i64) -> bool {
        let st = self.state.lock_ignoring_poison();
        match &st.ring[slot(seq)] {
            Some(seg) if seg.seq() == seq && seq >= 0 => {
                seg.close();
                true
            }
            _ => false,
        }
    }

    /// Closes the channel: every reader and waiting writer wakes up.
    pub fn close(&self) {
        let mut st = self.state.lock_ignoring_poison();
        st.closed = true;
        for seg in st.ring.iter().flatten() {
            seg.close();
        }
    }

    /// Bytes currently held by the ring, for memory accounting.
    pub fn held_bytes(&self) -> usize {
        self.state
            .lock_ignoring_poison()
            .ring
            .iter()
            .flatten()
            .map(|s| s.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn write(ch: &Channel, seq: i64, data: &'static [u8]) -> Arc<Segment> {
        let WriteSlot::Claimed(seg) = ch.for_write(seq, false) else {
            panic!("seq {seq} not claimed");
        };
        ch.advance_past(seg.seq());
        seg.append(Bytes::from_static(data));
        seg.close();
        seg
    }

    #[tokio::test]
    async fn ring_keeps_last_five() {
        let ch = Channel::new("c".into(), None);
        for seq in 0..8 {
            write(&ch, seq, b"x");
        }
        assert_eq!(ch.next_write(), 8);
        assert!(matches!(
            ch.for_read(2),
            ReadSlot::Missing(Missing {
                seq: 2,
                latest: 8,
                rewound: false
            })
        ));
        assert!(matches!(ch.for_read(3), ReadSlot::Found(s) if s.seq() == 3));
        assert!(matches!(ch.for_read(-2), ReadSlot::Found(s) if s.seq() == 7));
        assert!(matches!(ch.for_read(-1), ReadSlot::Found(s) if s.seq() == 8));
        assert!(matches!(ch.for_read(10), ReadSlot::Missing(_)));
    }

    #[tokio::test]
    async fn fresh_channel_precreates_zero_and_one() {
        let ch = Channel::new("c".into(), None);
        assert!(matches!(ch.for_read(0), ReadSlot::Found(_)));
        assert!(matches!(ch.for_read(1), ReadSlot::Found(_)));
        assert!(matches!(ch.for_read(2), ReadSlot::Missing(_)));
        assert!(matches!(ch.for_read(-2), ReadSlot::Found(s) if s.seq() == 0));
    }

    #[tokio::test]
    async fn a_waiting_post_keeps_its_seq_from_a_second_one() {
        let ch = Channel::new("c".into(), None);
        let WriteSlot::Claimed(_waiting) = ch.for_write(0, false) else {
            panic!()
        };
        assert!(matches!(
            ch.for_write(0, false),
            WriteSlot::Taken { seq: 0 }
        ));
    }

    #[tokio::test]
    async fn a_post_that_arrives_after_the_next_seq_began_is_written_not_refused() {
        let ch = Channel::new("c".into(), None);
        write(&ch, 0, b"a");
        // The preconnected POST for 2 overtook the one for 1.
        write(&ch, 2, b"c");
        assert_eq!(ch.next_write(), 3);
        let WriteSlot::Claimed(late) = ch.for_write(1, false) else {
            panic!("the late first POST for 1 was refused")
        };
        assert_eq!(late.seq(), 1);
        ch.advance_past(1);
        assert_eq!(
            ch.next_write(),
            3,
            "a late seq does not move the position back"
        );
        assert!(matches!(ch.for_read(2), ReadSlot::Found(s) if s.seq() == 2));
        // A seq whose bytes did arrive is still a duplicate, and one whose
        // slot a newer seq holds is too old to write.
        assert!(matches!(
            ch.for_write(2, false),
            WriteSlot::Taken { seq: 2 }
        ));
        for seq in 3..8 {
            write(&ch, seq, b"x");
        }
        assert!(matches!(
            ch.for_write(1, false),
            WriteSlot::Taken { seq: 1 }
        ));
    }

    #[tokio::test]
    async fn a_seq_that_got_no_byte_is_claimed_again_without_a_rewind() {
        let ch = Channel::new("c".into(), None);
        write(&ch, 0, b"a");
        // POST 1 ends empty: the position moves on, then the publisher retries 1.
        let WriteSlot::Claimed(empty) = ch.for_write(1, false) else {
            panic!()
        };
        empty.detach_writer();
        empty.close();
        ch.advance_past(1);
        let ReadSlot::Found(waiting) = ch.for_read(2) else {
            panic!()
        };
        let WriteSlot::Claimed(again) = ch.for_write(1, false) else {
            panic!("seq 1 not claimed again")
        };
        assert_eq!(again.seq(), 1);
        assert_eq!(ch.next_write(), 2);
        assert!(!waiting.is_closed(), "a retry is not a restart");
    }

    #[tokio::test]
    async fn a_post_below_the_position_rewinds_and_wakes_parked_readers() {
        let ch = Channel::new("c".into(), None);
        for seq in 0..8 {
            write(&ch, seq, b"old");
        }
        let ReadSlot::Found(parked) = ch.for_read(8) else {
            panic!()
        };
        let WriteSlot::Claimed(seg) = ch.for_write(0, false) else {
            panic!("restart at 0 refused")
        };
        assert_eq!(seg.seq(), 0);
        assert!(parked.is_closed());
        assert_eq!(ch.next_write(), 0);
        assert_eq!(
            ch.missing(8),
            Missing {
                seq: 8,
                latest: 0,
                rewound: true
            }
        );
        assert!(matches!(ch.for_read(8), ReadSlot::Missing(m) if m.rewound));
        // The new run's preconnect above it is not taken for the old run's.
        let WriteSlot::Claimed(next) = ch.for_write(1, false) else {
            panic!()
        };
        assert!(!next.is_closed());
        ch.advance_past(0);
        ch.advance_past(1);
        assert_eq!(ch.next_write(), 2);
        // Readers left behind go back to where the new run began.
        assert_eq!(ch.missing(8).latest, 0);
    }

    #[tokio::test]
    async fn a_post_to_a_held_seq_gets_a_fresh_segment() {
        let ch = Channel::new("c".into(), None);
        let old = write(&ch, 0, b"old");
        write(&ch, 1, b"old");
        let WriteSlot::Claimed(seg) = ch.for_write(0, false) else {
            panic!("held seq refused")
        };
        assert!(!Arc::ptr_eq(&seg, &old));
        assert!(seg.is_empty());
        assert_eq!(ch.next_write(), 0);
    }

    #[tokio::test]
    async fn reset_closes_other_segments() {
        let ch = Channel::new("c".into(), None);
        write(&ch, 0, b"a");
        let ReadSlot::Found(waiting) = ch.for_read(1) else {
            panic!()
        };
        assert!(!waiting.is_closed());
        let WriteSlot::Claimed(seg) = ch.for_write(5, true) else {
            panic!()
        };
        assert!(waiting.is_closed());
        assert_eq!(seg.seq(), 5);
        assert_eq!(ch.next_write(), 5);
    }

    #[tokio::test]
    async fn a_preconnected_post_waits_behind_the_segment_being_written() {
        let ch = Arc::new(Channel::new("c".into(), None));
        let WriteSlot::Claimed(zero) = ch.for_write(0, false) else {
            panic!()
        };
        assert!(!ch.waits_behind(0), "nothing before seq 0");
        ch.advance_past(0);
        zero.append(Bytes::from_static(b"a"));
        let WriteSlot::Claimed(_one) = ch.for_write(1, false) else {
            panic!()
        };
        assert!(ch.waits_behind(1));
        zero.close();
        assert!(!ch.waits_behind(1), "current once the segment before ended");
        assert!(!ch.waits_behind(7), "nothing held before seq 7");
        let first = ch.open_post(1).expect("one POST under the limit");
        assert!(ch.open_post(1).is_none());
        assert_eq!(ch.open_posts(), 1, "a refused POST is not counted");
        drop(first);
        assert_eq!(ch.open_posts(), 0);
    }

    #[tokio::test]
    async fn closed_channel_refuses_reads_and_writes() {
        let ch = Channel::new("c".into(), None);
        let ReadSlot::Found(waiting) = ch.for_read(0) else {
            panic!()
        };
        ch.close();
        assert!(waiting.is_closed());
        assert!(matches!(ch.for_read(3), ReadSlot::Closed { .. }));
        assert!(matches!(ch.for_write(-1, false), WriteSlot::Closed));
    }
}
