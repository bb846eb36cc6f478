//! Command line: parses arguments and wires library pieces together.
//! Anything with behaviour worth testing lives in the library modules.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use tokio::io::AsyncReadExt;

use crate::sync::LockIgnoringPoison;
use crate::trickle::{
    ClientOptions, Publisher, PublisherOptions, ServerConfig, Subscriber, SubscriberOptions,
    TlsOptions, server,
};

#[derive(Debug, Parser)]
#[command(
    name = "trickle-edge",
    version,
    about = "Camera to Livepeer trickle, AI data back to local actions"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a trickle server (loopback by default, base path /ai/trickle/).
    Serve(ServeArgs),
    /// Publish files or stdin to a trickle channel.
    Publish(PublishArgs),
    /// Print a channel's segments as they arrive.
    Subscribe(SubscribeArgs),
    /// Validate a config and print it resolved (board preset merged, secrets as ***).
    Check(CheckArgs),
    /// Run the reference worker (pytrickle worker API: POST /api/stream/start).
    Worker(WorkerArgs),
    /// List cameras, H.264 encoders (really tested) and GPIO chips; with
    /// `--job`, also ask the configured job's endpoints whether they answer.
    Probe(ProbeArgs),
    /// `job.mode = "livepeer"`: ask the configured orchestrators (up to
    /// five) and list each with its answer time, price, capacity answer or
    /// refusal reason, in the order they answered.
    Orchestrators(OrchestratorsArgs),
    /// The agent, as systemd runs it.
    Run(RunArgs),
    /// Server, reference worker and agent in one process on a test camera.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[arg(long)]
    pub config: PathBuf,
    #[arg(long)]
    pub board: Option<String>,
    #[arg(long)]
    pub boards_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(long)]
    pub duration: Option<u64>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[arg(long)]
    pub config: PathBuf,
    /// Board preset to merge under the file, overriding its `board`.
    #[arg(long)]
    pub board: Option<String>,
    /// Searched for presets before the default directories.
    #[arg(long)]
    pub boards_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct OrchestratorsArgs {
    #[arg(long)]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Also probe the job in `--config`: read-only calls to its worker,
    /// channels or orchestrator (nothing is started).
    #[arg(long, requires = "config")]
    pub job: bool,
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1:2939")]
    pub listen: SocketAddr,
    /// Let clients create channels with `POST <channel>`.
    #[arg(long)]
    pub allow_create: bool,
    /// Create this channel at start (repeatable). `NAME` or `NAME=content/type`.
    #[arg(long = "channel", value_name = "NAME")]
    pub channels: Vec<String>,
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub max_segment_bytes: usize,
    #[arg(long, default_value_t = 1024)]
    pub max_channels: usize,
    #[arg(long, default_value_t = 256)]
    pub max_readers_per_segment: usize,
    /// Require `Authorization: Bearer <token>`; the token is read from this file.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Seconds without a new segment before a channel is closed.
    #[arg(long, default_value_t = 300)]
    pub idle_timeout_secs: u64,
    /// Seconds a POST may hold its seq without a body byte once it is the
    /// channel's current write (or stall between bytes); then it gets 408
    /// and the seq is free again. A preconnected POST waits while the
    /// segment before it streams.
    #[arg(long, default_value_t = 30)]
    pub post_idle_timeout_secs: u64,
    /// Open connections at once, in all.
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,
    /// Open connections from one remote IP at once (more get 429).
    #[arg(long, default_value_t = 1024)]
    pub max_connections_per_ip: usize,
    /// Open POSTs on one channel at once (more get 429); a publisher needs 2.
    #[arg(long, default_value_t = 8)]
    pub max_posts_per_channel: usize,
}

#[derive(Debug, Args, Clone)]
pub struct ConnArgs {
    /// PEM file of CA certificates to trust instead of the system roots.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// SHA-256 (hex) of the server's certificate to accept, whoever signed it.
    #[arg(long)]
    pub pin_sha256: Option<String>,
    /// Accept any certificate (logs a warning).
    #[arg(long)]
    pub insecure: bool,
    /// Bearer token file (or env TRICKLE_EDGE_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

impl ConnArgs {
    fn client_options(&self) -> anyhow::Result<ClientOptions> {
        Ok(ClientOptions {
            tls: TlsOptions {
                ca_file: self.ca_file.clone(),
                pin_sha256: self.pin_sha256.clone(),
                insecure: self.insecure,
            },
            bearer_token: read_token(self.token_file.as_ref())?,
            ..Default::default()
        })
    }
}

fn read_token(file: Option<&PathBuf>) -> anyhow::Result<Option<String>> {
    if let Some(path) = file {
        let t = std::fs::read_to_string(path)
            .with_context(|| format!("reading token file {}", path.display()))?;
        return Ok(Some(t.trim().to_string()));
    }
    Ok(std::env::var("TRICKLE_EDGE_TOKEN")
        .ok()
        .filter(|t| !t.is_empty()))
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Channel URL, e.g. http://127.0.0.1:2939/ai/trickle/demo
    pub url: String,
    /// Files to publish, one segment each, in order. Without files, stdin is read.
    #[arg(long = "file")]
    pub files: Vec<PathBuf>,
    /// Publish a camera instead: `test`, `v4l2:/dev/video0`, `libcamera`,
    /// `rtsp://…` or `file:PATH` (one segment per GOP).
    #[arg(long, conflicts_with = "files")]
    pub source: Option<String>,
    #[arg(long, default_value_t = 1280)]
    pub width: u32,
    #[arg(long, default_value_t = 720)]
    pub height: u32,
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    /// Encoder: auto, x264, openh264, v4l2, mpp, nvv4l2, vaapi, qsv.
    #[arg(long, default_value = "auto")]
    pub encoder: String,
    #[arg(long, default_value_t = 2000)]
    pub bitrate_kbps: u32,
    #[arg(long, default_value_t = 1.0)]
    pub gop_seconds: f64,
    /// Decode and re-encode an H.264 source (`camera.passthrough = false`)
    /// instead of passing its stream through.
    #[arg(long)]
    pub reencode: bool,
    /// With stdin: cut a segment every N bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub segment_bytes: usize,
    #[arg(long, default_value = "video/MP2T")]
    pub content_type: String,
    /// First seq; by default the server's position is asked (`/next`).
    #[arg(long, allow_hyphen_values = true)]
    pub seq: Option<i64>,
    /// Create the channel first (servers started with --allow-create).
    #[arg(long)]
    pub create: bool,
    /// Delete the channel when done.
    #[arg(long)]
    pub close: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(Debug, Args)]
pub struct SubscribeArgs {
    pub url: String,
    /// -1: next segment; -2: current segment; or a seq.
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub from: i64,
    /// Stop after this many segments.
    #[arg(long)]
    pub count: Option<u64>,
    /// Write each segment's body to DIR/<seq> instead of printing it.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Decode payloads and run these rules and outputs (TOML with
    /// `[outputs.NAME]` tables and `[[rules]]`) instead of printing segments.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// With --rules: also follow this events channel.
    #[arg(long, value_name = "URL")]
    pub events: Option<String>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

impl Cli {
    /// The log filter when `TRICKLE_EDGE_LOG` is unset, for [`crate::logging::init`]:
    /// the demo keeps its live view readable with warnings only.
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Command::Demo(_) => crate::logging::DEMO_FILTER,
            _ => crate::logging::DEFAULT_FILTER,
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(a) => serve(a).await,
        Command::Publish(a) => publish(a).await,
        Command::Subscribe(a) => subscribe(a).await,
        Command::Check(a) => {
            let opts = crate::config::LoadOptions {
                board: a.board,
                boards_dir: a.boards_dir,
                host_checks: true,
            };
            // The message is already rustc-shaped; anyhow would prefix another "error:".
            match crate::config::check_with(&a.config, &opts) {
                Ok(text) => {
                    print!("{text}");
                    Ok(())
                }
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(1)
                }
            }
        }
        Command::Worker(a) => {
            crate::worker::run_worker(a.listen, stop_on_signal()?).await?;
            Ok(())
        }
        Command::Probe(a) => probe(a).await,
        Command::Orchestrators(a) => orchestrators(a).await,
        Command::Run(a) => run_agent(a).await,
        Command::Demo(a) => {
            let mut out = std::io::stdout();
            let summary = crate::agent::demo::run_demo(
                a.duration.map(std::time::Duration::from_secs),
                &mut out,
            )
            .await?;
            let failures = summary.failures();
            if failures.is_empty() {
                Ok(())
            } else {
                for f in &failures {
                    eprintln!("demo failed: {f}");
                }
                std::process::exit(1)
            }
        }
    }
}

async fn orchestrators(a: OrchestratorsArgs) -> anyhow::Result<()> {
    let resolved = match crate::config::load(&a.config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let crate::config::JobMode::Livepeer(l) = &resolved.config.job else {
        anyhow::bail!(
            "{}: job.mode is {:?}; `orchestrators` lists the candidates of `mode = \"livepeer\"`",
            a.config.display(),
            resolved.config.job.name()
        );
    };
    let client = crate::agent::plan::client_options(&resolved);
    let network =
        crate::livepeer::network::Network::new(crate::job::livepeer::network_config(l)?, &client)?;
    let list = crate::job::livepeer::survey(&network).await?;
    println!(
        "orchestrators for live-video-to-video/{} (in answer order):",
        l.model_id
    );
    for s in &list {
        println!("  {s}");
    }
    std::io::stdout().flush()?;
    if list.iter().all(|s| s.refusal.is_some()) {
        anyhow::bail!("no orchestrator answered");
    }
    Ok(())
}

async fn probe(a: ProbeArgs) -> anyhow::Result<()> {
    // The config first: a broken one should not wait for the media probe.
    let job = match (&a.config, a.job) {
        (Some(path), true) => match crate::config::load(path) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        },
        _ => None,
    };
    let media = tokio::task::spawn_blocking(crate::media::probe_media).await?;
    let gpio = crate::actions::probe_chips();
    print!("{media}{gpio}");
    if let Some(resolved) = job {
        let client = crate::agent::plan::client_options(&resolved);
        let report = crate::job::probe::probe_job(&resolved.config.job, &client).await?;
        print!("{report}");
        std::io::stdout().flush()?;
        if !report.endpoints.iter().any(|p| p.ok()) {
            anyhow::bail!("no endpoint of the {} job answered", report.mode);
        }
    }
    Ok(())
}

fn parse_channel_arg(arg: &str) -> (String, Option<String>) {
    match arg.split_once('=') {
        Some((name, ct)) => (name.to_string(), Some(ct.to_string())),
        None => (arg.to_string(), None),
    }
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let config = ServerConfig {
        listen: a.listen,
        allow_create: a.allow_create,
        channels: a.channels.iter().map(|c| parse_channel_arg(c)).collect(),
        max_segment_bytes: a.max_segment_bytes,
        max_channels: a.max_channels,
        max_readers_per_segment: a.max_readers_per_segment,
        bearer_token: read_token(a.token_file.as_ref())?,
        idle_timeout: std::time::Duration::from_secs(a.idle_timeout_secs),
        post_idle_timeout: std::time::Duration::from_secs(a.post_idle_timeout_secs),
        max_connections: a.max_connections,
        max_connections_per_ip: a.max_connections_per_ip,
        max_posts_per_channel: a.max_posts_per_channel,
        ..Default::default()
    };
    let running = server::start(config).await?;
    // Handlers first: a SIGTERM sent on seeing the line below must count.
    let mut stop = stop_on_signal()?;
    println!("listening on {}", running.base_url());
    std::io::stdout().flush()?;
    stop.recv().await;
    running.shutdown().await;
    Ok(())
}

async fn publish(a: PublishArgs) -> anyhow::Result<()> {
    let opts = PublisherOptions {
        client: a.conn.client_options()?,
        content_type: a.content_type.clone(),
        start_seq: a.seq,
        ..Default::default()
    };
    if a.create {
        let client = crate::trickle::HttpClient::new(&opts.client)?;
        crate::trickle::publisher::create_channel(&client, &a.url, &a.content_type).await?;
    }
    if let Some(source) = &a.source {
        return publish_camera(&a, source, opts).await;
    }
    let mut publisher = Publisher::connect(&a.url, opts).await?;
    if a.files.is_empty() {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; a.segment_bytes.clamp(1, 64 * 1024 * 1024)];
        loop {
            let mut filled = 0;
            while filled < buf.len() {
                let n = stdin.read(&mut buf[filled..]).await?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            let mut w = publisher.next_segment().await?;
            w.write(Bytes::copy_from_slice(&buf[..filled])).await?;
            let report = w.finish().await?;
            println!("seq={} bytes={}", report.seq, report.bytes);
        }
    } else {
        for file in &a.files {
            let data = tokio::fs::read(file)
                .await
                .with_context(|| format!("reading {}", file.display()))?;
            let mut w = publisher.next_segment().await?;
            for chunk in data.chunks(64 * 1024) {
                w.write(Bytes::copy_from_slice(chunk)).await?;
            }
            let report = w.finish().await?;
            println!(
                "seq={} bytes={} file={}",
                report.seq,
                report.bytes,
                file.display()
            );
        }
    }
    if a.close {
        publisher.close().await?;
    }
    Ok(())
}

fn is_text(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        let ct = ct.to_ascii_lowercase();
        ct.starts_with("text/") || ct.contains("json")
    })
}

async fn subscribe(a: SubscribeArgs) -> anyhow::Result<()> {
    let opts = SubscriberOptions {
        client: a.conn.client_options()?,
        start_seq: a.from,
        ..Default::default()
    };
    if a.from < -2 {
        bail!("--from must be -2, -1 or a seq >= 0");
    }
    if let Some(rules) = &a.rules {
        return subscribe_rules(&a, rules, opts).await;
    }
    let mut sub = Subscriber::new(&a.url, opts)?;
    let mut seen = 0u64;
    while let Some(mut seg) = sub.next_segment().await? {
        let mut body = Vec::new();
        let mut size = 0usize;
        let text = is_text(seg.content_type.as_deref());
        let result = loop {
            match seg.chunk().await {
                Ok(Some(c)) => {
                    size += c.len();
                    if text || a.out_dir.is_some() {
                        body.extend_from_slice(&c);
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        let ct = seg.content_type.as_deref().unwrap_or("-");
        let mut out = std::io::stdout().lock();
        match &result {
            Ok(()) => writeln!(out, "seq={} type={} size={}", seg.seq, ct, size)?,
            Err(e) => writeln!(out, "seq={} type={} size={} error={}", seg.seq, ct, size, e)?,
        }
        if let Some(dir) = &a.out_dir {
            std::fs::create_dir_all(dir)?;
            std::fs::write(dir.join(seg.seq.to_string()), &body)?;
        } else if text {
            out.write_all(&body)?;
            if !body.ends_with(b"\n") {
                writeln!(out)?;
            }
        }
        out.flush()?;
        seen += 1;
        if a.count.is_some_and(|c| seen >= c) {
            break;
        }
    }
    Ok(())
}

/// `[outputs.*]` and `[[rules]]`, as `subscribe --rules` reads them.
/// Fires when SIGINT or SIGTERM arrives. The handlers are installed before
/// this returns, so a signal sent right after is not missed.
fn stop_on_signal() -> anyhow::Result<crate::shutdown::Shutdown> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
    let (stop, shutdown) = crate::shutdown::ShutdownTrigger::new();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        stop.trigger();
    });
    Ok(shutdown)
}

/// How long `subscribe --rules` lets its outputs finish their queues when
/// the stream ends or it is stopped.
const OUTPUT_DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

async fn subscribe_rules(
    a: &SubscribeArgs,
    path: &std::path::Path,
    opts: SubscriberOptions,
) -> anyhow::Result<()> {
    use std::sync::atomic::Ordering::Relaxed;
    let (rules, outputs) = crate::agent::tools::load_rules_file(path)?;
    let mut channels = vec![(a.url.clone(), "data")];
    if let Some(ev) = &a.events {
        channels.push((ev.clone(), "events"));
    }
    let outputs = std::sync::Arc::new(outputs);
    let stats = crate::agent::tools::follow_with_rules(
        &channels,
        opts,
        rules,
        outputs.clone(),
        stop_on_signal()?,
    )
    .await?;
    // Let each output finish its queue (the log its overflow file too)
    // before the counts are told.
    let counters = match std::sync::Arc::try_unwrap(outputs) {
        Ok(outputs) => outputs.counters_after_shutdown(OUTPUT_DRAIN).await,
        Err(shared) => shared.counters(),
    };
    eprintln!(
        "segments={} items={} decode_errors={} effects={}",
        stats.segments.load(Relaxed),
        stats.items.load(Relaxed),
        stats.decode_errors.load(Relaxed),
        stats.effects.load(Relaxed),
    );
    for (name, c) in counters {
        eprintln!("output {name}: {c}");
    }
    Ok(())
}

async fn publish_camera(
    a: &PublishArgs,
    source: &str,
    opts: PublisherOptions,
) -> anyhow::Result<()> {
    use crate::agent::media_path::{CameraPublisherConfig, MediaPathStats};
    use crate::media::{CameraConfig, EncoderConfig, GopQueueLimits};
    use std::sync::Arc;
    use std::sync::atomic::Ordering::Relaxed;

    // Same spelling as `encoder.kind` in the config file.
    let kind: crate::media::EncoderKind =
        serde_json::from_value(serde_json::Value::String(a.encoder.clone())).map_err(|_| {
            anyhow::anyhow!(
                "--encoder {}: use auto, x264, openh264, v4l2, mpp, nvv4l2, vaapi or qsv",
                a.encoder
            )
        })?;
    let stats = Arc::new(MediaPathStats::default());
    let config = CameraPublisherConfig {
        camera: CameraConfig {
            source: source.to_string(),
            width: a.width,
            height: a.height,
            fps: a.fps,
            passthrough: !a.reencode,
        },
        encoder: EncoderConfig {
            kind,
            bitrate_kbps: a.bitrate_kbps,
            gop_seconds: a.gop_seconds,
        },
        queue: GopQueueLimits::default(),
        url: a.url.clone(),
        options: opts,
        stats: stats.clone(),
        close_on_exit: a.close,
        watch: None,
    };
    crate::agent::tools::publish_camera(config, stop_on_signal()?, || {
        eprintln!("first segment published")
    })
    .await?;
    let mut k: Vec<f64> = stats
        .keyframe_to_wire
        .lock_ignoring_poison()
        .iter()
        .copied()
        .collect();
    let mut pct = |p: f64| {
        crate::agent::metrics::sample_quantile(&mut k, p)
            .map(|v| v * 1e3)
            .unwrap_or(f64::NAN)
    };
    eprintln!(
        "segments={} bytes={} failures={} keyframe_to_wire_ms_p50={:.3} keyframe_to_wire_ms_p99={:.3}",
        stats.segments_published.load(Relaxed),
        stats.bytes_published.load(Relaxed),
        stats.segment_failures.load(Relaxed),
        pct(0.5),
        pct(0.99)
    );
    Ok(())
}

async fn run_agent(a: RunArgs) -> anyhow::Result<()> {
    use crate::agent::service::{ConfigSource, run_service, unix_signals};
    let source = ConfigSource {
        path: a.config.clone(),
        options: crate::config::LoadOptions {
            board: a.board.clone(),
            boards_dir: a.boards_dir.clone(),
            host_checks: true,
        },
    };
    let resolved = match crate::config::load_with(&source.path, &source.options) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    for w in &resolved.warnings {
        tracing::warn!("config: {w}");
    }
    let signals = unix_signals()?;
    Ok(run_service(resolved, source, signals, None).await?)
}
