//! One trickle segment held by the server: an append-only list of byte chunks
//! that any number of readers follow while the publisher is still writing.
//!
//! The writer never waits for readers: it appends and signals. Each reader keeps
//! its own position, so a slow reader only delays itself. When the segment
//! leaves the channel's ring it is *evicted*: its bytes are dropped at once (so
//! memory stays bounded by ring size x max segment size) and readers still in
//! the middle of it see their body fail rather than silently truncated.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::watch;

use crate::sync::LockIgnoringPoison;

#[derive(Debug, Default)]
struct SegmentState {
    chunks: Vec<Bytes>,
    len: usize,
    /// No more bytes will arrive.
    closed: bool,
    /// Bytes were dropped because the segment left the ring.
    evicted: bool,
    /// A POST currently owns this segment (preconnected or streaming).
    writer_attached: bool,
}

/// A segment shared between one writer and many readers.
#[derive(Debug)]
pub struct Segment {
    seq: i64,
    state: Mutex<SegmentState>,
    changed: watch::Sender<()>,
    readers: AtomicUsize,
}

/// What a reader sees next.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadEvent {
    Data(Bytes),
    /// The segment ended normally after the bytes already returned.
    End,
    /// The segment was evicted from the ring while this reader was behind.
    Evicted,
}

impl Segment {
    pub fn new(seq: i64) -> Arc<Self> {
        let (changed, _) = watch::channel(());
        Arc::new(Self {
            seq,
            state: Mutex::new(SegmentState::default()),
            changed,
            readers: AtomicUsize::new(0),
        })
    }

    pub fn seq(&self) -> i64 {
        self.seq
    }

    /// Bytes appended so far.
    pub fn len(&self) -> usize {
        self.state.lock_ignoring_poison().len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_closed(&self) -> bool {
        self.state.lock_ignoring_poison().closed
    }

    /// Open, empty and claimed by no POST: a segment pre-created for readers
    /// that nobody is writing.
    pub fn is_unclaimed(&self) -> bool {
        let st = self.state.lock_ignoring_poison();
        !st.closed && st.len == 0 && !st.writer_attached
    }

    /// A POST holds this segment and it has not ended: a write is in
    /// progress (or preconnected) here.
    pub fn is_being_written(&self) -> bool {
        let st = self.state.lock_ignoring_poison();
        st.writer_attached && !st.closed
    }

    /// Claims the segment for a POST. Fails when another POST holds it or when
    /// it already holds data or ended: the channel decides when a POST gets a
    /// fresh segment instead.
    pub fn attach_writer(&self) -> bool {
        let mut st = self.state.lock_ignoring_poison();
        if st.writer_attached || st.len > 0 || st.closed {
            return false;
        }
        st.writer_attached = true;
        true
    }

    /// Releases a writer that delivered nothing, so a retry of the same seq
    /// can claim the segment again.
    pub fn detach_writer(&self) {
        let mut st = self.state.lock_ignoring_poison();
        if st.len == 0 {
            st.writer_attached = false;
        }
    }

    /// Appends bytes; returns false (and drops them) once the segment is closed.
    pub fn append(&self, chunk: Bytes) -> bool {
        {
            let mut st = self.state.lock_ignoring_poison();
            if st.closed {
                return false;
            }
            st.len += chunk.len();
            st.chunks.push(chunk);
        }
        self.changed.send_replace(());
        true
    }

    /// Ends the segment: readers finish after the bytes already written.
    pub fn close(&self) {
        {
            let mut st = self.state.lock_ignoring_poison();
            if st.closed {
                return;
            }
            st.closed = true;
        }
        self.changed.send_replace(());
    }

    /// Drops the bytes and fails readers that have not finished.
    pub fn evict(&self) {
        {
            let mut st = self.state.lock_ignoring_poison();
            st.closed = true;
            st.evicted = true;
            st.chunks = Vec::new();
        }
        self.changed.send_replace(());
    }

    /// Waits until the segment changes (a chunk, close or eviction).
    pub fn watch(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }

    /// Registers a reader, refusing past `max` concurrent readers.
    pub fn add_reader(self: &Arc<Self>, max: usize) -> Option<SegmentReader> {
        let prev = self.readers.fetch_add(1, Ordering::AcqRel);
        if prev >= max {
            self.readers.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let mut changed = self.changed.subscribe();
        changed.mark_changed();
        Some(SegmentReader {
            segment: self.clone(),
            next_chunk: 0,
            changed,
        })
    }

    pub fn reader_count(&self) -> usize {
        self.readers.load(Ordering::Acquire)
    }
}

/// One reader's position in a segment. Dropping it releases its reader slot.
#[derive(Debug)]
pub struct SegmentReader {
    segment: Arc<Segment>,
    next_chunk: usize,
    changed: watch::Receiver<()>,
}

impl SegmentReader {
    pub fn segment(&self) -> &Arc<Segment> {
        &self.segment
    }

    /// The next chunk, waiting while the writer has nothing new.
    pub async fn next(&mut self) -> ReadEvent {
        loop {
            // Mark the current version seen *before* looking at the state, so a
            // write that lands between the look and the wait still wakes us.
            self.changed.borrow_and_update();
            {
                let st = self.segment.state.lock_ignoring_poison();
                if st.evicted {
                    return ReadEvent::Evicted;
                }
                if let Some(chunk) = st.chunks.get(self.next_chunk) {
                    self.next_chunk += 1;
                    return ReadEvent::Data(chunk.clone());
                }
                if st.closed {
                    return ReadEvent::End;
                }
            }
            if self.changed.changed().await.is_err() {
                // The sender lives inside the segment we hold: cannot happen,
                // but ending is the only sane answer if it ever did.
                return ReadEvent::End;
            }
        }
    }
}

impl Drop for SegmentReader {
    fn drop(&mut self) {
        self.segment.readers.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readers_follow_writer_and_end() {
        let seg = Segment::new(3);
        let mut a = seg.add_reader(10).unwrap();
        let mut b = seg.add_reader(10).unwrap();
        seg.append(Bytes::from_static(b"ab"));
        assert_eq!(a.next().await, ReadEvent::Data(Bytes::from_static(b"ab")));
        seg.append(Bytes::from_static(b"cd"));
        seg.close();
        assert_eq!(a.next().await, ReadEvent::Data(Bytes::from_static(b"cd")));
        assert_eq!(a.next().await, ReadEvent::End);
        assert_eq!(b.next().await, ReadEvent::Data(Bytes::from_static(b"ab")));
        assert_eq!(b.next().await, ReadEvent::Data(Bytes::from_static(b"cd")));
        assert_eq!(b.next().await, ReadEvent::End);
    }

    #[tokio::test]
    async fn waiting_reader_wakes_on_append() {
        let seg = Segment::new(0);
        let mut r = seg.add_reader(1).unwrap();
        let waiter = tokio::spawn(async move { r.next().await });
        tokio::task::yield_now().await;
        seg.append(Bytes::from_static(b"x"));
        assert_eq!(
            waiter.await.unwrap(),
            ReadEvent::Data(Bytes::from_static(b"x"))
        );
    }

    #[tokio::test]
    async fn eviction_fails_unfinished_readers_and_frees_bytes() {
        let seg = Segment::new(0);
        let mut r = seg.add_reader(1).unwrap();
        seg.append(Bytes::from(vec![0u8; 1024]));
        seg.evict();
        assert_eq!(r.next().await, ReadEvent::Evicted);
        assert_eq!(seg.state.lock_ignoring_poison().chunks.len(), 0);
    }

    #[test]
    fn reader_limit_and_release() {
        let seg = Segment::new(0);
        let a = seg.add_reader(1).unwrap();
        assert!(seg.add_reader(1).is_none());
        drop(a);
        assert!(seg.add_reader(1).is_some());
    }

    #[test]
    fn second_writer_is_refused() {
        let seg = Segment::new(0);
        assert!(seg.attach_writer());
        assert!(!seg.attach_writer());
        let written = Segment::new(1);
        written.append(Bytes::from_static(b"x"));
        assert!(!written.attach_writer());
    }
}
