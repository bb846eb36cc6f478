//! A real `mosquitto` on a loopback port, and a subscriber that forwards
//! what it receives, for the MQTT output's tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::time::wait_until;

/// A mosquitto process listening on 127.0.0.1:port only.
pub struct Broker {
    child: Child,
}

impl Broker {
    pub async fn start(dir: &Path, port: u16) -> Broker {
        Broker::start_with(dir, port, "").await
    }

    /// With `extra` lines appended to its config.
    pub async fn start_with(dir: &Path, port: u16, extra: &str) -> Broker {
        let conf: PathBuf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{extra}"),
        )
        .unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start mosquitto, the MQTT broker these tests need ({e}): `bash ci/setup.sh` installs it")
            });
        wait_until("broker listening", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
        Broker { child }
    }

    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }

    /// Sends `signal` (`STOP`, `CONT`) to the broker: stopped, it keeps its
    /// sockets open and reads nothing, as a wedged broker would.
    pub async fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("broker running");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .await
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid}: {status}");
    }
}

/// One message as a subscriber got it.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    /// Set on a retained message delivered at subscribe time.
    pub retain: bool,
    pub payload: Vec<u8>,
}

impl Received {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// A subscriber to `filters` that (re)subscribes on every connection and
/// forwards every publish.
pub fn subscribe(port: u16, id: &str, filters: &[&str]) -> mpsc::UnboundedReceiver<Received> {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut events) = AsyncClient::new(opts, 16);
    let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    for f in &filters {
                        client.try_subscribe(f.clone(), QoS::AtLeastOnce).unwrap();
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let m = Received {
                        topic: p.topic.clone(),
                        retain: p.retain,
                        payload: p.payload.to_vec(),
                    };
                    if tx.send(m).is_err() {
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
