//! Peers that misbehave: the server must stay up and keep answering.

mod support;

use std::time::Duration;

use support::http::{Raw, post, simple};
use support::net::{start_server, test_config};
use support::time::{wait_until, within};
use trickle_edge::trickle::channel::{ReadSlot, WriteSlot};

const CH: &str = "/ai/trickle/bad";

async fn still_serving(addr: std::net::SocketAddr) {
    let (h, _) = within(
        "a good request after abuse",
        simple(addr, "GET", &format!("{CH}/next"), &[]),
    )
    .await;
    assert_eq!(h.status, 200);
}

#[tokio::test]
async fn client_that_stalls_inside_its_headers_is_dropped() {
    let mut cfg = test_config();
    cfg.header_read_timeout = Duration::from_millis(300);
    let s = start_server(cfg, &["bad"]).await;
    let mut c = Raw::connect(s.local_addr()).await;
    c.send(b"GET /ai/trickle/bad/0 HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await;
    // The server gives up on the half-sent request and closes the socket.
    assert!(within("server closes stalled connection", c.closed_by_peer()).await);
    still_serving(s.local_addr()).await;
}

#[tokio::test]
async fn client_that_sends_headers_then_stalls_its_body() {
    let mut cfg = test_config();
    cfg.interim_interval = Duration::from_millis(200);
    let s = start_server(cfg, &["bad"]).await;
    let mut c = Raw::connect(s.local_addr()).await;
    c.start_post(&format!("{CH}/0"), &[]).await;
    // It is treated as a preconnected POST: kept alive, never harmful.
    let h = within("interim keepalive", c.head()).await.unwrap();
    assert_eq!(h.status, 100);
    still_serving(s.local_addr()).await;
    drop(c);
    // Once it goes away, its seq is free for a real publisher. Probe the
    // slot until the server has noticed: `Taken` claims nothing, and a
    // successful claim is released at once (no byte was written).
    let ch = s.state.channel("bad").unwrap();
    wait_until("seq 0 released by the stalled POST", || {
        match ch.for_write(0, false) {
            WriteSlot::Claimed(seg) => {
                seg.detach_writer();
                true
            }
            WriteSlot::Taken { .. } => false,
            WriteSlot::Closed => panic!("channel closed"),
        }
    })
    .await;
    let (h, _) = post(s.local_addr(), &format!("{CH}/0"), b"real", &[]).await;
    assert_eq!(h.status, 200);
}

#[tokio::test]
async fn garbage_request_lines_get_400_or_a_closed_socket() {
    let s = start_server(test_config(), &["bad"]).await;
    let garbage: [&[u8]; 6] = [
        b"\x00\x01\x02\x03\r\n\r\n",
        b"GET\r\n\r\n",
        b"HELLO WORLD\r\n\r\n",
        b"GET /ai/trickle/bad/0 HTTP/9.9\r\n\r\n",
        b"POST /ai/trickle/bad/0 HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
        b"POST /ai/trickle/bad/0 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\nxx\r\n",
    ];
    for g in garbage {
        let mut c = Raw::connect(s.local_addr()).await;
        c.send(g).await;
        // Closed without an answer is fine too.
        if let Some(h) = within("answer to garbage", c.head()).await {
            assert!(
                h.status >= 400,
                "{:?} answered {}",
                String::from_utf8_lossy(g),
                h.status
            );
        }
    }
    let mut huge = b"GET /ai/trickle/bad/0 HTTP/1.1\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 1 << 20));
    let mut c = Raw::connect(s.local_addr()).await;
    let _ = tokio::io::AsyncWriteExt::write_all(&mut c.stream, &huge).await;
    if let Some(h) = within("answer to huge header", c.head()).await {
        assert!(h.status >= 400);
    }
    still_serving(s.local_addr()).await;
}

#[tokio::test]
async fn segment_larger_than_the_limit_is_refused_and_nothing_else_breaks() {
    let mut cfg = test_config();
    cfg.max_segment_bytes = 4096;
    let s = start_server(cfg, &["bad"]).await;
    let (h, _) = post(s.local_addr(), &format!("{CH}/0"), &vec![9u8; 10_000], &[]).await;
    assert_eq!(h.status, 413);
    assert!(s.state.held_bytes() <= 4096);
    let (h, _) = post(s.local_addr(), &format!("{CH}/1"), b"fine", &[]).await;
    assert_eq!(h.status, 200);
    still_serving(s.local_addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_idle_gets() {
    let mut cfg = test_config();
    cfg.max_readers_per_segment = 2000;
    let s = start_server(cfg, &["bad"]).await;
    let mut idle = Vec::new();
    for _ in 0..1000 {
        let mut c = Raw::connect(s.local_addr()).await;
        c.request("GET", &format!("{CH}/0"), &[]).await;
        idle.push(c);
    }
    // With a thousand readers parked on the live edge, the server still answers.
    still_serving(s.local_addr()).await;
    let ch = s.state.channel("bad").unwrap();
    wait_until(
        "all readers registered",
        || matches!(ch.for_read(0), ReadSlot::Found(seg) if seg.reader_count() == 1000),
    )
    .await;
    // One write reaches every one of them.
    let (h, _) = post(s.local_addr(), &format!("{CH}/0"), b"to all", &[]).await;
    assert_eq!(h.status, 200);
    for c in idle.iter_mut() {
        let (h, _) = within("reader answer", c.final_head()).await;
        assert_eq!(h.status, 200);
        assert_eq!(c.body(&h).await, b"to all");
    }
    still_serving(s.local_addr()).await;
}
