//! `trickle-edge run` as a service: the agent plus the signals systemd
//! sends it. SIGHUP re-reads the config file (a bad one is refused and the
//! running config kept); SIGTERM or SIGINT stops the agent.
//!
//! The signals arrive as [`ServiceSignal`]s on a channel, so the reload
//! path is tested in-process by sending them, and [`unix_signals`] is the
//! only part that needs a real process.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::{error, info};

use super::runtime::{AgentControl, AgentError, AgentHandles, run};
use crate::config::{LoadOptions, ResolvedConfig, load_with};
use crate::shutdown::ShutdownTrigger;

/// What the outside asks of a running service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceSignal {
    /// Re-read the config file and apply what changed (SIGHUP).
    Reload,
    /// Stop: outputs to failsafe, channels closed, job stopped (SIGTERM, SIGINT).
    Stop,
}

/// How long the agent may take to stop once asked.
const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error("cannot listen for signals: {0}")]
    Signals(#[source] std::io::Error),
    #[error("agent did not stop within {} s", STOP_GRACE.as_secs())]
    StopTimeout,
    #[error("agent task failed: {0}")]
    Panicked(#[from] tokio::task::JoinError),
}

/// Where the config comes from, to read it again on reload.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub path: PathBuf,
    pub options: LoadOptions,
}

/// SIGHUP, SIGTERM and SIGINT as [`ServiceSignal`]s, for as long as the
/// receiver lives.
pub fn unix_signals() -> Result<mpsc::Receiver<ServiceSignal>, ServiceError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).map_err(ServiceError::Signals)?;
    let mut term = signal(SignalKind::terminate()).map_err(ServiceError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServiceError::Signals)?;
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let signal = tokio::select! {
                _ = hup.recv() => ServiceSignal::Reload,
                _ = term.recv() => ServiceSignal::Stop,
                _ = int.recv() => ServiceSignal::Stop,
            };
            if tx.send(signal).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// Runs the agent on `resolved` (already loaded from `source`) until a
/// [`ServiceSignal::Stop`] or the signal channel closes. `ready` receives
/// the agent's handles once its stages exist.
pub async fn run_service(
    resolved: ResolvedConfig,
    source: ConfigSource,
    mut signals: mpsc::Receiver<ServiceSignal>,
    ready: Option<oneshot::Sender<AgentHandles>>,
) -> Result<(), ServiceError> {
    let (stop, shutdown) = ShutdownTrigger::new();
    let (reload_tx, reload_rx) = mpsc::channel(1);
    let control = AgentControl {
        shutdown,
        reload: reload_rx,
        job_start: Default::default(),
    };
    let agent = tokio::spawn(run(resolved, control, ready));
    tokio::pin!(agent);
    loop {
        tokio::select! {
            r = &mut agent => return Ok(r??),
            s = signals.recv() => match s {
                Some(ServiceSignal::Reload) => match load_with(&source.path, &source.options) {
                    Ok(new) => {
                        info!(config = %source.path.display(), "SIGHUP: reloading");
                        let _ = reload_tx.send(new).await;
                    }
                    Err(e) => error!("SIGHUP: config refused, keeping the running one:\n{e}"),
                },
                Some(ServiceSignal::Stop) | None => break,
            },
        }
    }
    stop.trigger();
    match tokio::time::timeout(STOP_GRACE, agent).await {
        Ok(r) => Ok(r??),
        Err(_) => Err(ServiceError::StopTimeout),
    }
}
