//! The running agent: the stages of the data flow wired into tasks. Each
//! stage module owns one hop; this module only connects them.

pub mod data_path;
pub mod media_path;
