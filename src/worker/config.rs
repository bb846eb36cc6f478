//! The worker's tunables, apart from `mod.rs` so that the stream and its
//! tasks can read them without depending on the `Worker` that owns them.

use std::time::Duration;

use crate::backoff::BackoffConfig;
use crate::trickle::ClientOptions;

/// Tunables of the worker; the defaults follow pytrickle and ai-runner.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Size frames are scaled to for detection (shapes, not detail).
    pub analysis_width: u32,
    pub analysis_height: u32,
    /// Detections are gathered this long into one JSONL line (pytrickle: 333 ms).
    pub batch_interval: Duration,
    /// A `[]` line is written after this long without any line (pytrickle: 25 s).
    pub keepalive_interval: Duration,
    /// A status event is written this often (ai-runner: 5 s; gateways call a
    /// pipeline dead after 30 s of silence).
    pub status_interval: Duration,
    /// A data segment is ended after this many lines...
    pub lines_per_segment: usize,
    /// ...or once it is this old, whichever comes first.
    pub segment_max_age: Duration,
    /// Delay between decode pipeline rebuilds and connection attempts.
    pub restart_backoff: BackoffConfig,
    /// Reported as `pipeline` in status events.
    pub pipeline_name: String,
    /// TLS and auth for the trickle channels.
    pub client: ClientOptions,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            analysis_width: 160,
            analysis_height: 120,
            batch_interval: Duration::from_millis(333),
            keepalive_interval: Duration::from_secs(25),
            status_interval: Duration::from_secs(5),
            lines_per_segment: 15,
            segment_max_age: Duration::from_secs(5),
            restart_backoff: BackoffConfig::new(
                Duration::from_millis(250),
                Duration::from_secs(10),
            )
            .expect("static backoff bounds are valid"),
            pipeline_name: "trickle-edge-reference".into(),
            client: ClientOptions::default(),
        }
    }
}
