//! The data decoder (`src/data/`): the bytes of one segment in, items out.
//!
//! Input layout: byte 0 picks the segment's Content-Type, byte 1 the limits
//! (small ones, so the over-limit paths run), byte 2 the chunk size the
//! bytes arrive in; the rest is the segment. Beyond "never panics", checks
//! the decoder's promise that its buffer never grows past `max_line_bytes`.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use tokio::time::Instant;
use trickle_edge::data::{DecodeLimits, SegmentDecoder};

const CONTENT_TYPES: &[Option<&str>] = &[
    Some("application/jsonl"),
    Some("application/x-ndjson; charset=utf-8"),
    Some("application/json"),
    Some("application/vnd.x+json"),
    Some("text/plain"),
    Some("application/octet-stream"),
    None,
    Some("image/png"),
];

fuzz_target!(|data: &[u8]| {
    let [ct, limits, chunk, body @ ..] = data else {
        return;
    };
    let limits = DecodeLimits {
        max_line_bytes: 16 << (limits & 0x0f),       // 16 B .. 512 KiB
        max_depth: 1 + usize::from(limits >> 4) * 9, // 1 .. 136
    };
    let content_type = CONTENT_TYPES[usize::from(*ct) % CONTENT_TYPES.len()];
    let mut dec = SegmentDecoder::new(Arc::from("data"), 7, content_type, limits);
    let now = Instant::now();
    let step = 1 + usize::from(*chunk);
    let mut items = 0;
    for part in body.chunks(step) {
        items += dec.push(part, now).len();
        assert!(
            dec.buffered_capacity() <= limits.max_line_bytes,
            "buffer {} over max_line_bytes {}",
            dec.buffered_capacity(),
            limits.max_line_bytes
        );
    }
    let (rest, _stats) = dec.finish(now);
    items += rest.len();
    std::hint::black_box(items);
});
