//! The one way a task learns it must stop, as in tokio's mini-redis.
//!
//! A [`ShutdownTrigger`] is held by whoever decides (the signal loop, a stage
//! handle, a test); every task gets a [`Shutdown`] and awaits
//! [`Shutdown::recv`] in its `select!`. Unlike `watch::Receiver::changed`,
//! `recv` keeps resolving once the stop was asked for, so a loop that checks
//! it twice never waits forever, and a trigger that is dropped counts as a
//! stop, so a forgotten handle cannot leave a task running.
//!
//! Stages nest: [`Shutdown::child`] gives a stage its own trigger (to stop it
//! alone, on reload) that also fires when the agent as a whole stops.

use tokio::sync::watch;

/// Asks every [`Shutdown`] made from it to stop; dropping it does the same.
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

/// Resolves [`recv`](Shutdown::recv) once its trigger (or a parent's) fired.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// `None` for [`Shutdown::never`].
    rx: Option<watch::Receiver<bool>>,
    parent: Option<Box<Shutdown>>,
}

impl ShutdownTrigger {
    /// A new trigger and the first `Shutdown` it controls.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (
            ShutdownTrigger { tx },
            Shutdown {
                rx: Some(rx),
                parent: None,
            },
        )
    }

    /// Asks every task holding one of its `Shutdown`s to stop. Idempotent.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Another `Shutdown` tied to this trigger.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            rx: Some(self.tx.subscribe()),
            parent: None,
        }
    }

    /// Whether [`trigger`](Self::trigger) was called.
    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }
}

impl Shutdown {
    /// A `Shutdown` that never fires, for tools and tests that run until
    /// they are dropped.
    pub fn never() -> Shutdown {
        Shutdown {
            rx: None,
            parent: None,
        }
    }

    /// A trigger for one stage: its `Shutdown` fires when the trigger does
    /// or when `self` does.
    pub fn child(&self) -> (ShutdownTrigger, Shutdown) {
        let (trigger, mut own) = ShutdownTrigger::new();
        own.parent = Some(Box::new(self.clone()));
        (trigger, own)
    }

    /// Whether a stop was asked for (or its trigger is gone), without waiting.
    pub fn is_shutdown(&self) -> bool {
        let own = match &self.rx {
            Some(rx) => *rx.borrow() || rx.has_changed().is_err(),
            None => false,
        };
        own || self.parent.as_ref().is_some_and(|p| p.is_shutdown())
    }

    /// Waits until a stop is asked for; returns at once if it already was.
    pub async fn recv(&mut self) {
        let Shutdown { rx, parent } = self;
        let own = async {
            match rx {
                // An error means the trigger was dropped: that is a stop too.
                Some(rx) => {
                    let _ = rx.wait_for(|stop| *stop).await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        match parent {
            Some(parent) => {
                tokio::select! {
                    _ = own => {}
                    _ = Box::pin(parent.recv()) => {}
                }
            }
            None => own.await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn resolves(s: &mut Shutdown) -> bool {
        tokio::time::timeout(Duration::from_millis(50), s.recv())
            .await
            .is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn recv_waits_for_the_trigger_then_keeps_resolving() {
        let (trigger, mut s) = ShutdownTrigger::new();
        assert!(!resolves(&mut s).await);
        assert!(!s.is_shutdown());
        trigger.trigger();
        assert!(resolves(&mut s).await);
        assert!(resolves(&mut s).await, "a second recv must not wait");
        assert!(s.is_shutdown());
        assert!(trigger.is_triggered());
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_trigger_is_a_stop() {
        let (trigger, mut s) = ShutdownTrigger::new();
        let mut other = trigger.subscribe();
        drop(trigger);
        assert!(s.is_shutdown());
        assert!(resolves(&mut s).await);
        assert!(resolves(&mut other).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_child_stops_with_its_parent_or_alone() {
        let (parent_trigger, parent) = ShutdownTrigger::new();
        let (child_a, mut a) = parent.child();
        let (_child_b, mut b) = parent.child();
        child_a.trigger();
        assert!(resolves(&mut a).await);
        assert!(!resolves(&mut b).await, "a sibling's stop is not ours");
        let mut parent = parent;
        assert!(
            !resolves(&mut parent).await,
            "a child's stop is not the parent's"
        );
        parent_trigger.trigger();
        assert!(resolves(&mut b).await);
        assert!(b.is_shutdown());
    }

    #[tokio::test(start_paused = true)]
    async fn never_never_resolves() {
        let mut s = Shutdown::never();
        assert!(!resolves(&mut s).await);
        assert!(!s.is_shutdown());
        let (_t, mut c) = s.child();
        assert!(!resolves(&mut c).await);
    }
}
