//! What a successful load hands back: the checked config, where it came
//! from, and the token. Kept apart from `load` so the result type and its
//! printing depend on nothing but the schema.

use std::path::PathBuf;

use super::schema::AgentConfig;
use crate::actions::Secret;
use crate::trickle::TlsOptions;

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
