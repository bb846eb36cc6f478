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

/// Lets a repeated warning through at most once per `every`, counting the
/// ones held back in between, so a flood of bad input is seen in the log
/// (with how many) without the log itself becoming the flood.
#[derive(Debug)]
pub struct WarnLimiter {
    every: std::time::Duration,
    last: Option<tokio::time::Instant>,
    held_back: u64,
}

impl WarnLimiter {
    pub fn new(every: std::time::Duration) -> Self {
        Self {
            every,
            last: None,
            held_back: 0,
        }
    }

    /// One more occurrence at `now`. `Some(n)`: warn now, mentioning the `n`
    /// occurrences held back since the last warning; `None`: stay quiet.
    pub fn hit(&mut self, now: tokio::time::Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                self.held_back += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held_back))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// `EnvFilter::new` drops directives it cannot parse, so a typo in a
    /// default would silently log everything or nothing.
    #[test]
    fn default_filters_parse() {
        for f in [DEFAULT_FILTER, DEMO_FILTER] {
            EnvFilter::try_new(f).unwrap_or_else(|e| panic!("{f:?}: {e}"));
        }
    }

    #[test]
    fn warns_once_per_period_and_counts_the_rest() {
        let t0 = tokio::time::Instant::now();
        let mut w = WarnLimiter::new(Duration::from_secs(10));
        assert_eq!(w.hit(t0), Some(0));
        for i in 1..=5 {
            assert_eq!(w.hit(t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(w.hit(t0 + Duration::from_secs(10)), Some(5));
        assert_eq!(w.hit(t0 + Duration::from_secs(11)), None);
        assert_eq!(w.hit(t0 + Duration::from_secs(30)), Some(1));
    }
}
