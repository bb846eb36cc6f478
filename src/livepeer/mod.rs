//! Livepeer's orchestrator protocol, as a live-video-to-video gateway speaks
//! it (see `docs/architecture.md`, job modes): `GetOrchestrator` over gRPC,
//! orchestrator discovery and selection, the remote signer's payments.

pub mod proto;

mod error;
pub mod grpc;
pub mod tls;

pub use error::LivepeerError;
pub mod discovery;
pub mod http;
pub mod lv2v;
pub mod network;
pub mod payment;
pub mod signer;
