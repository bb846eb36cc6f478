//! The control channel: a `{"keep":"alive"}` segment every interval so the
//! pipeline side keeps the job, and parameter updates as they come.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::shutdown::Shutdown;
use crate::stage::StageHandle;
use crate::trickle::{Publisher, PublisherOptions};

/// The control channel's writer: keepalives on a timer, parameter updates
/// as they arrive, each one `application/json` segment.
pub struct ControlChannel {
    pub url: String,
    pub options: PublisherOptions,
    pub keepalive_interval: Duration,
    pub params: mpsc::Receiver<serde_json::Value>,
}

impl ControlChannel {
    /// Runs until `shutdown` fires.
    pub fn spawn(self, shutdown: &Shutdown) -> StageHandle {
        StageHandle::spawn("control channel", shutdown, |s| run_control(self, s))
    }
}

async fn run_control(stage: ControlChannel, mut shutdown: Shutdown) {
    let ControlChannel {
        url,
        options: opts,
        keepalive_interval: interval,
        mut params,
    } = stage;
    let opts = PublisherOptions {
        content_type: "application/json".into(),
        ..opts
    };
    let mut publisher: Option<Publisher> = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let message = tokio::select! {
            _ = ticker.tick() => serde_json::json!({"keep": "alive"}),
            p = params.recv() => match p {
                Some(p) => p,
                None => serde_json::json!({"keep": "alive"}),
            },
            _ = shutdown.recv() => return,
        };
        if publisher.is_none() {
            match Publisher::connect(&url, opts.clone()).await {
                Ok(p) => publisher = Some(p),
                Err(e) => {
                    debug!(%url, error = %e, "control channel not reachable yet");
                    continue;
                }
            }
        }
        let Some(p) = publisher.as_mut() else {
            continue;
        };
        let sent = async {
            let mut w = p.next_segment().await?;
            w.write(Bytes::from(message.to_string())).await?;
            w.finish().await
        }
        .await;
        if let Err(e) = sent {
            warn!(%url, error = %e, "control message not delivered");
            if e.is_terminal() {
                publisher = None;
            }
        }
    }
}
