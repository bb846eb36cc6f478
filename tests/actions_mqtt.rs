//! MQTT output against a real mosquitto broker that the test starts, kills
//! and restarts on a free loopback port.

mod support;

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use support::actions::{build, configs, effect};
use support::mqtt::Broker;
use support::net::free_port;
use support::time::{wait_until, wait_until_for, within};
use support::tmp::temp_dir;
use tokio::sync::mpsc;
use trickle_edge::rules::OutputAction::Deliver;

/// A subscriber that (re)subscribes on every connection and forwards
/// publishes as (topic, retain flag, JSON payload).
fn subscriber(port: u16, id: &str) -> mpsc::UnboundedReceiver<(String, bool, Value)> {
    subscriber_with(port, id, Duration::from_secs(5))
}

/// [`subscriber`] with its own keep-alive: one that outlasts a stopped
/// broker keeps its session (and the messages queued for it).
fn subscriber_with(
    port: u16,
    id: &str,
    keep_alive: Duration,
) -> mpsc::UnboundedReceiver<(String, bool, Value)> {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_keep_alive(keep_alive);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut events) = AsyncClient::new(opts, 16);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    client
                        .try_subscribe("trickle-edge/#", QoS::AtLeastOnce)
                        .unwrap();
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let v = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                    if tx.send((p.topic.clone(), p.retain, v)).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    rx
}

fn big_effect(seq: i64, bytes: usize) -> trickle_edge::rules::Effect {
    let mut e = effect("bus", Deliver, seq);
    let mut item = (**e.item.as_ref().unwrap()).clone();
    item.payload = trickle_edge::data::Payload::Text("x".repeat(bytes));
    e.item = Some(std::sync::Arc::new(item));
    e
}

async fn next(rx: &mut mpsc::UnboundedReceiver<(String, bool, Value)>) -> (String, bool, Value) {
    within("a message", rx.recv())
        .await
        .expect("subscriber alive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_retains_and_survives_broker_restart() {
    let dir = temp_dir("mqtt");
    let port = free_port();
    let broker = Broker::start(&dir, port).await;

    let out = build(json!({ "bus": {
        "type": "mqtt", "broker": format!("mqtt://127.0.0.1:{port}"), "client_id": "edge-test",
        "topic": "trickle-edge/{output}/{rule}/{type}/{channel}", "qos": 1, "retain": true,
        "reconnect_min": "100ms", "reconnect_max": "1s", "max_payload": 200_000,
        "spill_dir": dir,
    }}));

    let mut live = subscriber(port, "sub-live");
    // Wait until the live subscriber is subscribed: a probe retained message
    // published by the agent shows up on it.
    let mut seq = 0;
    let first = loop {
        seq += 1;
        out.dispatch(effect("bus", Deliver, seq));
        match tokio::time::timeout(Duration::from_millis(500), live.recv()).await {
            Ok(Some(m)) => break m,
            Ok(None) => panic!("subscriber ended"),
            Err(_) => assert!(seq < 60, "no message reached the subscriber"),
        }
    };
    assert_eq!(first.0, "trickle-edge/bus/rule-1/detection/data");
    assert_eq!(first.2["rule"], "rule-1");
    assert_eq!(first.2["payload"]["label"], "person");
    wait_until("publish counted", || {
        out.counters_of("bus").unwrap().sent >= 1
    })
    .await;

    // A late subscriber gets the last message as retained. Once the live
    // subscriber has seen it (QoS 1, in order), the broker has stored it.
    let last_sent = seq;
    let mut last_seen = first.2["seq"].as_i64().unwrap();
    while last_seen < last_sent {
        last_seen = next(&mut live).await.2["seq"].as_i64().unwrap();
    }
    let mut late = subscriber(port, "sub-late");
    let (topic, retain, v) = next(&mut late).await;
    assert_eq!(topic, "trickle-edge/bus/rule-1/detection/data");
    assert!(retain, "late subscriber must see the retained flag");
    assert_eq!(v["seq"], last_sent);

    // Items beyond rumqttc's 10 KiB default go through; beyond `max_payload`
    // they are counted as failed and the connection survives.
    out.dispatch(big_effect(2_000, 100 * 1024));
    out.dispatch(big_effect(2_001, 300 * 1024));
    out.dispatch(effect("bus", Deliver, 2_002));
    let mut got = Vec::new();
    while got.last() != Some(&2_002) {
        let (_, _, v) = next(&mut live).await;
        got.push(v["seq"].as_i64().unwrap());
    }
    assert!(got.contains(&2_000) && !got.contains(&2_001), "{got:?}");
    assert_eq!(out.counters_of("bus").unwrap().failed, 1);

    // Kill the broker mid-test, restart it, and see a later message arrive.
    broker.kill().await;
    let retries_before = out.counters_of("bus").unwrap().retries;
    wait_until("agent noticed the broker is gone", || {
        out.counters_of("bus").unwrap().retries > retries_before
    })
    .await;
    let broker = Broker::start(&dir, port).await;
    let marker = 1_000;
    let mut seq = marker;
    loop {
        out.dispatch(effect("bus", Deliver, seq));
        seq += 1;
        if let Ok(Some((_, _, v))) =
            tokio::time::timeout(Duration::from_millis(300), live.recv()).await
            && v["seq"].as_i64().unwrap_or(0) >= marker
        {
            break;
        }
        assert!(seq < marker + 100, "no message after broker restart");
    }
    broker.kill().await;
}

/// Issue 15 item 4: at QoS 1 a burst that finds the broker stopped is not
/// shed. What the MQTT client and the queue cannot hold goes to the
/// output's overflow file; once the broker runs again every message
/// reaches a subscriber, once and in order, and a log output beside it got
/// every line while the broker was stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos_1_burst_into_a_stopped_broker_is_published_whole_in_order() {
    const N: i64 = 20_000;
    const PROBE: i64 = 1_000_000;
    let dir = temp_dir("mqtt-burst");
    let port = free_port();
    // Unbounded per-client queues: the broker must not shed for the
    // subscriber what the agent did not shed.
    let broker = Broker::start_with(
        &dir,
        port,
        "max_queued_messages 0\nmax_inflight_messages 0\n",
    )
    .await;
    let spill = dir.join("spill");
    let log = dir.join("events.jsonl");
    let out = build(json!({
        "bus": {
            "type": "mqtt", "broker": format!("mqtt://127.0.0.1:{port}"), "qos": 1,
            "keep_alive": "600s", "queue": 16, "spill_dir": spill,
        },
        "events": { "type": "log", "path": log, "fsync_interval": "100ms" },
    }));
    let mut rx = subscriber_with(port, "sub-burst", Duration::from_secs(600));
    // Subscribed once a probe gets through.
    let mut probe = PROBE;
    loop {
        out.dispatch(effect("bus", Deliver, probe));
        probe += 1;
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
            break;
        }
        assert!(probe < PROBE + 100, "no probe reached the subscriber");
    }

    broker.signal("STOP").await;
    for seq in 0..N {
        out.dispatch(effect("bus", Deliver, seq));
        out.dispatch(effect("events", Deliver, seq));
    }
    let bus = || out.counters_of("bus").unwrap();
    wait_until_for(Duration::from_secs(300), "every line in the log", || {
        out.counters_of("events").unwrap().sent == N as u64
    })
    .await;
    assert!(
        bus().sent < N as u64,
        "the stopped broker took the whole burst: {:?}",
        bus()
    );
    assert!(
        bus().spilled > 0,
        "the burst went through the overflow: {:?}",
        bus()
    );
    assert_eq!(bus().dropped, 0);
    assert!(spill.join("bus.spill").exists());

    broker.signal("CONT").await;
    let mut got = Vec::with_capacity(N as usize);
    while got.len() < N as usize {
        let (_, _, v) = next(&mut rx).await;
        let seq = v["seq"].as_i64().unwrap();
        if seq < PROBE {
            got.push(seq);
        }
    }
    assert!(
        got.iter().copied().eq(0..N),
        "lost, repeated or reordered: first wrong at {:?}",
        got.iter().zip(0..N).position(|(g, w)| *g != w)
    );
    wait_until("the overflow file drained and removed", || {
        !spill.join("bus.spill").exists()
    })
    .await;
    let c = bus();
    assert_eq!(
        (c.fired, c.dropped, c.failed),
        (N as u64 + (probe - PROBE) as u64, 0, 0)
    );
    broker.kill().await;
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_name_the_field() {
    for (cfg, field) in [
        (
            json!({ "type": "mqtt", "broker": "tcp://x:1883" }),
            "`broker`",
        ),
        (
            json!({ "type": "mqtt", "broker": "mqtt://x:1883", "qos": 3 }),
            "`qos`",
        ),
        (
            json!({ "type": "mqtt", "broker": "mqtt://x", "topic": "a/{nope}" }),
            "`topic`",
        ),
    ] {
        let cfgs = configs(json!({ "bus": cfg }));
        let err = trickle_edge::actions::Outputs::build(&cfgs)
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with(&format!("output `bus`: {field}")), "{err}");
    }
}

/// QoS 0 is fire-and-forget by the user's choice: a full queue sheds the
/// new message (counted), it never spills. QoS 1 spills instead. On a
/// current-thread runtime the outputs' tasks cannot run between these
/// calls, so the queues only fill.
#[tokio::test]
async fn qos_0_sheds_and_qos_1_spills_when_the_queue_is_full() {
    use trickle_edge::actions::Dispatched;
    let dir = temp_dir("mqtt-qos");
    let broker = format!("mqtt://127.0.0.1:{}", free_port()); // nothing listens
    let out = build(json!({
        "q0": { "type": "mqtt", "broker": broker, "qos": 0, "queue": 2, "spill_dir": dir },
        "q1": { "type": "mqtt", "broker": broker, "qos": 1, "queue": 2, "spill_dir": dir },
    }));
    let outcomes = |name: &str| -> Vec<Dispatched> {
        (0..5)
            .map(|seq| out.dispatch(effect(name, Deliver, seq)))
            .collect()
    };
    use Dispatched::{Dropped, Queued, Spilled};
    // QoS 1 keeps a third in memory: the one being sent stays queued
    // until it is handed to the MQTT client.
    assert_eq!(outcomes("q0"), [Queued, Queued, Dropped, Dropped, Dropped]);
    assert_eq!(outcomes("q1"), [Queued, Queued, Queued, Spilled, Spilled]);
    let (q0, q1) = (
        out.counters_of("q0").unwrap(),
        out.counters_of("q1").unwrap(),
    );
    assert_eq!((q0.dropped, q0.spilled), (3, 0));
    assert_eq!((q1.dropped, q1.spilled), (0, 2));
    assert!(!dir.join("q0.spill").exists() && dir.join("q1.spill").exists());
    drop(out);
    std::fs::remove_dir_all(&dir).ok();
}
