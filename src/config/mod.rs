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
mod schema;
mod source;
mod validate;

use std::path::{Path, PathBuf};

pub use crate::actions::Secret;
pub use error::{ConfigError, ErrorKind};
pub use schema::{
    AgentConfig, AuthConfig, GpioDefaults, JobMode, QueueConfig, StaticJob, SupervisorConfig,
    TlsConfig, WorkerJob,
};

use crate::trickle::TlsOptions;

/// How to find and choose a board preset.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Overrides the file's `board` (the CLI's `--board`).
    pub board: Option<String>,
    /// Searched before the default preset directories (`--boards-dir`).
    pub boards_dir: Option<PathBuf>,
}

/// A config ready to run: preset merged, defaults applied, checked, token read.
#[derive(Debug, Clone)]
pub struct ResolvedConfig {
    /// The config file.
    pub path: PathBuf,
    /// The board preset merged under it, if any.
    pub preset: Option<PathBuf>,
    pub config: AgentConfig,
    /// The bearer token from `[auth]`, whichever way it was given.
    pub token: Option<Secret>,
    /// Settings that work but are probably not intended.
    pub warnings: Vec<String>,
}

impl ResolvedConfig {
    pub fn tls_options(&self) -> TlsOptions {
        TlsOptions::from(&self.config.tls)
    }

    /// The resolved config as TOML that `load` accepts again (secrets as
    /// `***`), headed by comments naming its sources and any warnings.
    pub fn to_toml(&self) -> String {
        let mut out = format!("# config: {}\n", self.path.display());
        if let Some(preset) = &self.preset {
            out += &format!("# board preset: {}\n", preset.display());
        }
        if self.token.is_some() {
            out += "# auth token: *** (loaded)\n";
        }
        for w in &self.warnings {
            out += &format!("# warning: {w}\n");
        }
        out.push('\n');
        match toml::to_string(&self.config) {
            Ok(body) => out + &body,
            Err(e) => out + &format!("# cannot print the config as TOML: {e}\n"),
        }
    }
}

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
