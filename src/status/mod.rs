//! The status page on the supervisor address (issue 16): the latest camera
//! frame with the detection boxes and the rules' zones over it, outputs,
//! rule fires, live charts, stage health and the job, pushed over SSE.
//!
//! `feed` is what the rules task reports (also read by Home Assistant
//! discovery), `page` the routes and the state they send, `access` who may
//! read the supervisor address. The JPEG branch itself is
//! `media/snapshot.rs`.

pub mod access;
pub mod feed;
pub mod page;

pub use feed::{Detections, Fire, LiveFeed, OutputState, RuleChange, Watching};
pub use page::{PageInfo, STATE_EVERY};
