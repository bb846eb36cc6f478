//! The debugging tools' data paths: `subscribe --rules` and
//! `publish --source` run the agent's own stages (the same channel readers,
//! rules task and camera publisher as `run`), without a job.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::data_path::{ChannelReader, DataPathStats, RulesStage};
use super::media_path::{CameraPublisher, CameraPublisherConfig};
use crate::actions::{ActionError, OutputConfig, Outputs};
use crate::rules::{RuleConfig, RuleError, RuleSet};
use crate::shutdown::Shutdown;
use crate::trickle::{SubscribeError, Subscriber, SubscriberOptions};

/// A `--rules` file: the `[outputs.*]` and `[[rules]]` of a config, alone.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    outputs: BTreeMap<String, OutputConfig>,
    #[serde(default)]
    rules: Vec<RuleConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{}: {source}", path.display())]
    Rules { path: PathBuf, source: RuleError },
    #[error("{}: {source}", path.display())]
    Outputs { path: PathBuf, source: ActionError },
    #[error(transparent)]
    Channel(#[from] SubscribeError),
    #[error(transparent)]
    Camera(#[from] crate::media::MediaError),
}

/// Rules and their outputs from a `--rules` file (building the outputs
/// puts each in its failsafe state, as `run` does).
pub fn load_rules_file(path: &Path) -> Result<(RuleSet, Outputs), ToolError> {
    let text = std::fs::read_to_string(path).map_err(|source| ToolError::Read {
        path: path.to_owned(),
        source,
    })?;
    let file: RulesFile = toml::from_str(&text).map_err(|source| ToolError::Parse {
        path: path.to_owned(),
        source,
    })?;
    let rules = RuleSet::new(file.rules).map_err(|source| ToolError::Rules {
        path: path.to_owned(),
        source,
    })?;
    let outputs = Outputs::build(&file.outputs).map_err(|source| ToolError::Outputs {
        path: path.to_owned(),
        source,
    })?;
    Ok((rules, outputs))
}

/// Follows `channels` (URL and name: `data`, `events`) into `rules` until
/// every channel ends or `shutdown` fires; then outputs go to failsafe.
/// Returns the data path's counters.
pub async fn follow_with_rules(
    channels: &[(String, &'static str)],
    subscriber: SubscriberOptions,
    rules: RuleSet,
    outputs: Arc<Outputs>,
    shutdown: Shutdown,
) -> Result<Arc<DataPathStats>, ToolError> {
    // The outputs' feed, so an MQTT output's Home Assistant discovery
    // sees these rules as under `run`.
    let stats = Arc::new(DataPathStats {
        live: outputs.live(),
        ..Default::default()
    });
    let (items, items_rx) = tokio::sync::mpsc::channel(1024);
    let mut readers = Vec::new();
    for (url, name) in channels {
        let reader = ChannelReader {
            subscriber: Subscriber::new(url, subscriber.clone())?,
            channel: Arc::from(*name),
            limits: Default::default(),
            items: items.clone(),
            stats: stats.clone(),
            health: None,
            watch: None,
        };
        readers.push(reader.spawn(&shutdown));
    }
    drop(items);
    let rules = RulesStage {
        rules,
        outputs: outputs.clone(),
        items: items_rx,
        stats: stats.clone(),
    }
    .spawn(&shutdown);
    // Each reader ends with its channel or with the shutdown.
    for r in &mut readers {
        r.finished().await;
    }
    rules.stage.stop(Duration::from_secs(5)).await;
    outputs.failsafe().await;
    Ok(stats)
}

/// Publishes a camera until `shutdown` fires; calls `on_first` when the
/// first segment is confirmed. Returns the camera's permanent error, if any.
pub async fn publish_camera(
    config: CameraPublisherConfig,
    mut shutdown: Shutdown,
    on_first: impl FnOnce(),
) -> Result<(), ToolError> {
    let stats = config.stats.clone();
    let running = CameraPublisher::spawn(config, &shutdown)?;
    let mut first = stats.first_published.subscribe();
    // The watch's read guard must not live across an await: the publisher
    // takes the write side when it confirms a segment.
    let first_seen = async move { first.wait_for(|v| *v).await.map(|_| ()) };
    tokio::select! {
        _ = shutdown.recv() => {}
        r = first_seen => {
            if r.is_ok() {
                on_first();
            }
            shutdown.recv().await;
        }
    }
    running.stop().await?;
    Ok(())
}
