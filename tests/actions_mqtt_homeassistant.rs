//! Home Assistant MQTT discovery (`homeassistant = true` on an MQTT output)
//! against a real mosquitto: the demo's agent in-process (its reference
//! worker sees the ball, so rules fire and detections are counted), and
//! the real `trickle-edge run` binary killed with SIGKILL for the last will.

mod support;

use std::process::Stdio;

use serde_json::Value;
use support::agent::start_agent;
use support::mqtt::{Broker, Received, subscribe};
use support::net::free_port;
use support::time::within;
use support::tmp::temp_dir;
use tokio::process::Command;
use tokio::sync::mpsc::UnboundedReceiver;
use trickle_edge::actions::OutputConfig;
use trickle_edge::config::{AgentConfig, ResolvedConfig};
use trickle_edge::rules::RuleConfig;
use trickle_edge::worker::{WorkerConfig, WorkerHandle};

const BIN: &str = env!("CARGO_BIN_EXE_trickle-edge");

/// Everything a subscriber received, kept so that a wait can look at what
/// arrived before it (discovery messages come in no promised order).
struct Inbox {
    rx: UnboundedReceiver<Received>,
    seen: Vec<Received>,
}

impl Inbox {
    fn new(rx: UnboundedReceiver<Received>) -> Inbox {
        Inbox {
            rx,
            seen: Vec::new(),
        }
    }

    /// The first message at index `from` or later matching `pred`, and its
    /// index; waits for more as needed.
    async fn find(
        &mut self,
        from: usize,
        what: &str,
        pred: impl Fn(&Received) -> bool,
    ) -> (usize, Received) {
        within(what, async {
            let mut i = from;
            loop {
                while i < self.seen.len() {
                    if pred(&self.seen[i]) {
                        return (i, self.seen[i].clone());
                    }
                    i += 1;
                }
                let m = self.rx.recv().await.expect("subscriber alive");
                self.seen.push(m);
            }
        })
        .await
    }

    /// Like `find` for a topic.
    async fn on(&mut self, from: usize, topic: &str) -> (usize, Received) {
        self.find(from, topic, |m| m.topic == topic).await
    }

    /// Like `find` for a topic and payload.
    async fn on_payload(&mut self, from: usize, topic: &str, payload: &str) -> usize {
        let what = format!("{payload:?} on {topic}");
        self.find(from, &what, |m| {
            m.topic == topic && m.payload == payload.as_bytes()
        })
        .await
        .0
    }
}

fn mqtt_output(port: u16, node: &str) -> OutputConfig {
    toml::from_str(&format!(
        "type = \"mqtt\"\nbroker = \"mqtt://127.0.0.1:{port}\"\nhomeassistant = true\nnode_id = \"{node}\"\nreconnect_min = \"100ms\"\nreconnect_max = \"1s\"\n"
    ))
    .unwrap()
}

fn resolved(config: AgentConfig) -> ResolvedConfig {
    ResolvedConfig {
        path: "test".into(),
        preset: None,
        config,
        token: None,
        warnings: vec![],
    }
}

fn json(m: &Received) -> Value {
    serde_json::from_slice(&m.payload)
        .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {}", m.topic, m.text()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_states_detections_and_removal_with_the_demo_agent() {
    let dir = temp_dir("ha-demo");
    let port = free_port();
    let _broker = Broker::start(&dir, port).await;
    let mut inbox = Inbox::new(subscribe(
        port,
        "ha-watcher",
        &["homeassistant/#", "trickle-edge/#"],
    ));

    let worker = WorkerHandle::start(([127, 0, 0, 1], 0).into(), WorkerConfig::default())
        .await
        .unwrap();
    let mut config =
        trickle_edge::agent::demo::demo_config(&worker.url(), &dir.join("events.jsonl")).unwrap();
    config.board = Some("test-board".into());
    config
        .outputs
        .insert("ha".into(), mqtt_output(port, "cam1"));
    let with_extra = {
        let mut c = config.clone();
        let extra: RuleConfig = toml::from_str(
            "name = \"any ball\"\nmatch = { type = \"detection\", label = \"ball\" }\nthen = [{ output = \"events\" }]\n",
        )
        .unwrap();
        c.rules.push(extra);
        c
    };
    let agent = start_agent(resolved(with_extra)).await;

    // Discovery configs: a binary sensor per rule, the detections sensor.
    let avail = "trickle-edge/cam1/availability";
    inbox.on_payload(0, avail, "online").await;
    let rule_cfg = "homeassistant/binary_sensor/cam1/ball-in-left-third/config";
    let (_, m) = inbox.on(0, rule_cfg).await;
    let v = json(&m);
    assert_eq!(v["name"], "ball-in-left-third");
    assert_eq!(v["unique_id"], "trickle_edge_cam1_rule_ball-in-left-third");
    let state = "trickle-edge/cam1/rule/ball-in-left-third/state";
    assert_eq!(v["state_topic"], state);
    assert_eq!(v["availability_topic"], avail);
    assert_eq!(
        (&v["payload_on"], &v["payload_off"]),
        (&"ON".into(), &"OFF".into())
    );
    let device = &v["device"];
    assert_eq!(device["identifiers"][0], "trickle_edge_cam1");
    assert_eq!(device["model"], "test-board");
    assert_eq!(device["sw_version"], env!("CARGO_PKG_VERSION"));
    let extra_cfg = "homeassistant/binary_sensor/cam1/any_ball/config";
    let (_, m) = inbox.on(0, extra_cfg).await;
    assert_eq!(json(&m)["name"], "any ball");
    let (_, m) = inbox
        .on(0, "homeassistant/sensor/cam1/detections_per_minute/config")
        .await;
    let v = json(&m);
    assert_eq!(v["state_topic"], "trickle-edge/cam1/detections_per_minute");
    assert_eq!(v["unique_id"], "trickle_edge_cam1_detections_per_minute");
    assert_eq!(v["device"], *device);

    // The rule holds while the ball is in the left third, then lets go.
    let on = inbox.on_payload(0, state, "ON").await;
    inbox.on_payload(on + 1, state, "OFF").await;
    // The ball is seen: the sensor counts detections.
    inbox
        .find(0, "a detections-per-minute value above 0", |m| {
            m.topic == "trickle-edge/cam1/detections_per_minute"
                && m.text().parse::<u64>().is_ok_and(|n| n > 0)
        })
        .await;

    // Retained: a subscriber that comes later still gets the configs.
    let mut late = Inbox::new(subscribe(port, "ha-late", &["homeassistant/#"]));
    let (_, m) = late.on(0, rule_cfg).await;
    assert!(m.retain, "discovery configs are retained");

    // A reload removes a rule: its entity is deleted (empty retained config).
    let mark = inbox.seen.len();
    agent.reload.send(resolved(config)).await.unwrap();
    inbox.on_payload(mark, extra_cfg, "").await;
    inbox
        .on_payload(mark, "trickle-edge/cam1/rule/any_ball/state", "")
        .await;
    let after = inbox.seen.len();

    // A clean stop says `offline`.
    agent.stop.trigger();
    let _ = within("agent stop", agent.agent).await;
    inbox.on_payload(after, avail, "offline").await;
    // The remaining rule was never retracted.
    assert!(
        !inbox.seen[mark..]
            .iter()
            .any(|m| m.topic == rule_cfg && m.payload.is_empty()),
        "the kept rule's config was deleted"
    );
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), worker.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_removed_while_the_agent_was_stopped_is_retracted_at_the_next_start() {
    let dir = temp_dir("ha-restart");
    let port = free_port();
    let _broker = Broker::start(&dir, port).await;
    let mut inbox = Inbox::new(subscribe(port, "ha-restart", &["homeassistant/#"]));
    let worker = WorkerHandle::start(([127, 0, 0, 1], 0).into(), WorkerConfig::default())
        .await
        .unwrap();
    let mut config =
        trickle_edge::agent::demo::demo_config(&worker.url(), &dir.join("events.jsonl")).unwrap();
    config
        .outputs
        .insert("ha".into(), mqtt_output(port, "cam2"));
    let mut first = config.clone();
    first.rules.push(
        toml::from_str(
            "name = \"gone\"\nmatch = { type = \"detection\" }\nthen = [{ output = \"events\" }]\n",
        )
        .unwrap(),
    );
    let gone = "homeassistant/binary_sensor/cam2/gone/config";
    let kept = "homeassistant/binary_sensor/cam2/ball-in-left-third/config";
    let agent = start_agent(resolved(first)).await;
    inbox.on(0, gone).await;
    agent.stop.trigger();
    let _ = within("agent stop", agent.agent).await;

    // Started again without the rule: the broker's retained copy of its
    // config is the only trace of it, and is retracted.
    let mark = inbox.seen.len();
    let agent = start_agent(resolved(config)).await;
    inbox.on_payload(mark, gone, "").await;
    let (_, m) = inbox
        .find(mark, "the kept rule's config", |m| {
            m.topic == kept && !m.payload.is_empty()
        })
        .await;
    assert_eq!(json(&m)["name"], "ball-in-left-third");
    agent.stop.trigger();
    let _ = within("agent stop", agent.agent).await;
    assert!(
        !inbox
            .seen
            .iter()
            .any(|m| m.topic == kept && m.payload.is_empty()),
        "the kept rule's config was deleted"
    );
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), worker.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_will_says_offline_when_the_agent_is_killed() {
    let dir = temp_dir("ha-kill");
    let port = free_port();
    let _broker = Broker::start(&dir, port).await;
    let mut inbox = Inbox::new(subscribe(port, "ha-lwt", &["trickle-edge/#"]));
    let worker = WorkerHandle::start(([127, 0, 0, 1], 0).into(), WorkerConfig::default())
        .await
        .unwrap();
    let cfg = dir.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[camera]
source = "test"
width = 320
height = 240
fps = 30
[encoder]
bitrate_kbps = 500
[job]
mode = "worker"
worker_url = "{worker}"
listen = "127.0.0.1:0"
channel_prefix = "ha"
[supervisor]
listen = "127.0.0.1:0"
[outputs.ha]
type = "mqtt"
broker = "mqtt://127.0.0.1:{port}"
homeassistant = true
node_id = "killed"
[[rules]]
name = "ball"
match = {{ type = "detection", label = "ball" }}
then = [{{ output = "ha" }}]
"#,
            worker = worker.url()
        ),
    )
    .unwrap();
    let mut agent = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&cfg)
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let avail = "trickle-edge/killed/availability";
    let online = inbox.on_payload(0, avail, "online").await;
    // SIGKILL: no clean stop, so only the broker can say it.
    agent.kill().await.unwrap();
    inbox.on_payload(online + 1, avail, "offline").await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), worker.shutdown()).await;
}
