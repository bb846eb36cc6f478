//! `homeassistant = true` on an MQTT output: Home Assistant MQTT discovery,
//! so a board shows up in Home Assistant without any YAML written there.
//!
//! What is announced, all retained so a Home Assistant that starts later
//! still finds it:
//! - `<prefix>/binary_sensor/<node>/<rule>/config` per rule, its state
//!   `ON` while the rule holds (a rule without `hold` is `ON` for an
//!   instant, then `OFF`);
//! - `<prefix>/sensor/<node>/detections_per_minute/config`, the detection
//!   boxes the rules saw in the last minute;
//! - `trickle-edge/<node>/availability`: `online` after each connect,
//!   `offline` on a clean stop and, as the connection's last will, when
//!   the agent dies or loses the broker.
//!
//! A rule removed by a reload gets an empty retained config (Home
//! Assistant then deletes the entity) and an empty retained state. After
//! each connect the output also subscribes to its own rule configs: a
//! retained one naming no current rule (removed while the agent was
//! stopped, or by a reload that also rebuilt this output) is retracted the
//! same way.
//!
//! This module only builds messages; `mqtt.rs` publishes them, so the
//! naming and payloads are tested without a broker.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{LastWill, QoS};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::config::MqttConfig;
use super::error::ActionError;
use crate::status::{LiveFeed, RuleChange};

/// How often the detections-per-minute sensor is recomputed (published
/// only when its value changed).
pub(crate) const RATE_EVERY: Duration = Duration::from_secs(5);
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// One retained message to publish.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Msg {
    pub topic: String,
    pub payload: Vec<u8>,
}

impl Msg {
    fn new(topic: String, payload: impl Into<Vec<u8>>) -> Msg {
        Msg {
            topic,
            payload: payload.into(),
        }
    }
}

/// Refuses a prefix or node id Home Assistant or the broker would not take:
/// the keys are named so `check` and `run` place the error in the file.
pub(crate) fn validate(output: &str, cfg: &MqttConfig) -> Result<(), ActionError> {
    let invalid = |field, reason: String| ActionError::Invalid {
        output: output.into(),
        field,
        reason,
    };
    let p = &cfg.discovery_prefix;
    if p.is_empty()
        || p.contains(['+', '#', '\0'])
        || p.starts_with('/')
        || p.ends_with('/')
        || p.contains("//")
    {
        return Err(invalid(
            "discovery_prefix",
            format!(
                "{p:?}: must be a non-empty topic without `+`, `#`, empty levels or a leading or trailing `/` (Home Assistant's default is \"homeassistant\")"
            ),
        ));
    }
    if let Some(id) = &cfg.node_id
        && (id.is_empty() || !id.chars().all(is_id_char))
    {
        return Err(invalid(
            "node_id",
            format!(
                "{id:?}: only letters, digits, `_` and `-` (it is a topic level and a Home Assistant id)"
            ),
        ));
    }
    Ok(())
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// A name as a topic level and Home Assistant object id: anything but
/// letters, digits, `_` and `-` becomes `_`.
pub(crate) fn object_id(name: &str) -> String {
    let id: String = name
        .chars()
        .map(|c| if is_id_char(c) { c } else { '_' })
        .collect();
    if id.is_empty() { "_".into() } else { id }
}

/// The configured `node_id`, else this machine's hostname (what a person
/// recognises in Home Assistant's device list).
fn node_id(cfg: &MqttConfig) -> String {
    cfg.node_id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        match host.trim() {
            "" => "trickle-edge".into(),
            h => object_id(h),
        }
    })
}

/// The discovery state of one MQTT output: what it announced, and the
/// samples behind the detections-per-minute sensor.
pub(crate) struct Discovery {
    prefix: String,
    node: String,
    device: Value,
    base: String,
    live: Arc<LiveFeed>,
    /// Rule names with a config published.
    announced: BTreeSet<String>,
    /// The rules' names once the rules task reported them.
    current: Option<BTreeSet<String>>,
    /// Object ids of retained rule configs the broker holds, not yet
    /// compared with the rules (which may not be known yet).
    found: BTreeSet<String>,
    /// `(when, detections_total)`, covering the last minute.
    samples: VecDeque<(Instant, u64)>,
    last_rate: Option<u64>,
}

impl Discovery {
    pub(crate) fn new(cfg: &MqttConfig, live: Arc<LiveFeed>, model: Option<&str>) -> Discovery {
        let node = node_id(cfg);
        let device = json!({
            "identifiers": [format!("trickle_edge_{node}")],
            "name": node,
            "manufacturer": "trickle-edge",
            "model": model.unwrap_or("trickle-edge"),
            "sw_version": env!("CARGO_PKG_VERSION"),
        });
        Discovery {
            prefix: cfg.discovery_prefix.clone(),
            base: format!("trickle-edge/{node}"),
            node,
            device,
            live,
            announced: BTreeSet::new(),
            current: None,
            found: BTreeSet::new(),
            samples: VecDeque::new(),
            last_rate: None,
        }
    }

    pub(crate) fn availability_topic(&self) -> String {
        format!("{}/availability", self.base)
    }

    /// `offline`, retained, sent by the broker if the connection dies.
    pub(crate) fn last_will(&self) -> LastWill {
        LastWill::new(self.availability_topic(), "offline", QoS::AtLeastOnce, true)
    }

    /// What to subscribe to after each connect: this node's rule configs,
    /// whose retained copies say what Home Assistant still shows.
    pub(crate) fn configs_filter(&self) -> String {
        format!("{}/binary_sensor/{}/+/config", self.prefix, self.node)
    }

    /// A retained rule config the broker holds (from `configs_filter`):
    /// retracted if it names no current rule.
    pub(crate) fn retained_config(&mut self, topic: &str, payload: &[u8]) -> Vec<Msg> {
        let head = format!("{}/binary_sensor/{}/", self.prefix, self.node);
        let id = topic
            .strip_prefix(&head)
            .and_then(|rest| rest.strip_suffix("/config"));
        match id {
            Some(id) if !payload.is_empty() && !id.contains('/') => {
                self.found.insert(id.to_string());
                self.retract_stale()
            }
            _ => Vec::new(),
        }
    }

    /// Empty retained config and state for each found config that names no
    /// current rule; nothing until the rules are known.
    fn retract_stale(&mut self) -> Vec<Msg> {
        let Some(current) = &self.current else {
            return Vec::new();
        };
        let ids: BTreeSet<String> = current.iter().map(|r| object_id(r)).collect();
        let found = std::mem::take(&mut self.found);
        found
            .iter()
            .filter(|id| !ids.contains(*id))
            .flat_map(|id| {
                [
                    Msg::new(self.rule_config_topic(id), ""),
                    Msg::new(self.rule_state_topic(id), ""),
                ]
            })
            .collect()
    }

    pub(crate) fn offline(&self) -> Msg {
        Msg::new(self.availability_topic(), "offline")
    }

    fn rule_config_topic(&self, rule: &str) -> String {
        format!(
            "{}/binary_sensor/{}/{}/config",
            self.prefix,
            self.node,
            object_id(rule)
        )
    }

    fn rule_state_topic(&self, rule: &str) -> String {
        format!("{}/rule/{}/state", self.base, object_id(rule))
    }

    fn rate_topic(&self) -> String {
        format!("{}/detections_per_minute", self.base)
    }

    fn common(&self, name: &str, id: &str, state_topic: String) -> serde_json::Map<String, Value> {
        let v = json!({
            "name": name,
            "unique_id": format!("trickle_edge_{}_{id}", self.node),
            "object_id": format!("trickle_edge_{}_{id}", self.node),
            "state_topic": state_topic,
            "availability_topic": self.availability_topic(),
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": self.device,
        });
        match v {
            Value::Object(m) => m,
            _ => unreachable!("a JSON object literal"),
        }
    }

    fn rule_config(&self, rule: &str) -> Msg {
        let mut c = self.common(
            rule,
            &format!("rule_{}", object_id(rule)),
            self.rule_state_topic(rule),
        );
        c.insert("payload_on".into(), "ON".into());
        c.insert("payload_off".into(), "OFF".into());
        Msg::new(self.rule_config_topic(rule), Value::Object(c).to_string())
    }

    fn rate_config(&self) -> Msg {
        let mut c = self.common(
            "Detections per minute",
            "detections_per_minute",
            self.rate_topic(),
        );
        c.insert("unit_of_measurement".into(), "detections/min".into());
        c.insert("state_class".into(), "measurement".into());
        c.insert("icon".into(), "mdi:cctv".into());
        Msg::new(
            format!(
                "{}/sensor/{}/detections_per_minute/config",
                self.prefix, self.node
            ),
            Value::Object(c).to_string(),
        )
    }

    fn rule_state(&self, rule: &str, on: bool) -> Msg {
        Msg::new(self.rule_state_topic(rule), if on { "ON" } else { "OFF" })
    }

    /// After each connect: `online`, every config and every current state
    /// (the broker may have restarted without them).
    pub(crate) fn on_connect(&mut self, now: Instant) -> Vec<Msg> {
        let mut out = vec![
            Msg::new(self.availability_topic(), "online"),
            self.rate_config(),
        ];
        let names = self.live.rule_names().borrow().clone();
        self.announced.clear();
        if let Some(names) = names {
            out.extend(self.rules_changed(&names));
        }
        out.extend(self.states());
        self.last_rate = None;
        out.extend(self.tick(now));
        out
    }

    /// The rules are now `names`: configs for new ones; for removed ones an
    /// empty retained config (Home Assistant deletes the entity) and state.
    pub(crate) fn rules_changed(&mut self, names: &[String]) -> Vec<Msg> {
        let mut out = Vec::new();
        let current: BTreeSet<String> = names.iter().cloned().collect();
        for gone in self.announced.difference(&current) {
            out.push(Msg::new(self.rule_config_topic(gone), ""));
            out.push(Msg::new(self.rule_state_topic(gone), ""));
        }
        let on = self.live.rules_on();
        for new in current.difference(&self.announced) {
            out.push(self.rule_config(new));
            out.push(self.rule_state(new, on.get(new).copied().unwrap_or(false)));
        }
        self.announced = current.clone();
        self.current = Some(current);
        out.extend(self.retract_stale());
        out
    }

    /// A rule went on or off.
    pub(crate) fn rule_change(&self, c: &RuleChange) -> Option<Msg> {
        self.announced
            .contains(&c.rule)
            .then(|| self.rule_state(&c.rule, c.on))
    }

    /// Every announced rule's state, after changes were missed.
    pub(crate) fn states(&self) -> Vec<Msg> {
        let on = self.live.rules_on();
        self.announced
            .iter()
            .map(|r| self.rule_state(r, on.get(r).copied().unwrap_or(false)))
            .collect()
    }

    /// Samples the detection count; the sensor's new value if it changed.
    /// Until a minute has passed the value counts from the first sample.
    pub(crate) fn tick(&mut self, now: Instant) -> Option<Msg> {
        let total = self.live.detections_total();
        self.samples.push_back((now, total));
        while self
            .samples
            .get(1)
            .is_some_and(|&(t, _)| now.duration_since(t) >= RATE_WINDOW)
        {
            self.samples.pop_front();
        }
        let oldest = self.samples.front().map_or(total, |&(_, n)| n);
        let rate = total.saturating_sub(oldest);
        if self.last_rate == Some(rate) {
            return None;
        }
        self.last_rate = Some(rate);
        Some(Msg::new(self.rate_topic(), rate.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> MqttConfig {
        toml::from_str(&format!(
            "broker = \"mqtt://127.0.0.1\"\nhomeassistant = true\n{extra}"
        ))
        .unwrap()
    }

    fn json_of(m: &Msg) -> Value {
        serde_json::from_slice(&m.payload).unwrap()
    }

    #[test]
    fn prefixes_and_node_ids_are_checked() {
        for bad in ["", "ha/+", "ha/#", "/ha", "ha/", "a//b"] {
            let e = validate("bus", &cfg(&format!("discovery_prefix = {bad:?}"))).unwrap_err();
            assert!(e.to_string().contains("`discovery_prefix`"), "{e}");
        }
        assert!(validate("bus", &cfg("discovery_prefix = \"ha/edge\"")).is_ok());
        let e = validate("bus", &cfg("node_id = \"a b\"")).unwrap_err();
        assert!(e.to_string().contains("`node_id`"), "{e}");
    }

    #[test]
    fn configs_name_the_device_topics_and_availability() {
        let live = Arc::new(LiveFeed::default());
        let r: Arc<str> = Arc::from("door open!");
        live.rule_states([(&r, true)].into_iter(), &[]);
        let mut d = Discovery::new(&cfg("node_id = \"cam1\""), live, Some("rpi5"));
        let msgs = d.on_connect(Instant::now());
        assert_eq!(
            msgs[0],
            Msg::new("trickle-edge/cam1/availability".into(), "online")
        );
        let rule = msgs
            .iter()
            .find(|m| m.topic == "homeassistant/binary_sensor/cam1/door_open_/config")
            .expect("the rule's config");
        let v = json_of(rule);
        assert_eq!(v["name"], "door open!");
        assert_eq!(v["unique_id"], "trickle_edge_cam1_rule_door_open_");
        assert_eq!(v["state_topic"], "trickle-edge/cam1/rule/door_open_/state");
        assert_eq!(v["availability_topic"], "trickle-edge/cam1/availability");
        assert_eq!(v["device"]["identifiers"][0], "trickle_edge_cam1");
        assert_eq!(v["device"]["model"], "rpi5");
        assert_eq!(v["device"]["sw_version"], env!("CARGO_PKG_VERSION"));
        assert!(msgs.contains(&Msg::new(
            "trickle-edge/cam1/rule/door_open_/state".into(),
            "ON"
        )));
        assert!(
            msgs.iter()
                .any(|m| m.topic == "homeassistant/sensor/cam1/detections_per_minute/config")
        );
        assert!(msgs.contains(&Msg::new(
            "trickle-edge/cam1/detections_per_minute".into(),
            "0"
        )));
    }

    #[test]
    fn a_removed_rule_gets_empty_retained_messages() {
        let live = Arc::new(LiveFeed::default());
        let mut d = Discovery::new(&cfg("node_id = \"n\""), live, None);
        d.rules_changed(&["a".into(), "b".into()]);
        let msgs = d.rules_changed(&["a".into()]);
        assert_eq!(
            msgs,
            [
                Msg::new("homeassistant/binary_sensor/n/b/config".into(), ""),
                Msg::new("trickle-edge/n/rule/b/state".into(), ""),
            ]
        );
        assert!(
            d.rule_change(&RuleChange {
                rule: "b".into(),
                on: true
            })
            .is_none()
        );
    }

    #[test]
    fn retained_configs_of_unknown_rules_are_retracted_once_rules_are_known() {
        let live = Arc::new(LiveFeed::default());
        let mut d = Discovery::new(&cfg("node_id = \"n\""), live, None);
        let topic = |id: &str| format!("homeassistant/binary_sensor/n/{id}/config");
        assert_eq!(d.configs_filter(), "homeassistant/binary_sensor/n/+/config");
        // Before the rules are known nothing is retracted.
        assert!(d.retained_config(&topic("old"), b"{}").is_empty());
        assert!(d.retained_config(&topic("kept_rule"), b"{}").is_empty());
        let msgs = d.rules_changed(&["kept rule".into()]);
        assert!(msgs.contains(&Msg::new(topic("old"), "")));
        assert!(msgs.contains(&Msg::new("trickle-edge/n/rule/old/state".into(), "")));
        assert!(!msgs.contains(&Msg::new(topic("kept_rule"), "")));
        // Once known, at once; an empty payload is already a retraction.
        assert_eq!(d.retained_config(&topic("older"), b"{}").len(), 2);
        assert!(d.retained_config(&topic("gone"), b"").is_empty());
        assert!(
            d.retained_config("homeassistant/sensor/n/x/config", b"{}")
                .is_empty()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn detections_per_minute_counts_the_last_minute() {
        let live = Arc::new(LiveFeed::default());
        let mut d = Discovery::new(&cfg(""), live.clone(), None);
        let boxes = serde_json::json!({"boxes": [{"label": "ball"}, {"label": "ball"}]});
        let item = crate::data::Item::json(Arc::from("data"), 1, Instant::now(), boxes);
        assert_eq!(d.tick(Instant::now()).unwrap().payload, b"0");
        live.item(&item);
        tokio::time::advance(RATE_EVERY).await;
        assert_eq!(d.tick(Instant::now()).unwrap().payload, b"2");
        tokio::time::advance(RATE_EVERY).await;
        assert!(d.tick(Instant::now()).is_none(), "unchanged: not sent");
        tokio::time::advance(RATE_WINDOW).await;
        assert_eq!(d.tick(Instant::now()).unwrap().payload, b"0");
    }
}
