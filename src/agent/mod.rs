//! The running agent: the stages of the data flow wired into tasks. Each
//! stage module owns one hop; `runtime` starts, supervises and reloads them.

pub mod data_path;
pub mod demo;
pub mod http;
pub mod media_path;
pub mod metrics;
pub mod output_watch;
pub mod plan;
pub mod runtime;
pub mod service;
pub mod stats;
pub mod tools;
