//! The protocol's own response headers, as Livepeer's Go server sends them.

/// The highest seq this implementation writes, reads or believes. 2^53:
/// at 30 segments a second that is 9 million years, every seq is exact as
/// a JSON number, and `seq + 1` can never wrap (one POST at
/// `9223372036854775806` used to wedge a channel that way).
pub const MAX_SEQ: i64 = 1 << 53;

/// A seq a client may ask for or a server may name: `-2` (current), `-1`
/// (next), or 0 to [`MAX_SEQ`].
pub fn valid_seq(seq: i64) -> bool {
    (-2..=MAX_SEQ).contains(&seq)
}

/// The seq a response is about (written, or read).
pub const HDR_SEQ: &str = "lp-trickle-seq";
/// The server's next write seq.
pub const HDR_LATEST: &str = "lp-trickle-latest";
/// Present (`terminated`) when the channel is closing: end of stream.
pub const HDR_CLOSED: &str = "lp-trickle-closed";
/// Sent by a restarted publisher so the server wakes readers of older segments.
pub const HDR_RESET: &str = "lp-trickle-reset";
