//! Helpers for the config tests: each test writes its files into its own
//! directory, so tests can run in parallel.
#![allow(dead_code)] // each test file uses a different subset

use std::path::{Path, PathBuf};

/// A fresh directory for one test, removed first if a previous run left it.
pub fn dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("trickle-edge-config-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// The repository's `boards/` directory.
pub fn boards() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("boards")
}
