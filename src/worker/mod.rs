//! The reference worker: a small, real trickle worker to read and copy.
//!
//! It speaks the pytrickle worker API ([`api`]): the gateway (or the edge in
//! `worker` job mode) posts `/api/stream/start` with up to five channel URLs,
//! and the worker then, until stopped:
//!
//! - subscribes to `subscribe_url` (the edge's MPEG-TS), passes each segment
//!   unchanged to `publish_url`, and decodes it with GStreamer ([`decode`]);
//! - finds the bright moving ball of `videotestsrc pattern=ball` in every
//!   frame ([`detect`]) and writes the detections to `data_url` as
//!   pytrickle-style JSONL batches;
//! - writes an ai-runner status event to `events_url` every few seconds;
//! - applies parameter updates from `control_url` and `/api/stream/params`.
//!
//! To build your own worker, replace [`detect`] and keep the rest: the
//! channel handling, batching, keepalives and lifecycle are what a gateway
//! expects. The worker never creates or deletes channels: they belong to
//! whoever started the job, so stopping only ends the worker's own requests.

mod api;
mod config;
mod control;
pub mod decode;
pub mod detect;
mod ingest;
mod output;
mod request;
mod runner;
mod session;
mod stream;

pub use api::{WorkerHandle, run_worker};
pub use config::WorkerConfig;
pub use request::{RequestError, StartRequest};
pub use runner::{Worker, WorkerError};
pub use stream::{State, Status};
