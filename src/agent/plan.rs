//! Config ► plan: what each stage is built from, and what a reload changes.
//!
//! Pure functions of the config, so the decisions `runtime` acts on (which
//! stages to restart on SIGHUP, what each stage is given) are unit-tested
//! without starting anything.

use std::collections::BTreeSet;

use crate::config::{AgentConfig, ResolvedConfig};
use crate::job::params_only_change;
use crate::media::GopQueueLimits;
use crate::trickle::{ClientOptions, PublisherOptions};

/// HTTP client settings every stage shares: TLS policy and bearer token.
pub fn client_options(cfg: &ResolvedConfig) -> ClientOptions {
    ClientOptions {
        tls: cfg.tls_options(),
        bearer_token: cfg.token.as_ref().map(|t| t.0.clone()),
        ..Default::default()
    }
}

/// The GOP queue's limits from `[queue]`.
pub fn queue_limits(cfg: &AgentConfig) -> GopQueueLimits {
    GopQueueLimits {
        capacity_gops: cfg.queue.gops,
        ..Default::default()
    }
}

/// The camera's publisher: MPEG-TS segments.
pub fn media_publisher_options(client: &ClientOptions) -> PublisherOptions {
    PublisherOptions {
        client: client.clone(),
        content_type: "video/MP2T".into(),
        ..Default::default()
    }
}

/// What happens to the job on a reload.
#[derive(Debug, Clone, PartialEq)]
pub enum JobChange {
    Unchanged,
    /// Only the worker's parameters changed: send them, keep the job.
    Params(serde_json::Map<String, serde_json::Value>),
    /// Anything else about where media goes or how we authenticate: stop the
    /// job, its channels and the camera, and start them again.
    Restart,
}

/// Outputs named in old and new config, by what happened to each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputChanges {
    pub added: BTreeSet<String>,
    pub removed: BTreeSet<String>,
    pub changed: BTreeSet<String>,
}

impl OutputChanges {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// What differs between the running config and a reloaded one, part by part.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigDiff {
    pub rules: bool,
    pub outputs: OutputChanges,
    pub job: JobChange,
    /// Camera, encoder or queue: capture restarts.
    pub camera: bool,
    pub supervisor: bool,
}

impl ConfigDiff {
    pub fn between(old: &AgentConfig, new: &AgentConfig) -> Self {
        let mut outputs = OutputChanges::default();
        for (name, cfg) in &new.outputs {
            match old.outputs.get(name) {
                None => {
                    outputs.added.insert(name.clone());
                }
                Some(was) if was != cfg => {
                    outputs.changed.insert(name.clone());
                }
                Some(_) => {}
            }
        }
        for name in old.outputs.keys() {
            if !new.outputs.contains_key(name) {
                outputs.removed.insert(name.clone());
            }
        }
        let job = if let Some(params) = params_only_change(&old.job, &new.job) {
            JobChange::Params(params)
        } else if old.job != new.job || old.tls != new.tls || old.auth != new.auth {
            JobChange::Restart
        } else {
            JobChange::Unchanged
        };
        Self {
            rules: old.rules != new.rules,
            outputs,
            job,
            camera: old.camera != new.camera
                || old.encoder != new.encoder
                || old.queue != new.queue,
            supervisor: old.supervisor != new.supervisor,
        }
    }

    /// Rules or outputs changed: both are rebuilt and swapped in together
    /// (a rule may name a new output).
    pub fn rules_or_outputs(&self) -> bool {
        self.rules || !self.outputs.is_empty()
    }

    /// The camera restarts for its own settings, unless a job restart
    /// (which restarts it anyway) already did.
    pub fn camera_restart_alone(&self) -> bool {
        self.camera && self.job != JobChange::Restart
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> AgentConfig {
        let text = format!(
            r#"
[job]
mode = "worker"
[job.params]
prompt = "ball"

[outputs.relay]
type = "gpio"
backend = "simulated"
line = "GPIO17"

[outputs.events]
type = "log"
path = "/tmp/unused-by-this-test.jsonl"

[[rules]]
name = "r"
match = {{ type = "detection", label = "ball" }}
then = [{{ output = "relay", action = "set" }}]
{extra}
"#
        );
        toml::from_str(&text).unwrap_or_else(|e| panic!("test config: {e}\n{text}"))
    }

    #[test]
    fn the_same_config_changes_nothing() {
        let a = config("");
        let d = ConfigDiff::between(&a, &a.clone());
        assert!(!d.rules_or_outputs());
        assert_eq!(d.job, JobChange::Unchanged);
        assert!(!d.camera && !d.supervisor);
    }

    #[test]
    fn only_params_changed_sends_them_without_a_restart() {
        let a = config("");
        let mut b = a.clone();
        let crate::config::JobMode::Worker(w) = &mut b.job else {
            panic!("worker job expected")
        };
        w.params.insert("prompt".into(), "cup".into());
        let d = ConfigDiff::between(&a, &b);
        match d.job {
            JobChange::Params(p) => assert_eq!(p["prompt"], "cup"),
            other => panic!("expected a params change, got {other:?}"),
        }
    }

    #[test]
    fn params_and_the_worker_url_changed_restarts_the_job() {
        let a = config("");
        let mut b = a.clone();
        let crate::config::JobMode::Worker(w) = &mut b.job else {
            panic!("worker job expected")
        };
        w.params.insert("prompt".into(), "cup".into());
        w.worker_url = "http://127.0.0.1:9/".into();
        let d = ConfigDiff::between(&a, &b);
        assert_eq!(d.job, JobChange::Restart);
        assert!(!d.camera_restart_alone() || !d.camera);
    }

    #[test]
    fn each_output_is_named_by_what_happened_to_it() {
        let a = config("");
        let mut b = a.clone();
        b.outputs.remove("events");
        let relay = b.outputs.get("relay").cloned().expect("relay");
        b.outputs.insert("siren".into(), relay);
        let crate::actions::OutputConfig::Gpio(g) = b.outputs.get_mut("relay").expect("relay")
        else {
            panic!("gpio output expected")
        };
        g.active_low = !g.active_low;
        let d = ConfigDiff::between(&a, &b);
        assert_eq!(d.outputs.added, BTreeSet::from(["siren".to_string()]));
        assert_eq!(d.outputs.removed, BTreeSet::from(["events".to_string()]));
        assert_eq!(d.outputs.changed, BTreeSet::from(["relay".to_string()]));
        assert!(d.rules_or_outputs() && !d.rules);
        assert_eq!(d.job, JobChange::Unchanged);
    }

    #[test]
    fn a_camera_change_restarts_capture_alone_unless_the_job_restarts() {
        let a = config("");
        let mut b = a.clone();
        b.camera.fps = 15;
        let d = ConfigDiff::between(&a, &b);
        assert!(d.camera && d.camera_restart_alone());
        b.tls.insecure = !a.tls.insecure;
        let d = ConfigDiff::between(&a, &b);
        assert_eq!(d.job, JobChange::Restart, "TLS settings restart the job");
        assert!(d.camera && !d.camera_restart_alone());
    }

    #[test]
    fn rules_and_supervisor_changes_are_seen() {
        let a = config("");
        let mut b = a.clone();
        b.rules.clear();
        b.supervisor.keepalive_interval = std::time::Duration::from_secs(9);
        let d = ConfigDiff::between(&a, &b);
        assert!(d.rules && d.supervisor && d.rules_or_outputs());
    }
}
