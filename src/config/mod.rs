//! The agent's TOML config: schema, board presets, validation, and errors
//! that name the file, line, column and key at fault.
//!
//! Loading is: read the file ► if it names a `board`, merge `boards/NAME.toml`
//! under it (file wins, table by table) ► deserialize ► check cross-field
//! rules ► read the token. Nothing here touches the network or a device, so
//! `trickle-edge check` is safe to run anywhere.
//!
//! Presets are searched in `LoadOptions::boards_dir`, `$TRICKLE_EDGE_BOARDS`,
//! `/usr/share/trickle-edge/boards`, then this crate's `boards/` (development).

mod error;
mod load;
mod resolved;
mod schema;
mod source;
mod validate;

use std::path::Path;

pub use crate::actions::Secret;
pub use error::{ConfigError, ErrorKind};
pub use load::LoadOptions;
pub use resolved::ResolvedConfig;
pub use schema::{
    AgentConfig, AuthConfig, ByocJob, GpioDefaults, JobMode, LivepeerJob, QueueConfig,
    SignerSettings, StaticJob, SupervisorConfig, TlsConfig, WorkerJob,
};

/// Loads `path` with the default preset search.
pub fn load(path: impl AsRef<Path>) -> Result<ResolvedConfig, ConfigError> {
    load_with(path, &LoadOptions::default())
}

/// Loads `path`, with `--board` / `--boards-dir` style options.
pub fn load_with(
    path: impl AsRef<Path>,
    opts: &LoadOptions,
) -> Result<ResolvedConfig, ConfigError> {
    load::load(path.as_ref(), opts)
}

/// Loads a config from text in memory, as [`load_with`] loads a file:
/// `path` only names it in errors. Used by the `config` fuzz target.
pub fn load_str(
    path: impl AsRef<Path>,
    text: &str,
    opts: &LoadOptions,
) -> Result<ResolvedConfig, ConfigError> {
    load::load_text(path.as_ref(), text, opts)
}

/// What `trickle-edge check` prints: the resolved config, or the first error.
pub fn check(path: impl AsRef<Path>, board: Option<&str>) -> Result<String, ConfigError> {
    let opts = LoadOptions {
        board: board.map(str::to_owned),
        ..LoadOptions::default()
    };
    check_with(path, &opts)
}

/// [`check`] with all [`LoadOptions`].
pub fn check_with(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<String, ConfigError> {
    load_with(path, opts).map(|r| r.to_toml())
}
