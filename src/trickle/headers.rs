//! The protocol's own response headers, as Livepeer's Go server sends them.

/// The seq a response is about (written, or read).
pub const HDR_SEQ: &str = "lp-trickle-seq";
/// The server's next write seq.
pub const HDR_LATEST: &str = "lp-trickle-latest";
/// Present (`terminated`) when the channel is closing: end of stream.
pub const HDR_CLOSED: &str = "lp-trickle-closed";
/// Sent by a restarted publisher so the server wakes readers of older segments.
pub const HDR_RESET: &str = "lp-trickle-reset";
