//! A trickle channel on the server: the ring of the last five segments and the
//! next write position, with the exact sequence rules Livepeer's server uses
//! (see `trickle-protocol.md`).

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
    /// Not held: answer 470 with `seq` asked and `latest` (next write seq).
    Missing { seq: i64, latest: i64 },
    /// The channel is closing: end of stream.
    Closed { seq: i64, latest: i64 },
}

/// Outcome of resolving a POST.
#[derive(Debug)]
pub enum WriteSlot {
    Claimed(Arc<Segment>),
    /// The seq already holds data or another POST: it is never replaced.
    Taken {
        seq: i64,
    },
    Closed,
}

#[derive(Debug)]
struct ChannelState {
    ring: [Option<Arc<Segment>>; RING_SIZE],
    next_write: i64,
    /// Last time a segment began (first byte of a POST) or the channel was made.
    last_write: Instant,
    closed: bool,
}

#[derive(Debug)]
pub struct Channel {
    name: String,
    content_type: Option<String>,
    state: Mutex<ChannelState>,
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
                last_write: Instant::now(),
                closed: false,
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

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
        ReadSlot::Missing { seq, latest }
    }

    /// Finds or creates the segment a POST writes. `reset` closes every other
    /// segment so readers stuck on a dead publisher's positions wake up.
    pub fn for_write(&self, seq: i64, reset: bool, content_type: Option<String>) -> WriteSlot {
        let mut st = self.state.lock_ignoring_poison();
        if st.closed {
            return WriteSlot::Closed;
        }
        let seq = if seq == -1 { st.next_write } else { seq };
        if reset {
            // Only older segments: the same publisher's preconnected POSTs for
            // later seqs may already be waiting and must survive.
            for s in st.ring.iter().flatten() {
                if s.seq() < seq {
                    s.close();
                }
            }
            st.next_write = seq;
        }
        let pos = slot(seq);
        let seg = match &st.ring[pos] {
            // A segment that ended empty holds nothing to protect: a new POST
            // for its seq starts it afresh.
            Some(existing) if existing.seq() == seq && !existing.ended_empty() => existing.clone(),
            _ => {
                let seg = Segment::new(seq);
                if let Some(old) = st.ring[pos].replace(seg.clone()) {
                    old.evict();
                }
                seg
            }
        };
        let content_type = content_type.or_else(|| self.content_type.clone());
        if seg.attach_writer(content_type) {
            WriteSlot::Claimed(seg)
        } else {
            WriteSlot::Taken { seq }
        }
    }

    /// Called when a POST delivers its first byte, or ends empty: either way
    /// the next write position moves past `seq`.
    pub fn advance_past(&self, seq: i64) {
        let mut st = self.state.lock_ignoring_poison();
        st.next_write = st.next_write.max(seq + 1);
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
        let WriteSlot::Claimed(seg) = ch.for_write(seq, false, None) else {
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
            ReadSlot::Missing { seq: 2, latest: 8 }
        ));
        assert!(matches!(ch.for_read(3), ReadSlot::Found(s) if s.seq() == 3));
        assert!(matches!(ch.for_read(-2), ReadSlot::Found(s) if s.seq() == 7));
        assert!(matches!(ch.for_read(-1), ReadSlot::Found(s) if s.seq() == 8));
        assert!(matches!(ch.for_read(10), ReadSlot::Missing { .. }));
    }

    #[tokio::test]
    async fn fresh_channel_precreates_zero_and_one() {
        let ch = Channel::new("c".into(), None);
        assert!(matches!(ch.for_read(0), ReadSlot::Found(_)));
        assert!(matches!(ch.for_read(1), ReadSlot::Found(_)));
        assert!(matches!(ch.for_read(2), ReadSlot::Missing { .. }));
        assert!(matches!(ch.for_read(-2), ReadSlot::Found(s) if s.seq() == 0));
    }

    #[tokio::test]
    async fn written_seq_is_not_replaced() {
        let ch = Channel::new("c".into(), None);
        write(&ch, 0, b"first");
        assert!(matches!(
            ch.for_write(0, false, None),
            WriteSlot::Taken { seq: 0 }
        ));
    }

    #[tokio::test]
    async fn reset_closes_other_segments() {
        let ch = Channel::new("c".into(), None);
        write(&ch, 0, b"a");
        let ReadSlot::Found(waiting) = ch.for_read(1) else {
            panic!()
        };
        assert!(!waiting.is_closed());
        let WriteSlot::Claimed(seg) = ch.for_write(5, true, None) else {
            panic!()
        };
        assert!(waiting.is_closed());
        assert_eq!(seg.seq(), 5);
        assert_eq!(ch.next_write(), 5);
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
        assert!(matches!(ch.for_write(-1, false, None), WriteSlot::Closed));
    }
}
