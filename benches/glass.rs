//! Glass-to-action latency in the demo (`cargo bench --bench glass`): from the
//! moment the camera produces a frame with the ball in the left third to the
//! simulated GPIO line `ball-left` going active, through the whole chain
//! (encode, mux, trickle, the reference worker's decode and detection, the
//! data channel, rules, outputs).
//!
//! The capture side is observed by a pad probe on the camera pipeline's raw
//! frames (after the overlays, before the encoder) that runs the worker's own
//! detector on each frame and notes when the ball's centre enters the left
//! third. Each GPIO activation is matched to the latest such entry before it.
//! The two detectors see different resolutions, so an entry can be off by a
//! frame (33 ms at 30 fps); the numbers say so.
//!
//! `GLASS_WORKER=pytrickle` runs the same chain against a real pytrickle
//! 0.1.6 worker (`tests/interop/pytrickle_worker.py`, from
//! `TRICKLE_EDGE_PYTRICKLE_PYTHON` or `target/pytrickle-venv`) instead of the
//! reference worker.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use tokio::sync::{mpsc, oneshot};
use trickle_edge::agent::demo::demo_config;
use trickle_edge::agent::runtime::{AgentControl, run};
use trickle_edge::config::ResolvedConfig;
use trickle_edge::shutdown::ShutdownTrigger;
use trickle_edge::worker::detect::{DetectorParams, LumaFrame, detect};
use trickle_edge::worker::{WorkerConfig, WorkerHandle};

fn seconds() -> u64 {
    std::env::var("GLASS_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(45)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = std::env::temp_dir().join(format!("trickle-edge-glass-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let worker = Worker::start().await;
        let config = demo_config(&worker.url(), &dir.join("events.jsonl")).unwrap();
        let (width, height) = (config.camera.width as usize, config.camera.height as usize);
        let resolved = ResolvedConfig { path: "bench".into(), preset: None, config, token: None, warnings: vec![] };
        let (stop_tx, stop_rx) = ShutdownTrigger::new();
        let (_reload, reload_rx) = mpsc::channel(1);
        let (ready_tx, ready_rx) = oneshot::channel();
        let agent = tokio::spawn(run(resolved, AgentControl { shutdown: stop_rx, reload: reload_rx, job_start: Default::default() }, Some(ready_tx)));
        let handles = ready_rx.await.expect("agent starts");

        // Entry times of the ball into the left third, as the camera saw them.
        let entries: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let pipeline = loop {
            if let Some(p) = handles.camera.pipeline() {
                break p;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let tap = pipeline.by_name("time").expect("the test source's timeoverlay");
        let pad = tap.static_pad("src").unwrap();
        let (e, was_in) = (entries.clone(), Arc::new(Mutex::new(false)));
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let now = Instant::now();
            let Some(buffer) = info.buffer() else { return gst::PadProbeReturn::Ok };
            let format = pad
                .current_caps()
                .and_then(|c| c.structure(0).and_then(|s| s.get::<String>("format").ok()))
                .unwrap_or_default();
            // Planar and semi-planar YUV start with the full-size luma plane.
            if !matches!(format.as_str(), "I420" | "YV12" | "NV12" | "NV21" | "Y42B" | "Y444") {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| eprintln!("glass: raw frames are {format:?}, not planar YUV: cannot tap them"));
                return gst::PadProbeReturn::Ok;
            }
            let Ok(map) = buffer.map_readable() else { return gst::PadProbeReturn::Ok };
            let stride = width.div_ceil(4) * 4;
            let frame = LumaFrame { width, height, stride, pts_ns: None, data: map[..stride * height].to_vec() };
            let found = detect(&frame, &DetectorParams::default());
            if std::env::var_os("GLASS_DEBUG").is_some() {
                eprintln!("glass: {format} {:?}", found.as_ref().map(|d| d.rect));
            }
            let inside = found.is_some_and(|d| {
                let cx = (d.rect[0] + d.rect[2]) / 2.0;
                let cx = if cx > 1.0 { cx / width as f64 } else { cx };
                cx < 0.333
            });
            let mut w = was_in.lock().unwrap();
            if inside && !*w {
                e.lock().unwrap().push(now);
            }
            *w = inside;
            gst::PadProbeReturn::Ok
        });

        println!("# glass-to-action in the demo topology ({} worker), {} s, 640x360 30 fps test camera, x264, 1 s GOP", worker.name(), seconds());
        tokio::time::sleep(Duration::from_secs(seconds())).await;
        let activations: Vec<Instant> = handles
            .gpio
            .transitions()
            .into_iter()
            .filter(|t| &*t.line == "ball-left" && t.active)
            .map(|t| t.at.into_std())
            .collect();
        let entries = entries.lock().unwrap().clone();
        let mut lat: Vec<f64> = activations
            .iter()
            .filter_map(|a| entries.iter().rev().find(|e| *e < a).map(|e| a.duration_since(*e).as_secs_f64() * 1e3))
            .filter(|ms| *ms < 3000.0)
            .collect();
        // Sorts `lat`, so its ends are the min and max below.
        let p50 = trickle_edge::agent::metrics::sample_quantile(&mut lat, 0.5).unwrap_or(f64::NAN);
        let p99 = trickle_edge::agent::metrics::sample_quantile(&mut lat, 0.99).unwrap_or(f64::NAN);
        if lat.is_empty() {
            println!("no activation matched an entry ({} entries, {} activations)", entries.len(), activations.len());
        } else {
            println!(
                "frame with the ball entering the left third -> GPIO ball-left active: p50 {:.0} ms, p99 {:.0} ms, min {:.0} ms, max {:.0} ms ({} episodes; {} entries seen at the camera)",
                p50,
                p99,
                lat[0],
                lat[lat.len() - 1],
                lat.len(),
                entries.len()
            );
            println!(
                "BENCH glass worker={} p50_ms={p50:.0} p99_ms={p99:.0} episodes={}",
                worker.name(),
                lat.len()
            );
        }
        stop_tx.trigger();
        let _ = agent.await;
        worker.shutdown().await;
        std::fs::remove_dir_all(&dir).ok();
    });
}

/// The worker the agent is pointed at.
enum Worker {
    Reference(Box<WorkerHandle>),
    /// A pytrickle worker process and its URL.
    Pytrickle(std::process::Child, String),
}

impl Worker {
    async fn start() -> Self {
        if std::env::var("GLASS_WORKER").as_deref() != Ok("pytrickle") {
            let w = WorkerHandle::start("127.0.0.1:0".parse().unwrap(), WorkerConfig::default())
                .await
                .unwrap();
            return Worker::Reference(Box::new(w));
        }
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let python = std::env::var_os("TRICKLE_EDGE_PYTRICKLE_PYTHON")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| root.join("target/pytrickle-venv/bin/python"));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = std::process::Command::new(&python)
            .arg(root.join("tests/interop/pytrickle_worker.py"))
            .arg(port.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e} (run ci/pytrickle-venv.sh)", python.display()));
        let stdout = child.stdout.take().unwrap();
        // Waits for READY, then keeps draining so the worker never blocks on a full pipe.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if line.starts_with("READY") {
                    let _ = ready_tx.send(());
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the pytrickle worker listens");
        Worker::Pytrickle(child, format!("http://127.0.0.1:{port}"))
    }

    fn url(&self) -> String {
        match self {
            Worker::Reference(w) => w.url(),
            Worker::Pytrickle(_, url) => url.clone(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Worker::Reference(_) => "reference",
            Worker::Pytrickle(..) => "pytrickle 0.1.6",
        }
    }

    async fn shutdown(self) {
        match self {
            Worker::Reference(w) => w.shutdown().await,
            Worker::Pytrickle(mut child, _) => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
