//! Livepeer's trickle protocol: segmented publish/subscribe over HTTP/1.1.
//!
//! [`server`] is a complete trickle server; [`Publisher`] and [`Subscriber`]
//! are clients that behave like Livepeer's own (preconnects, retries, 470
//! handling) with real TLS verification options. See
//! `trickle-protocol.md` for the wire rules each type follows.

pub mod channel;
pub mod client;
pub mod headers;
pub mod interim;
pub mod publisher;
pub mod segment;
pub mod server;
pub mod subscriber;
pub mod tls;

pub use client::{ClientError, ClientOptions, HttpClient};
pub use publisher::{PublishError, Publisher, PublisherOptions, SegmentUpload};
pub use server::{RunningServer, ServerConfig, ServerState};
pub use subscriber::{IncomingSegment, SubscribeError, Subscriber, SubscriberOptions};
pub use tls::TlsOptions;

pub use headers::{HDR_CLOSED, HDR_LATEST, HDR_RESET, HDR_SEQ};
