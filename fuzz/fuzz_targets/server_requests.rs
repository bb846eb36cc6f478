//! The trickle server's request handling: arbitrary bytes as the HTTP/1
//! request stream of a connection, served by the same connection handler
//! as a real socket (`server::serve_one_connection`) over in-memory duplex
//! pipes. An input holding the line `=====` is cut there into two
//! connections served at once on the same server (a GET waiting while a
//! POST writes, say).
//!
//! Time is tokio's paused clock, which jumps ahead whenever every task
//! waits: a request that waits for a segment, a body that never comes, an
//! interim `100 Continue` every second all take no real time, and a
//! connection still open after 10 minutes of that clock is dropped.
//!
//! Checks: nothing panics, and no input is answered with a 500 (the
//! server's fault; a client's bad request is a 4xx, and 503 is a limit).
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use trickle_edge::trickle::ServerConfig;
use trickle_edge::trickle::server::{ServerState, serve_one_connection};

fn config() -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        allow_create: true,
        channels: vec![
            ("cam".into(), None),
            ("data".into(), Some("application/jsonl".into())),
        ],
        max_segment_bytes: 64 * 1024,
        max_channels: 8,
        max_readers_per_segment: 4,
        interim_interval: Duration::from_secs(1),
        header_read_timeout: Duration::from_secs(5),
        ..ServerConfig::default()
    }
}

/// Writes `input` as one client, reads everything the server answers.
async fn connection(state: std::sync::Arc<ServerState>, input: Vec<u8>) -> Vec<u8> {
    let (client, server) = tokio::io::duplex(16 * 1024);
    let served = tokio::spawn(serve_one_connection(state, server));
    let (mut rd, mut wr) = tokio::io::split(client);
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&input).await;
        let _ = wr.shutdown().await;
        wr
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(600), rd.read_to_end(&mut answer)).await;
    served.abort();
    writer.abort();
    answer
}

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let (a, b) = match data.windows(7).position(|w| w == b"\n=====\n") {
        Some(i) => (data[..i + 1].to_vec(), Some(data[i + 7..].to_vec())),
        None => (data.to_vec(), None),
    };
    let answers = rt.block_on(async move {
        let state = ServerState::new(config()).unwrap();
        let first = tokio::spawn(connection(state.clone(), a));
        let second = b.map(|b| tokio::spawn(connection(state.clone(), b)));
        let mut answers = vec![first.await.unwrap()];
        if let Some(s) = second {
            answers.push(s.await.unwrap());
        }
        answers
    });
    for answer in answers {
        for line in answer.split(|&b| b == b'\n') {
            assert!(
                !line.starts_with(b"HTTP/1.1 500"),
                "answered {}",
                String::from_utf8_lossy(line)
            );
        }
    }
});
