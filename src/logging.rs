//! Where log events go and which are kept: stderr, or the journal under
//! systemd, filtered by `TRICKLE_EDGE_LOG` or a per-command default.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The environment variable that overrides the default filter (e.g. `debug`,
/// or `info,trickle_edge::trickle=trace`).
pub const FILTER_ENV: &str = "TRICKLE_EDGE_LOG";

/// Most commands: our own info, without the HTTP and TLS libraries' chatter.
pub const DEFAULT_FILTER: &str = "info,hyper=warn,rustls=warn";

/// The demo draws a live view on stdout; only warnings may interrupt it.
pub const DEMO_FILTER: &str = "warn";

/// Installs the global subscriber; call once, before anything logs.
///
/// `default_filter` applies unless `TRICKLE_EDGE_LOG` holds a valid filter.
/// Under systemd (`JOURNAL_STREAM` set) events go to the journal natively, so
/// their fields (rule, output, channel, seq, …) are journal fields that
/// `journalctl -o verbose` shows and `journalctl RULE=door` filters on.
/// Elsewhere, or if the journal socket cannot be opened, they go to stderr.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_env(FILTER_ENV).unwrap_or_else(|_| EnvFilter::new(default_filter));
    if std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(journald) = tracing_journald::layer()
    {
        tracing_subscriber::registry()
            .with(filter)
            .with(journald.with_syslog_identifier("trickle-edge".into()))
            .init();
        return;
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Log files and pipes get plain text, a terminal gets colours.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `EnvFilter::new` drops directives it cannot parse, so a typo in a
    /// default would silently log everything or nothing.
    #[test]
    fn default_filters_parse() {
        for f in [DEFAULT_FILTER, DEMO_FILTER] {
            EnvFilter::try_new(f).unwrap_or_else(|e| panic!("{f:?}: {e}"));
        }
    }
}
