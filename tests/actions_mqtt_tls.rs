//! MQTT output over TLS (`mqtts://`) against a real mosquitto the test
//! starts on loopback: one TLS listener (certificates from the test's own
//! CA; `require_certificate true` for mutual TLS) for the output under test,
//! and one plain listener on which the test subscribes, so what arrives is
//! read without the code under test.

mod support;

use std::path::Path;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use support::actions::{build, effect};
use support::net::free_port;
use support::pki::{Pki, make};
use support::time::{wait_until, within};
use support::tmp::temp_dir;
use support::tracing::LogCapture;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tracing::Level;
use trickle_edge::actions::Outputs;
use trickle_edge::rules::OutputAction::Deliver;

/// A mosquitto with a plain listener and a TLS listener, both on 127.0.0.1.
struct Broker {
    _child: Child,
    plain: u16,
    tls: u16,
}

impl Broker {
    async fn start(dir: &Path, pki: &Pki, require_certificate: bool) -> Broker {
        let (plain, tls) = (free_port(), free_port());
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "persistence false\nallow_anonymous true\nlog_dest stderr\n\
                 listener {plain} 127.0.0.1\n\
                 listener {tls} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {require_certificate}\n",
                pki.ca.display(),
                pki.server_cert.display(),
                pki.server_key.display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("mosquitto.log")).unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start mosquitto, the MQTT broker these tests need ({e}): `bash ci/setup.sh` installs it")
            });
        for port in [plain, tls] {
            wait_until("broker listening", || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            })
            .await;
        }
        Broker {
            _child: child,
            plain,
            tls,
        }
    }
}

/// Subscribes to `trickle-edge/#` on the plain listener; yields payloads.
async fn subscriber(port: u16, id: &str) -> mpsc::UnboundedReceiver<Value> {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = AsyncClient::new(opts, 16);
    let (tx, rx) = mpsc::unbounded_channel();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let mut subscribed_tx = Some(subscribed_tx);
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    client
                        .try_subscribe("trickle-edge/#", QoS::AtLeastOnce)
                        .unwrap();
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let v = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                    if tx.send(v).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    within("subscribed", subscribed).await.unwrap();
    rx
}

/// An mqtts output named `name` to the broker's TLS listener.
fn output(name: &str, broker: &Broker, extra: Value) -> Outputs {
    let mut cfg = json!({
        "type": "mqtt", "broker": format!("mqtts://localhost:{}", broker.tls),
        "client_id": name, "qos": 1, "reconnect_min": "100ms", "reconnect_max": "500ms",
    });
    cfg.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let mut table = serde_json::Map::new();
    table.insert(name.into(), cfg);
    build(Value::Object(table))
}

/// Dispatches until the subscriber sees one of ours (the output connects
/// in the background); returns the first seen.
async fn delivers(out: &Outputs, name: &str, rx: &mut mpsc::UnboundedReceiver<Value>) -> Value {
    within("a message over mqtts", async {
        let mut seq = 0;
        loop {
            seq += 1;
            out.dispatch(effect(name, Deliver, seq));
            if let Ok(Some(v)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
                return v;
            }
        }
    })
    .await
}

/// The warnings logged so far that name `output`, as text.
fn warnings_of(capture: &LogCapture, output: &str) -> String {
    capture
        .events()
        .into_iter()
        .filter(|e| e.level == Level::WARN && e.field("output") == Some(output))
        .map(|e| e.text())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until `output` logged a lost connection; returns its warnings.
async fn refused(capture: &LogCapture, out: &Outputs, output: &str) -> String {
    out.dispatch(effect(output, Deliver, 1));
    wait_until("connection refused and logged", || {
        warnings_of(capture, output).contains("MQTT connection lost")
    })
    .await;
    assert_eq!(out.counters_of(output).unwrap().sent, 0, "{output}");
    warnings_of(capture, output)
}

/// One capture for the binary: the output's event loop logs from its own task.
fn capture() -> LogCapture {
    static CAPTURE: std::sync::OnceLock<LogCapture> = std::sync::OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let c = LogCapture::new(Level::WARN);
            tracing::subscriber::set_global_default(c.clone()).unwrap();
            c
        })
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_with_the_ca_delivers_and_without_it_is_refused_naming_tls() {
    let capture = capture();
    let dir = temp_dir("mqtt-tls");
    let pki = make(&dir);
    let broker = Broker::start(&dir, &pki, false).await;
    let mut rx = subscriber(broker.plain, "sub-tls").await;

    let out = output("bus-ca", &broker, json!({ "ca_file": pki.ca }));
    let v = delivers(&out, "bus-ca", &mut rx).await;
    assert_eq!(v["rule"], "rule-1");
    assert_eq!(v["payload"]["label"], "person");
    assert!(warnings_of(&capture, "bus-ca").is_empty());

    // Verified by default: the system roots do not know the test's CA.
    let out = output("bus-no-ca", &broker, json!({}));
    let w = refused(&capture, &out, "bus-no-ca").await;
    assert!(
        w.contains("error=TLS: ") && w.contains("invalid peer certificate: UnknownIssuer"),
        "{w}"
    );
    // A CA file of another CA is no better.
    let out = output("bus-other-ca", &broker, json!({ "ca_file": pki.other_ca }));
    let w = refused(&capture, &out, "bus-other-ca").await;
    assert!(w.contains("TLS") && w.contains("UnknownIssuer"), "{w}");
    // `insecure` connects, and warns at start.
    let out = output("bus-lab", &broker, json!({ "insecure": true }));
    delivers(&out, "bus-lab", &mut rx).await;
    let w = warnings_of(&capture, "bus-lab");
    assert!(w.contains("outputs.bus-lab.insecure = true"), "{w}");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_requires_a_client_certificate_gets_ours_and_refuses_us_without() {
    let capture = capture();
    let dir = temp_dir("mqtt-mtls");
    let pki = make(&dir);
    let broker = Broker::start(&dir, &pki, true).await;
    let mut rx = subscriber(broker.plain, "sub-mtls").await;

    let out = output(
        "bus-mtls",
        &broker,
        json!({
            "ca_file": pki.ca, "client_cert": pki.client_cert, "client_key": pki.client_key,
            "username": "edge", "password": "secret",
        }),
    );
    let v = delivers(&out, "bus-mtls", &mut rx).await;
    assert_eq!(v["rule"], "rule-1");
    // Over TLS to loopback, the password draws no clear-text warning.
    assert!(warnings_of(&capture, "bus-mtls").is_empty());

    let out = output("bus-no-cert", &broker, json!({ "ca_file": pki.ca }));
    // TLS 1.3: the broker's refusal arrives as an alert on the first read.
    let w = refused(&capture, &out, "bus-no-cert").await;
    assert!(
        w.contains("broker=mqtts://localhost:") && w.contains("CertificateRequired"),
        "{w}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
