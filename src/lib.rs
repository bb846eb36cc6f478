//! trickle-edge: an edge agent that publishes camera segments over Livepeer's
//! trickle protocol and turns what the AI pipeline sends back into local actions.
#![forbid(unsafe_code)]

pub mod actions;
pub mod agent;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod data;
pub mod duration;
pub mod error_chain;
pub mod http_serve;
pub mod job;
pub mod livepeer;
pub mod logging;
pub mod media;
pub mod procfs;
pub mod rules;
pub mod shutdown;
pub mod stage;
pub mod state_dir;
pub mod status;
pub mod sync;
pub mod trickle;
pub mod worker;
