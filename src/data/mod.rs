//! Payload decoding: turns the bytes of data/events channel segments into
//! [`Item`]s (JSON values with channel, seq and receive time) for `rules`.
//! Knows nothing of HTTP and never acts on what it decodes.
//!
//! What each content type becomes (see [`SegmentDecoder`]):
//! - `application/jsonl`, `application/x-ndjson`: one value per line, decoded
//!   as soon as its `\n` arrives; blank lines are ignored.
//! - `application/json` (and `*+json`): one value per segment.
//! - `text/*`: one `Payload::Text` per segment.
//! - missing or `application/octet-stream`: sniffed (JSON, else UTF-8 text,
//!   else binary); any other type: `Payload::Binary` (size and SHA-256).
//!
//! A JSON array is a pytrickle batch and is flattened into its elements; an
//! empty `[]` is a keepalive (counted, no item); batch elements that are not
//! objects are dropped with one warning per batch. Any other top-level value,
//! objects and scalars alike, is one item. `{"queue_event_type", "event"}`
//! envelopes are unwrapped.
//!
//! Every problem costs exactly one `tracing::warn!` and one [`DecodeStats`]
//! counter, and never the rest of the segment.

mod decoder;
mod depth;
mod item;
mod stats;

pub use decoder::{DecodeLimits, SegmentDecoder};
pub use item::{Item, Payload};
pub use stats::{DecodeStats, SkipReason};
