//! `trickle-edge run` (and its built-in `worker`) as real processes inside
//! the VM: a small camera, a worker that detects the test pattern's ball,
//! and GPIO outputs on gpio-sim lines.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::net::free_port;
use crate::support::tmp::TempDir;

/// Ports and paths of one agent setup.
pub struct Setup {
    pub config: PathBuf,
    pub events: PathBuf,
    worker_port: u16,
    trickle_port: u16,
    supervisor_port: u16,
    pipeline_dead_after: &'static str,
    /// Holds the scratch directory until the setup is dropped.
    _dir: TempDir,
}

impl Setup {
    pub fn new(dir: TempDir) -> Setup {
        Setup {
            config: dir.join("agent.toml"),
            events: dir.join("events.jsonl"),
            worker_port: free_port(),
            trickle_port: free_port(),
            supervisor_port: free_port(),
            pipeline_dead_after: "6s",
            _dir: dir,
        }
    }

    /// `supervisor.pipeline_dead_after` (6 s unless set).
    pub fn pipeline_dead_after(self, d: &'static str) -> Setup {
        Setup {
            pipeline_dead_after: d,
            ..self
        }
    }

    /// Writes the agent config: the job, a log output `events` that every
    /// rule also fires, and `extra` (outputs and rules in TOML) after it.
    pub fn write_config(&self, extra: &str) {
        let text = format!(
            r#"
[camera]
source = "test"
width = 160
height = 120
fps = 10
[encoder]
bitrate_kbps = 200
[job]
mode = "worker"
worker_url = "http://127.0.0.1:{worker}"
listen = "127.0.0.1:{trickle}"
channel_prefix = "vm"
[supervisor]
listen = "127.0.0.1:{supervisor}"
pipeline_dead_after = "{dead_after}"
[outputs.events]
type = "log"
path = "{events}"
fsync_interval = "100ms"
{extra}
"#,
            worker = self.worker_port,
            trickle = self.trickle_port,
            supervisor = self.supervisor_port,
            dead_after = self.pipeline_dead_after,
            events = self.events.display()
        );
        std::fs::write(&self.config, text).unwrap();
    }

    /// Starts `trickle-edge worker` on this setup's worker port.
    pub fn worker(&self) -> Child {
        Command::new(super::agent_bin())
            .args([
                "worker",
                "--listen",
                &format!("127.0.0.1:{}", self.worker_port),
            ])
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn trickle-edge worker")
    }

    /// Starts `trickle-edge run --config` and collects its stderr.
    pub fn agent(&self) -> Agent {
        let mut child = Command::new(super::agent_bin())
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn trickle-edge run");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        tokio::spawn(async move {
            let mut r = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = r.next_line().await {
                l.lock().unwrap().push(line);
            }
        });
        Agent { child, lines }
    }

    /// Whether rule `rule` has fired (the `events` log names it).
    pub fn fired(&self, rule: &str) -> bool {
        log_mentions(&self.events, rule)
    }
}

pub fn log_mentions(log: &Path, rule: &str) -> bool {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .any(|l| l.contains(&format!("\"rule\":\"{rule}\"")))
}

/// A running `trickle-edge run`.
pub struct Agent {
    pub child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Agent {
    /// Its stderr so far.
    pub fn stderr(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    pub fn logged(&self, text: &str) -> bool {
        self.lines.lock().unwrap().iter().any(|l| l.contains(text))
    }
}

/// Sends `sig` (`-TERM`, `-HUP`, `-KILL`, `-STOP`, `-CONT`) to `child`.
pub fn signal(child: &Child, sig: &str) {
    let pid = child.id().expect("child running").to_string();
    let ok = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill {sig} {pid}");
}
