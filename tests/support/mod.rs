//! The integration tests' one kit: every test file says `mod support;` and
//! takes what it needs from the submodules.
//!
//! Each file under `tests/` is its own crate and compiles this whole module
//! anew, using only part of it, so in any one test binary most items here are
//! unused: hence the `dead_code` allowance, which covers the kit only.
#![allow(dead_code)]

pub mod actions;
pub mod agent;
pub mod byoc;
pub mod config;
pub mod http;
pub mod livepeer;
pub mod media;
pub mod mqtt;
pub mod net;
pub mod pki;
pub mod rtsp;
pub mod time;
pub mod tmp;
pub mod tracing;
