//! A Livepeer job that should publish processed video (`output_expected`):
//! its `subscribe_url` is followed and every segment drained, only to learn
//! that output flows. Livepeer's gateway fails a job over after 30 s without
//! an output segment; the supervisor reads [`JobWatch::output_silent_for`].

use std::sync::Arc;

use tracing::{info, warn};

use crate::job::watch::JobWatch;
use crate::shutdown::Shutdown;
use crate::stage::StageHandle;
use crate::trickle::Subscriber;

/// Follows the job's output channel until it ends or `shutdown` fires.
pub struct OutputWatch {
    pub subscriber: Subscriber,
    pub watch: Arc<JobWatch>,
}

impl OutputWatch {
    pub fn spawn(self, shutdown: &Shutdown) -> StageHandle {
        StageHandle::spawn("output watch", shutdown, |s| self.run(s))
    }

    async fn run(self, mut shutdown: Shutdown) {
        let OutputWatch {
            subscriber: mut sub,
            watch,
        } = self;
        loop {
            let next = tokio::select! {
                r = sub.next_segment() => r,
                _ = shutdown.recv() => return,
            };
            let mut seg = match next {
                Ok(Some(seg)) => seg,
                Ok(None) => {
                    info!(url = %sub.url(), "output channel ended");
                    watch.fail(format!(
                        "the output channel {} was closed by the orchestrator",
                        sub.url()
                    ));
                    return;
                }
                Err(e) => {
                    warn!(url = %sub.url(), error = %e, "output watch gave up");
                    return;
                }
            };
            watch.output_seen();
            loop {
                let chunk = tokio::select! {
                    c = seg.chunk() => c,
                    _ = shutdown.recv() => return,
                };
                match chunk {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
}
