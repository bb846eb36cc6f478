//! Files for the `config_*` tests: each test writes into its own
//! [`super::tmp::temp_dir`], so tests can run in parallel.

use std::path::{Path, PathBuf};

/// Writes `text` to `dir/name` (making folders on the way) and returns the path.
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
