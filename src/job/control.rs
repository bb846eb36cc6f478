//! The control channel: a `{"keep":"alive"}` segment every interval so the
//! pipeline side keeps the job, and parameter updates as they come.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use crate::trickle::{Publisher, PublisherOptions};

/// Runs until `shutdown` flips. Each message is one `application/json` segment.
pub async fn run_control(
    url: String,
    opts: PublisherOptions,
    interval: Duration,
    mut params: mpsc::Receiver<serde_json::Value>,
    mut shutdown: watch::Receiver<bool>,
) {
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
            _ = shutdown.changed() => return,
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
