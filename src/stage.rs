//! A running stage: one task with its own stop trigger.
//!
//! Every stage of the agent (a channel reader, the rules task, the camera's
//! publisher, the control channel) is a small config type whose `spawn`
//! takes the agent's [`Shutdown`] and returns a [`StageHandle`]. The handle's
//! trigger is a child of that shutdown, so a stage stops when the agent does,
//! or alone when a reload or job restart replaces it.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::warn;

use crate::shutdown::{Shutdown, ShutdownTrigger};

/// A spawned stage. Dropping it stops the stage (its trigger goes with it).
#[derive(Debug)]
pub struct StageHandle<T = ()> {
    name: &'static str,
    trigger: ShutdownTrigger,
    task: JoinHandle<T>,
}

impl<T: Send + 'static> StageHandle<T> {
    /// Spawns `run` with a child of `parent`.
    pub fn spawn<F>(name: &'static str, parent: &Shutdown, run: impl FnOnce(Shutdown) -> F) -> Self
    where
        F: Future<Output = T> + Send + 'static,
    {
        let (trigger, shutdown) = parent.child();
        Self {
            name,
            trigger,
            task: tokio::spawn(run(shutdown)),
        }
    }

    /// Asks the stage to stop and waits up to `grace` for it. A stage that
    /// does not finish in time is aborted and `None` returned; so is one
    /// that panicked.
    pub async fn stop(self, grace: Duration) -> Option<T> {
        self.trigger.trigger();
        let name = self.name;
        let mut task = self.task;
        match tokio::time::timeout(grace, &mut task).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                warn!(stage = name, error = %e, "stage task failed");
                None
            }
            Err(_) => {
                warn!(
                    stage = name,
                    grace_ms = grace.as_millis() as u64,
                    "stage did not stop in time; aborted"
                );
                task.abort();
                None
            }
        }
    }

    /// Waits for the stage to end by itself (a channel that closed).
    pub async fn finished(&mut self) -> Option<T> {
        (&mut self.task).await.ok()
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shutdown::ShutdownTrigger;

    #[tokio::test(start_paused = true)]
    async fn stop_returns_what_the_stage_returns() {
        let (_agent, shutdown) = ShutdownTrigger::new();
        let stage = StageHandle::spawn("counter", &shutdown, |mut s| async move {
            s.recv().await;
            7
        });
        assert_eq!(stage.stop(Duration::from_secs(1)).await, Some(7));
    }

    #[tokio::test(start_paused = true)]
    async fn the_agents_stop_reaches_every_stage() {
        let (agent, shutdown) = ShutdownTrigger::new();
        let mut a = StageHandle::spawn("a", &shutdown, |mut s| async move { s.recv().await });
        let mut b = StageHandle::spawn("b", &shutdown, |mut s| async move { s.recv().await });
        agent.trigger();
        assert_eq!(a.finished().await, Some(()));
        assert_eq!(b.finished().await, Some(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stage_that_ignores_its_stop_is_aborted_after_the_grace() {
        let (_agent, shutdown) = ShutdownTrigger::new();
        let stage = StageHandle::spawn("stuck", &shutdown, |_s| std::future::pending::<()>());
        assert_eq!(stage.stop(Duration::from_millis(100)).await, None);
    }
}
