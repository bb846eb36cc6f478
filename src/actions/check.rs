//! The output checks `check` and `run` share, so a config `check` approves
//! is one `run` starts with. Two depths: what the config alone can show
//! (schemes, counts, names), and what only this machine can (the GPIO chip
//! and line exist, the `exec` program is found, the log's directory is
//! there, a TLS output's CA, certificate and key files are readable PEM).
//! Neither requests a line, creates a file or connects.

use std::collections::BTreeMap;

use super::config::{GpioBackend, OutputConfig};
use super::error::ActionError;
use super::tls::insecure_warning;
use super::{exec, gpio, log, mqtt, webhook};

/// How far [`check_outputs`] looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CheckDepth {
    /// The config text only: the same answer on any machine.
    #[default]
    Config,
    /// Also this machine: devices, programs, directories.
    Host,
}

/// Checks one output; the error names the output and the field.
pub fn check_output(name: &str, cfg: &OutputConfig, depth: CheckDepth) -> Result<(), ActionError> {
    let invalid = |field, reason: &str| ActionError::Invalid {
        output: name.into(),
        field,
        reason: reason.into(),
    };
    if name.is_empty() {
        return Err(invalid("name", "must not be empty"));
    }
    let queue = match cfg {
        OutputConfig::Gpio(c) => c.queue,
        OutputConfig::Log(c) => c.queue,
        OutputConfig::Exec(c) => c.queue,
        OutputConfig::Webhook(c) => c.queue,
        OutputConfig::Mqtt(c) => c.queue,
    };
    if queue == 0 {
        return Err(invalid("queue", "must be at least 1"));
    }
    match cfg {
        OutputConfig::Gpio(c) => {
            if c.backend == GpioBackend::Gpiocdev && depth == CheckDepth::Host {
                gpio::locate_line(name, c)?;
            }
        }
        OutputConfig::Log(c) => {
            log::validate(name, c)?;
            if depth == CheckDepth::Host {
                log::check_directory(name, c)?;
            }
        }
        OutputConfig::Exec(c) => {
            exec::validate(name, c)?;
            if depth == CheckDepth::Host {
                exec::find_program(name, c)?;
            }
        }
        OutputConfig::Webhook(c) => {
            if depth == CheckDepth::Host {
                webhook::prepare(name, c)?;
            } else {
                webhook::validate(name, c)?;
            }
        }
        OutputConfig::Mqtt(c) => {
            if depth == CheckDepth::Host {
                mqtt::prepare(name, c)?;
            } else {
                mqtt::validate(name, c)?;
            }
        }
    }
    Ok(())
}

/// Checks every output, in name order; the first problem is returned.
pub fn check_outputs(
    configs: &BTreeMap<String, OutputConfig>,
    depth: CheckDepth,
) -> Result<(), ActionError> {
    configs
        .iter()
        .try_for_each(|(name, cfg)| check_output(name, cfg, depth))
}

/// What works but is probably not meant, for `check` to print: TLS
/// verification switched off, a password sent in clear text. The outputs
/// log the same lines at every start.
pub fn output_warnings(name: &str, cfg: &OutputConfig) -> Vec<String> {
    match cfg {
        OutputConfig::Webhook(c) if c.insecure => vec![insecure_warning(name, "webhook server")],
        OutputConfig::Mqtt(c) => mqtt::warnings(name, c),
        _ => Vec::new(),
    }
}
