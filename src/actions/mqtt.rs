//! `type = "mqtt"`: publishes the item JSON with rumqttc.
//!
//! The rumqttc event loop is polled in its own task: polling again after an
//! error reconnects, so the task only adds backoff with full jitter and logs
//! once per state change (connected / lost), never once per failed attempt.
//! Publishing waits for room in rumqttc's bounded request channel; while the
//! broker is down or slow that fills, then our queue fills. At QoS 1 and 2
//! what the queue cannot hold goes to the output's overflow file
//! (`<spill_dir>/<output>.spill`, see [`super::spill`]) as finished topic
//! and payload, published in order once the broker takes them again; the
//! file survives a restart. At QoS 0 the new effect is dropped (and
//! counted): the user chose fire-and-forget, which MQTT itself may drop.
//!
//! `mqtts://` brokers are reached over TLS built by the crate's TLS policy
//! (rumqttc is given our rustls config, so it uses the same `ring`
//! provider): verified against the system roots or the output's `ca_file`
//! or `pin_sha256`, with `client_cert` + `client_key` for brokers that
//! require a client certificate. A password sent over plain `mqtt://` to a
//! host other than loopback is allowed (many LAN brokers have no TLS) but
//! warned about at every start and by `check`.
//!
//! With `homeassistant = true` the same connection carries Home Assistant
//! discovery (`homeassistant.rs` builds the messages): its last will is the
//! availability topic's `offline`, and the publishing loop also follows the
//! rules' names and states. A clean stop (the queue closed) publishes
//! `offline` and waits, briefly, for the disconnect to be written.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use rustls::ClientConfig;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::{Instant, sleep};

use super::OutputContext;
use super::config::MqttConfig;
use super::counters::Counters;
use super::error::ActionError;
use super::homeassistant::{self, Discovery, Msg};
use super::json::item_json;
use super::queue::{Overflow, Queue};
use super::spill::{dir_or_default, path_in};
use super::tls::{OutputTls, insecure_warning};
use crate::backoff::Backoff;
use crate::rules::Effect;

/// Placeholders the topic template may use.
const PLACEHOLDERS: [&str; 4] = ["rule", "output", "type", "channel"];

/// Broker address and QoS, checked at build.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    host: String,
    port: u16,
    qos: QoS,
    /// `mqtts://`.
    encrypted: bool,
    /// Set by [`prepare`] for `mqtts://` brokers.
    tls: Option<Arc<ClientConfig>>,
}

/// [`validate`], then the TLS config of an `mqtts://` broker (reading its
/// CA, certificate and key files): what `run` starts with and what `check`
/// tries on this machine.
pub(crate) fn prepare(output: &str, cfg: &MqttConfig) -> Result<Plan, ActionError> {
    let mut plan = validate(output, cfg)?;
    if plan.encrypted {
        plan.tls = Some(OutputTls::from(cfg).client_config(output)?);
    }
    Ok(plan)
}

/// What a config that works may still get wrong: verification off, or a
/// password readable on the network. Logged at every start; `check`
/// prints them too.
pub(crate) fn warnings(output: &str, cfg: &MqttConfig) -> Vec<String> {
    let Ok(plan) = validate(output, cfg) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if cfg.insecure && plan.encrypted {
        out.push(insecure_warning(output, "broker"));
    }
    if cfg.password.is_some() && !plan.encrypted && !is_loopback(&plan.host) {
        out.push(format!(
            "outputs.{output}: the MQTT password goes to {}:{} in clear text (mqtt://); use mqtts:// where the broker offers TLS",
            plan.host, plan.port
        ));
    }
    out
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

pub(crate) fn validate(output: &str, cfg: &MqttConfig) -> Result<Plan, ActionError> {
    let invalid = |field, reason: String| ActionError::Invalid {
        output: output.into(),
        field,
        reason,
    };
    let (rest, encrypted, default_port) = if let Some(rest) = cfg.broker.strip_prefix("mqtt://") {
        (rest, false, 1883)
    } else if let Some(rest) = cfg.broker.strip_prefix("mqtts://") {
        (rest, true, 8883)
    } else {
        return Err(invalid(
            "broker",
            format!(
                "{:?}: expected mqtt://host[:port] or, over TLS, mqtts://host[:port]",
                cfg.broker
            ),
        ));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') => {
            let port = p
                .parse()
                .map_err(|_| invalid("broker", format!("{:?}: bad port {p:?}", cfg.broker)))?;
            (h, port)
        }
        _ => (rest, default_port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(invalid("broker", format!("{:?}: no host", cfg.broker)));
    }
    let qos = match cfg.qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        2 => QoS::ExactlyOnce,
        q => return Err(invalid("qos", format!("{q}: must be 0, 1 or 2"))),
    };
    check_template(&cfg.topic).map_err(|reason| invalid("topic", reason))?;
    if cfg.keep_alive < std::time::Duration::from_secs(1) {
        return Err(invalid("keep_alive", "must be at least 1s".into()));
    }
    if cfg.password.is_some() && cfg.username.is_none() {
        return Err(invalid("password", "needs `username`".into()));
    }
    OutputTls::from(cfg).check(output, encrypted, "broker", "mqtts:// brokers")?;
    homeassistant::validate(output, cfg)?;
    if encrypted {
        rustls_pki_types::ServerName::try_from(host).map_err(|e| {
            invalid(
                "broker",
                format!(
                    "{:?}: {host:?} cannot be checked against a certificate: {e}",
                    cfg.broker
                ),
            )
        })?;
    }
    Ok(Plan {
        host: host.to_string(),
        port,
        qos,
        encrypted,
        tls: None,
    })
}

fn check_template(t: &str) -> Result<(), String> {
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("{t:?}: unclosed `{{`"))?
            + open;
        let name = &rest[open + 1..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "{t:?}: unknown placeholder {{{name}}} (known: {{rule}}, {{output}}, {{type}}, {{channel}})"
            ));
        }
        rest = &rest[close + 1..];
    }
    if t.is_empty() || t.contains(['+', '#']) {
        return Err(format!(
            "{t:?}: a publish topic must be non-empty without `+` or `#`"
        ));
    }
    Ok(())
}

/// Fills the template; wildcard characters in values become `_` so an item's
/// channel or type can never turn into a wildcard or an extra level.
pub fn render_topic(template: &str, effect: &Effect) -> String {
    let clean = |s: &str| s.replace(['+', '#', '/', '\0'], "_");
    let item = effect.item.as_deref();
    template
        .replace("{rule}", &clean(&effect.rule))
        .replace("{output}", &clean(&effect.output))
        .replace(
            "{type}",
            &clean(item.and_then(|i| i.event_type.as_deref()).unwrap_or("none")),
        )
        .replace("{channel}", &clean(item.map_or("none", |i| &i.channel)))
}

/// The overflow file of a QoS 1 or 2 output; one left by an earlier run is
/// published first.
pub(crate) fn overflow(output: &str, cfg: &MqttConfig) -> Result<Overflow, ActionError> {
    let dir = dir_or_default(cfg.spill_dir.as_deref());
    let template = cfg.topic.clone();
    Overflow::open(
        output,
        "spill_dir",
        path_in(&dir, output),
        cfg.spill_max_bytes,
        Box::new(move |e| spill_line(&render_topic(&template, e), &payload_of(e))),
    )
}

/// The payload for an effect: compact JSON, so never a newline in it.
fn payload_of(effect: &Effect) -> Vec<u8> {
    serde_json::to_vec(&item_json(&effect.rule, effect.item.as_deref())).unwrap_or_default()
}

/// `"<topic as a JSON string>"\t<payload>\n`: a JSON string holds no raw
/// tab or newline, and the payload (compact JSON) no raw newline.
fn spill_line(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut line = serde_json::to_vec(topic).unwrap_or_default();
    line.push(b'\t');
    line.extend_from_slice(payload);
    line.push(b'\n');
    line
}

/// The topic and payload of a spilled line.
fn parse_spill_line(line: &[u8]) -> Option<(String, Vec<u8>)> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let tab = line.iter().position(|b| *b == b'\t')?;
    let topic = serde_json::from_slice(&line[..tab]).ok()?;
    Some((topic, line[tab + 1..].to_vec()))
}

/// Spilled messages read back at once.
const SPILL_BATCH: usize = 1024;

/// Aborts the event-loop task when the publishing task ends or is aborted.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long a clean stop waits for `offline` and the disconnect to leave.
const GOODBYE: Duration = Duration::from_secs(1);

pub(crate) async fn run(
    output: Arc<str>,
    cfg: MqttConfig,
    plan: Plan,
    queue: Arc<Queue>,
    counters: Arc<Counters>,
    ctx: OutputContext,
) {
    let client_id = cfg
        .client_id
        .clone()
        .unwrap_or_else(|| format!("trickle-edge-{output}"));
    let mut opts = MqttOptions::new(client_id, plan.host.clone(), plan.port);
    opts.set_keep_alive(cfg.keep_alive);
    // rumqttc's default limit is 10 KiB, less than a busy detection item;
    // room for the longest possible topic on top of the payload.
    opts.set_max_packet_size(64 * 1024, cfg.max_payload + 64 * 1024);
    if let Some(user) = &cfg.username {
        opts.set_credentials(
            user.clone(),
            cfg.password
                .as_ref()
                .map(|p| p.0.clone())
                .unwrap_or_default(),
        );
    }
    if let Some(tls) = &plan.tls {
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls.clone(),
        )));
    }
    let mut discovery = cfg
        .homeassistant
        .then(|| Discovery::new(&cfg, ctx.live.clone(), ctx.model.as_deref()));
    if let Some(d) = &discovery {
        opts.set_last_will(d.last_will());
    }
    for warning in warnings(&output, &cfg) {
        tracing::warn!(output = %output, "{warning}");
    }
    let (client, mut events) = AsyncClient::new(opts, cfg.queue.max(1));
    // The scheme in every log line: a refused TLS handshake can surface as a
    // bare "received fatal alert" on the first read.
    let scheme = if plan.encrypted { "mqtts" } else { "mqtt" };
    let broker = format!("{scheme}://{}:{}", plan.host, plan.port);
    let ev_counters = counters.clone();
    let ev_output = output.clone();
    let (min, max) = (cfg.reconnect_min, cfg.reconnect_max);
    // Counts connections, so discovery re-announces after each one.
    let (connects_tx, mut connects) = watch::channel(0u64);
    // Retained rule configs the broker holds (discovery only).
    let (retained_tx, mut retained) = mpsc::channel::<(String, bytes::Bytes)>(64);
    let configs_filter = discovery.as_ref().map(|d| d.configs_filter());
    let ev_client = client.clone();
    let mut event_loop = AbortOnDrop(tokio::spawn(async move {
        let mut backoff = Backoff::new(min, max);
        let mut connected: Option<bool> = None;
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if connected != Some(true) {
                        tracing::info!(output = %ev_output, broker, "MQTT connected");
                    }
                    connected = Some(true);
                    backoff.reset();
                    connects_tx.send_modify(|n| *n += 1);
                    if let Some(f) = &configs_filter
                        && let Err(e) = ev_client.try_subscribe(f.clone(), QoS::AtLeastOnce)
                    {
                        tracing::warn!(output = %ev_output, error = %e, "Home Assistant: cannot subscribe to this node's configs");
                    }
                }
                // Only retained copies, delivered at subscribe time: our
                // own publishes come back without the flag.
                Ok(Event::Incoming(Packet::Publish(p))) if p.retain => {
                    let _ = retained_tx.try_send((p.topic, p.payload));
                }
                Ok(Event::Outgoing(Outgoing::Publish(_))) => ev_counters.sent(),
                // A clean stop: what was asked before it has been written.
                Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                Ok(_) => {}
                Err(e) => {
                    if connected != Some(false) {
                        tracing::warn!(output = %ev_output, broker, error = %e, "MQTT connection lost, reconnecting with backoff");
                    }
                    connected = Some(false);
                    ev_counters.retry();
                    sleep(backoff.next_delay()).await;
                }
            }
        }
    }));
    let mut names = ctx.live.rule_names();
    let mut changes = ctx.live.subscribe();
    let mut rate = tokio::time::interval(homeassistant::RATE_EVERY);
    rate.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ha = discovery.is_some();
    let sink = Sink {
        output: &output,
        cfg: &cfg,
        plan: &plan,
        client: &client,
        counters: &counters,
    };
    loop {
        let msgs: Vec<Msg> = tokio::select! {
            ready = queue.ready() => {
                if !ready || !deliver_next(&sink, &queue).await {
                    break;
                }
                continue;
            }
            Ok(()) = connects.changed(), if ha => {
                connects.borrow_and_update();
                discovery.as_mut().map(|d| d.on_connect(Instant::now())).unwrap_or_default()
            }
            Ok(()) = names.changed(), if ha => {
                let now = names.borrow_and_update().clone();
                match (now, discovery.as_mut()) {
                    (Some(now), Some(d)) => d.rules_changed(&now),
                    _ => Vec::new(),
                }
            }
            Some((topic, payload)) = retained.recv(), if ha => {
                discovery.as_mut().map(|d| d.retained_config(&topic, &payload)).unwrap_or_default()
            }
            change = changes.recv(), if ha => match (change, &discovery) {
                (Ok(c), Some(d)) => d.rule_change(&c).into_iter().collect(),
                (Err(broadcast::error::RecvError::Lagged(_)), Some(d)) => d.states(),
                _ => Vec::new(),
            },
            _ = rate.tick(), if ha => {
                discovery.as_mut().and_then(|d| d.tick(Instant::now())).into_iter().collect()
            }
        };
        for m in msgs {
            publish_retained(&output, &client, m).await;
        }
    }
    if let Some(d) = &discovery {
        publish_retained(&output, &client, d.offline()).await;
    }
    let _ = client.try_disconnect();
    // Let the event loop write what is queued, up to the disconnect.
    let _ = tokio::time::timeout(GOODBYE, &mut event_loop.0).await;
}

/// Where this output's effects go: what publishing one needs.
struct Sink<'a> {
    output: &'a str,
    cfg: &'a MqttConfig,
    plan: &'a Plan,
    client: &'a AsyncClient,
    counters: &'a Counters,
}

impl Sink<'_> {
    /// Hands one message to the MQTT client (which retries it across
    /// reconnects at QoS 1 and 2); too large or refused → counted, warned.
    async fn publish(&self, topic: String, payload: Vec<u8>) {
        if payload.len() > self.cfg.max_payload {
            self.counters.failed();
            tracing::warn!(output = %self.output, topic, bytes = payload.len(), max_payload = self.cfg.max_payload, "MQTT message too large, not published");
            return;
        }
        if let Err(e) = self
            .client
            .publish(topic, self.plan.qos, self.cfg.retain, payload)
            .await
        {
            self.counters.failed();
            tracing::warn!(output = %self.output, error = %e, "MQTT publish failed");
        }
    }
}

/// Publishes what is next: the in-memory queue first (while the overflow
/// holds messages, new effects go behind them there, so what is queued is
/// older), else a batch from the overflow file. False when the file reader
/// task died (the output ends).
async fn deliver_next(sink: &Sink<'_>, queue: &Arc<Queue>) -> bool {
    if let Some(effect) = queue.front() {
        sink.publish(render_topic(&sink.cfg.topic, &effect), payload_of(&effect))
            .await;
        queue.sent();
        return true;
    }
    let q = queue.clone();
    let lines = match tokio::task::spawn_blocking(move || q.peek_spilled(SPILL_BATCH)).await {
        Ok(Ok(lines)) => lines,
        Ok(Err(e)) => {
            tracing::warn!(output = %sink.output, error = %e, "cannot read the MQTT overflow file back; retrying");
            sleep(sink.cfg.reconnect_max).await;
            return true;
        }
        Err(_) => return false,
    };
    for line in lines {
        match parse_spill_line(&line) {
            Some((topic, payload)) => sink.publish(topic, payload).await,
            None => {
                sink.counters.failed();
                tracing::warn!(output = %sink.output, "unreadable line in the MQTT overflow file, skipped");
            }
        }
        // Handed to the MQTT client: a restart from here does not publish
        // it again.
        if let Err(e) = queue.consume_spilled(1, line.len() as u64) {
            tracing::warn!(output = %sink.output, error = %e, "cannot update the MQTT overflow file");
        }
    }
    true
}

/// A Home Assistant discovery, state or availability message: retained
/// (a Home Assistant started later must find it) and at least once.
async fn publish_retained(output: &str, client: &AsyncClient, m: Msg) {
    if let Err(e) = client
        .publish(m.topic, QoS::AtLeastOnce, true, m.payload)
        .await
    {
        tracing::warn!(output = %output, error = %e, "Home Assistant publish failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spill_lines_keep_topic_and_payload() {
        for topic in ["a/b", "a\tb\n\"c\"", "é/\\"] {
            let line = spill_line(topic, br#"{"x":"\t\n"}"#);
            assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
            let (t, p) = parse_spill_line(&line).unwrap();
            assert_eq!((t.as_str(), p.as_slice()), (topic, &br#"{"x":"\t\n"}"#[..]));
        }
    }

    #[test]
    fn template_checks() {
        assert!(check_template("trickle-edge/{output}/{rule}").is_ok());
        assert!(check_template("a/{type}/{channel}").is_ok());
        assert!(check_template("a/{nope}").unwrap_err().contains("{nope}"));
        assert!(check_template("a/{rule").is_err());
        assert!(check_template("a/#").is_err());
    }
}
