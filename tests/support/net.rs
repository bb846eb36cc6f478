//! Loopback addresses and the trickle server the tests talk to.

use std::net::SocketAddr;

use trickle_edge::trickle::channel::ReadSlot;
use trickle_edge::trickle::server::{self, RunningServer, ServerConfig};

use super::time::wait_until;

/// A loopback address that was free a moment ago (bound, then released):
/// for a process that must be told its address before it starts.
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A loopback port that was free a moment ago; see [`free_addr`].
pub fn free_port() -> u16 {
    free_addr().port()
}

/// A server config on an ephemeral loopback port that creates channels on
/// first use.
pub fn test_config() -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        allow_create: true,
        ..Default::default()
    }
}

/// Starts `config` with `channels` declared up front, each with the type a
/// job start gives it (see [`conventional_type`]): GETs answer the
/// channel's type, not the POST's.
pub async fn start_server(mut config: ServerConfig, channels: &[&str]) -> RunningServer {
    for c in channels {
        config
            .channels
            .push((c.to_string(), Some(conventional_type(c).into())));
    }
    server::start(config).await.expect("server starts")
}

/// The content type of a channel by Livepeer's naming: `<id>-events` and
/// `<id>-control` carry JSON, `<id>-data` (or `data`) JSON lines, anything
/// else MPEG-TS.
pub fn conventional_type(channel: &str) -> &'static str {
    if channel.ends_with("-events") || channel.ends_with("-control") {
        "application/json"
    } else if channel == "data" || channel.ends_with("-data") {
        "application/jsonl"
    } else {
        "video/MP2T"
    }
}

/// Waits until at least `n` GETs are parked on segment `seq` of `channel`
/// at the server (the segment's reader count): the observable "the GET has
/// arrived". Probing goes through `for_read`, which pre-creates a live-edge
/// segment exactly as the awaited GET itself does, so it changes nothing
/// that GET will see.
pub async fn readers_waiting(s: &RunningServer, channel: &str, seq: i64, n: usize) {
    let ch = s
        .state
        .channel(channel)
        .unwrap_or_else(|| panic!("channel {channel} exists at the server"));
    wait_until(
        format!("{n} GET(s) parked at the server on {channel}/{seq}"),
        || {
            matches!(ch.for_read(seq), ReadSlot::Found(seg)
                if seg.seq() == seq && seg.reader_count() >= n)
        },
    )
    .await
}

/// A publisher of JSON Lines segments on `url`, its first at `start_seq`:
/// how a worker writes a data channel.
pub async fn jsonl_publisher(url: &str, start_seq: i64) -> trickle_edge::trickle::Publisher {
    use trickle_edge::trickle::{Publisher, PublisherOptions};
    Publisher::connect(
        url,
        PublisherOptions {
            content_type: "application/jsonl".into(),
            start_seq: Some(start_seq),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

/// Publishes `n` detections, one JSON line each (`n` numbered from 0), as a
/// single segment from seq 0 on the data channel `url`: a burst that lands
/// on a subscriber all at once.
pub async fn publish_detection_burst(url: &str, n: u64) {
    let mut publisher = jsonl_publisher(url, 0).await;
    let mut lines = String::with_capacity(40 * n as usize);
    for i in 0..n {
        lines.push_str(&format!("[{{\"type\":\"detection\",\"n\":{i}}}]\n"));
    }
    let mut w = publisher.next_segment().await.unwrap();
    w.write(bytes::Bytes::from(lines)).await.unwrap();
    w.finish().await.unwrap();
}

/// Waits (up to 300 s) until the file at `log` holds at least `n` lines.
pub async fn wait_for_lines(log: &std::path::Path, n: u64) {
    let logged = || {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .count() as u64
    };
    super::time::wait_until_for(
        std::time::Duration::from_secs(300),
        "every effect of the burst in the log",
        || logged() >= n,
    )
    .await;
}
