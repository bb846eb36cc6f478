//! Trickle throughput, CPU per GB, latency and server memory, printed as a
//! table (`cargo bench --bench trickle`). The server runs as its own process
//! (`trickle-edge serve`) so client and server CPU are measured apart. When
//! `TRICKLE_EDGE_INTEROP_PYTHON` points at a venv with Livepeer's SDK, the same
//! transfer is run through it and compared as a ratio, in the same run.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use trickle_edge::trickle::{Publisher, PublisherOptions, Subscriber, SubscriberOptions};

const BASE_PORT: u16 = 29390;

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// (user, system) CPU seconds of a process, all threads.
fn cpu_split(pid: u32) -> (f64, f64) {
    let (user, system) = trickle_edge::procfs::Proc::Pid(pid)
        .cpu_ticks()
        .unwrap_or((0, 0));
    (user as f64 / clk_tck(), system as f64 / clk_tck())
}

fn cpu_seconds(pid: u32) -> f64 {
    let (u, s) = cpu_split(pid);
    u + s
}

fn status_kb(pid: u32, key: &str) -> u64 {
    trickle_edge::procfs::Proc::Pid(pid)
        .status_kib(key)
        .unwrap_or(0)
}

struct ServerProc {
    child: Child,
    port: u16,
}

impl ServerProc {
    fn start(port: u16, channels: &[String]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_trickle-edge"));
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
        for c in channels {
            cmd.args(["--channel", c]);
        }
        let child = cmd
            .env("TRICKLE_EDGE_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start trickle-edge serve");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Self { child, port }
    }

    fn url(&self, ch: &str) -> String {
        format!("http://127.0.0.1:{}/ai/trickle/{ch}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Transfer {
    bytes: u64,
    wall: f64,
    client_cpu: f64,
    client_user: f64,
    server_cpu: f64,
}

/// One publisher, `readers` subscribers, `segments` of `segment_bytes`,
/// written in `chunk`-sized writes; publisher stays 3 segments ahead at most.
async fn transfer(
    server: &ServerProc,
    ch: &str,
    readers: usize,
    segments: usize,
    segment_bytes: usize,
    chunk: usize,
) -> Transfer {
    let url = server.url(ch);
    let window = Arc::new(tokio::sync::Semaphore::new(3 * readers));
    let mut tasks = Vec::new();
    for _ in 0..readers {
        let mut sub = Subscriber::new(
            &url,
            SubscriberOptions {
                start_seq: 0,
                ..Default::default()
            },
        )
        .unwrap();
        let window = window.clone();
        tasks.push(tokio::spawn(async move {
            let mut total = 0u64;
            for _ in 0..segments {
                let mut seg = sub.next_segment().await.unwrap().expect("segment");
                while let Some(c) = seg.chunk().await.unwrap() {
                    total += c.len() as u64;
                }
                window.add_permits(1);
            }
            total
        }));
    }
    let block = Bytes::from((0..chunk).map(|i| i as u8).collect::<Vec<u8>>());
    let me = std::process::id();
    let (cpu0, user0, scpu0, t0) = (
        cpu_seconds(me),
        cpu_split(me).0,
        cpu_seconds(server.pid()),
        Instant::now(),
    );
    let mut publisher = Publisher::connect(
        &url,
        PublisherOptions {
            start_seq: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    for _ in 0..segments {
        window.acquire_many(readers as u32).await.unwrap().forget();
        let mut w = publisher.next_segment().await.unwrap();
        let mut sent = 0;
        while sent < segment_bytes {
            w.write(block.clone()).await.unwrap();
            sent += block.len();
        }
        w.finish().await.unwrap();
    }
    let mut bytes = 0;
    for t in tasks {
        bytes += t.await.unwrap();
    }
    Transfer {
        bytes,
        wall: t0.elapsed().as_secs_f64(),
        client_cpu: cpu_seconds(me) - cpu0,
        client_user: cpu_split(me).0 - user0,
        server_cpu: cpu_seconds(server.pid()) - scpu0,
    }
}

/// Time from a write handed to the publisher to the same bytes reaching a
/// subscriber, for small writes inside live segments.
async fn latency(server: &ServerProc, ch: &str, samples: usize) -> Vec<f64> {
    let url = server.url(ch);
    let mut publisher = Publisher::connect(
        &url,
        PublisherOptions {
            start_seq: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut sub = Subscriber::new(
        &url,
        SubscriberOptions {
            start_seq: 0,
            ..Default::default()
        },
    )
    .unwrap();
    let per_segment = 100;
    let mut out = Vec::with_capacity(samples);
    while out.len() < samples {
        let mut w = publisher.next_segment().await.unwrap();
        w.write(Bytes::from_static(b"start")).await.unwrap();
        let mut seg = sub.next_segment().await.unwrap().expect("segment");
        seg.chunk().await.unwrap();
        for _ in 0..per_segment {
            let t = Instant::now();
            w.write(Bytes::from_static(b"x")).await.unwrap();
            seg.chunk().await.unwrap().expect("the byte just written");
            out.push(t.elapsed().as_secs_f64() * 1e3);
        }
        w.finish().await.unwrap();
        assert!(seg.chunk().await.unwrap().is_none());
    }
    out
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    trickle_edge::agent::metrics::sample_quantile(v, p).unwrap_or(f64::NAN)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mb = |b: u64| b as f64 / 1e6;
    let gb = |b: u64| b as f64 / 1e9;
    let segs = std::env::var("BENCH_SEGMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256usize);
    let seg_bytes = 4 << 20;
    let chunk = 64 << 10;

    println!(
        "# trickle benchmark: {segs} segments of {} MiB, {} KiB writes, loopback",
        seg_bytes >> 20,
        chunk >> 10
    );
    let channels: Vec<String> = ["one", "ten", "lat", "py"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let server = ServerProc::start(BASE_PORT, &channels);
    rt.block_on(async {
        for (name, readers) in [("one", 1usize), ("ten", 10)] {
            let t = transfer(&server, name, readers, segs, seg_bytes, chunk).await;
            println!(
                "1 publisher -> {readers:>2} subscriber(s): {:>8.1} MB/s delivered, client {:.2} CPU s/GB ({:.2} user), server {:.2} CPU s/GB ({} MB in {:.2} s)",
                mb(t.bytes) / t.wall,
                t.client_cpu / gb(t.bytes),
                t.client_user / gb(t.bytes),
                t.server_cpu / gb(t.bytes),
                t.bytes / 1_000_000,
                t.wall
            );
            println!(
                "BENCH trickle_transfer readers={readers} mb_s={:.1} client_cpu_s_gb={:.3} client_user_s_gb={:.3} server_cpu_s_gb={:.3}",
                mb(t.bytes) / t.wall,
                t.client_cpu / gb(t.bytes),
                t.client_user / gb(t.bytes),
                t.server_cpu / gb(t.bytes)
            );
            if readers == 1 {
                OURS.with(|o| *o.borrow_mut() = Some((t.client_cpu / gb(t.bytes), t.client_user / gb(t.bytes), mb(t.bytes) / t.wall)));
            }
        }
        let mut lat = latency(&server, "lat", 2000).await;
        let (p50, p99, max) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99), pct(&mut lat, 1.0));
        println!(
            "publisher write -> subscriber read: p50 {p50:.3} ms, p99 {p99:.3} ms, max {max:.3} ms (2000 samples)"
        );
        println!("BENCH trickle_latency p50_ms={p50:.3} p99_ms={p99:.3} max_ms={max:.3}");
    });
    println!(
        "server RSS after the transfers: {} KiB (peak {} KiB)",
        status_kb(server.pid(), "VmRSS"),
        status_kb(server.pid(), "VmHWM")
    );

    match std::env::var("TRICKLE_EDGE_INTEROP_PYTHON") {
        Ok(py) if !py.is_empty() => {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/py_pubsub.py");
            let out = Command::new(&py)
                .args([
                    script,
                    &server.url("py"),
                    &segs.to_string(),
                    &seg_bytes.to_string(),
                    &chunk.to_string(),
                ])
                .output()
                .expect("run the Python SDK transfer");
            let text = String::from_utf8_lossy(&out.stdout);
            let json: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|_| {
                panic!(
                    "Python SDK transfer printed {text:?}, stderr {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
            let bytes = json["bytes"].as_u64().unwrap();
            let cpu = json["cpu_s"].as_f64().unwrap();
            let wall = json["wall_s"].as_f64().unwrap();
            let user = json["user_s"].as_f64().unwrap_or(0.0);
            let py_cpu_gb = cpu / gb(bytes);
            let py_user_gb = user / gb(bytes);
            println!(
                "Livepeer Python SDK, same transfer: {:>8.1} MB/s, client {:.2} CPU s/GB ({:.2} user)",
                mb(bytes) / wall,
                py_cpu_gb,
                py_user_gb
            );
            OURS.with(|o| {
                if let Some((ours, ours_user, ours_mbs)) = *o.borrow() {
                    println!(
                        "ratio: Python SDK uses {:.1}x the CPU per GB of trickle-edge ({:.1}x in user space); trickle-edge moves bytes {:.1}x faster",
                        py_cpu_gb / ours,
                        py_user_gb / ours_user,
                        ours_mbs / (mb(bytes) / wall)
                    );
                    println!(
                        "BENCH trickle_sdk sdk_mb_s={:.1} sdk_cpu_s_gb={py_cpu_gb:.3} sdk_user_s_gb={py_user_gb:.3} cpu_ratio={:.2} user_cpu_ratio={:.2} speed_ratio={:.2}",
                        mb(bytes) / wall,
                        py_cpu_gb / ours,
                        py_user_gb / ours_user,
                        ours_mbs / (mb(bytes) / wall)
                    );
                }
            });
        }
        _ => println!(
            "(Python SDK comparison skipped: set TRICKLE_EDGE_INTEROP_PYTHON, e.g. $(bash ci/interop-venv.sh))"
        ),
    }
    drop(server);

    // Server memory with 100 channels: idle, then each holding a full ring.
    let names: Vec<String> = (0..100).map(|i| format!("c{i}")).collect();
    let server = ServerProc::start(BASE_PORT + 1, &names);
    std::thread::sleep(Duration::from_millis(200));
    let idle = status_kb(server.pid(), "VmRSS");
    rt.block_on(async {
        let data = Bytes::from(vec![7u8; 100 * 1024]);
        for n in &names {
            let mut p = Publisher::connect(
                &server.url(n),
                PublisherOptions {
                    start_seq: Some(0),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            for _ in 0..5 {
                let mut w = p.next_segment().await.unwrap();
                w.write(data.clone()).await.unwrap();
                w.finish().await.unwrap();
            }
        }
    });
    let full = status_kb(server.pid(), "VmRSS");
    println!(
        "server RSS with 100 channels: idle {idle} KiB; each holding 5 x 100 KiB segments (48.8 MiB of data) {full} KiB"
    );
    println!("BENCH trickle_memory idle_100_channels_kib={idle} full_100_channels_kib={full}");
}

thread_local! {
    static OURS: std::cell::RefCell<Option<(f64, f64, f64)>> = const { std::cell::RefCell::new(None) };
}
