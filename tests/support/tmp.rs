//! Scratch directories for tests.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A scratch directory, removed when dropped unless the thread is
/// panicking: a passing test leaves nothing behind, a failing one leaves
/// its files to look at (the panic message names the paths it used).
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A fresh, empty directory under the system temp dir, unique to this call:
/// named after `tag`, this process and a per-process counter, and emptied
/// first, so neither a parallel test nor an earlier run's leftovers can
/// leak into it. Removed when the returned guard is dropped (see
/// [`TempDir`]); keep the guard alive as long as anything uses the files.
pub fn temp_dir(tag: &str) -> TempDir {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "trickle-edge-{tag}-{}-{}",
        std::process::id(),
        CALLS.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}

/// As its path, so a config built with `json!` can name it.
impl serde::Serialize for TempDir {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// So a scratch directory can be a command's argument.
impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}
