//! The agent run in-process, as `trickle-edge run` runs it: a config in,
//! a stop trigger, a reload sender and the handles (stats, simulated GPIO)
//! out, once the agent says it is ready.

use std::path::PathBuf;

use tokio::sync::{mpsc, oneshot};
use trickle_edge::agent::runtime::{AgentControl, AgentError, AgentHandles, run};
use trickle_edge::config::{AgentConfig, ResolvedConfig};
use trickle_edge::shutdown::ShutdownTrigger;

use super::time::within;

/// A running agent.
pub struct RunningAgent {
    pub stop: ShutdownTrigger,
    pub agent: tokio::task::JoinHandle<Result<(), AgentError>>,
    pub handles: AgentHandles,
    /// Sends a new config, as SIGHUP does after re-reading the file.
    pub reload: mpsc::Sender<ResolvedConfig>,
}

/// `text` parsed as an agent config, resolved as if loaded from a file.
pub fn resolved(text: &str) -> ResolvedConfig {
    let config: AgentConfig = toml::from_str(text).unwrap();
    ResolvedConfig {
        path: PathBuf::from("test"),
        preset: None,
        config,
        token: None,
        warnings: vec![],
    }
}

/// Starts the agent and waits until it is ready (first segment confirmed).
pub async fn start_agent(cfg: ResolvedConfig) -> RunningAgent {
    let (stop, shutdown) = ShutdownTrigger::new();
    let (reload, reload_rx) = mpsc::channel(1);
    let (ready_tx, ready_rx) = oneshot::channel();
    let agent = tokio::spawn(run(
        cfg,
        AgentControl {
            shutdown,
            reload: reload_rx,
            job_start: Default::default(),
        },
        Some(ready_tx),
    ));
    let handles = within("agent ready", ready_rx).await.expect("agent starts");
    RunningAgent {
        stop,
        agent,
        handles,
        reload,
    }
}
