//! Scratch directories for tests.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh, empty directory under the system temp dir, unique to this call:
/// named after `tag`, this process and a per-process counter, and emptied
/// first, so neither a parallel test nor an earlier run's leftovers can
/// leak into it. Tests remove it when they pass; a failing test leaves it
/// behind to look at.
pub fn temp_dir(tag: &str) -> PathBuf {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "trickle-edge-{tag}-{}-{}",
        std::process::id(),
        CALLS.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
