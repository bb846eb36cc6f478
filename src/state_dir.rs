//! The agent's state directory: where what must outlive a restart is kept
//! (trust-on-first-use pins, the overflow files of webhook and MQTT outputs).
//!
//! systemd's `StateDirectory=` sets `$STATE_DIRECTORY` (the units in
//! `systemd/` ask for `/var/lib/trickle-edge`, or `…/trickle-edge/<instance>`
//! for the templated one); without it the agent uses `/var/lib/trickle-edge`,
//! so a hand-started agent and the plain service share state.

use std::path::PathBuf;

/// Used when `$STATE_DIRECTORY` is unset.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/trickle-edge";

/// The first path of `$STATE_DIRECTORY`, else [`DEFAULT_STATE_DIR`].
pub fn state_dir() -> PathBuf {
    std::env::var_os("STATE_DIRECTORY")
        .and_then(|d| std::env::split_paths(&d).next())
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}
