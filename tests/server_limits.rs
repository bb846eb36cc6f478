//! A client that holds what it never uses must not lock out others: a POST
//! that sends no byte gives its seq up after the POST idle timeout (counted
//! from when it becomes the channel's current write, so a publisher's
//! preconnect is not cut), and one client's connections and one channel's
//! open POSTs are capped. Raw HTTP on loopback; the second client speaks
//! from 127.0.0.2.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::http::{Raw, post, simple};
use support::net::{start_server, test_config};
use support::time::{wait_until, within};

const SECOND_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

#[tokio::test]
async fn a_post_with_headers_only_gives_its_seq_up_after_the_bound() {
    let mut cfg = test_config();
    cfg.post_idle_timeout = Duration::from_millis(500);
    let s = start_server(cfg, &["held"]).await;
    let addr = s.local_addr();
    // Headers announcing a large body, then nothing.
    let mut idle = Raw::connect(addr).await;
    idle.send(b"POST /ai/trickle/held/0 HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n")
        .await;
    let (h, _) = within("the body-less POST is ended", idle.final_head()).await;
    assert_eq!(h.status, 408);
    let why = String::from_utf8_lossy(&idle.body(&h).await).to_string();
    assert!(why.contains("post idle timeout"), "{why}");
    assert_eq!(s.state.stats.posts_timed_out.load(Ordering::Relaxed), 1);
    // A real publisher at `-1` gets the seq the idle POST held, not a 409.
    let (h, body) = post(addr, "/ai/trickle/held/-1", b"real", &[]).await;
    assert_eq!(h.status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(h.num("lp-trickle-seq"), Some(0));
    let (h, _) = post(addr, "/ai/trickle/held/-1", b"next", &[]).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.num("lp-trickle-seq"), Some(1));
    let (h, body) = simple(addr, "GET", "/ai/trickle/held/0", &[]).await;
    assert_eq!((h.status, body.as_slice()), (200, &b"real"[..]));
}

#[tokio::test]
async fn a_body_that_stalls_mid_segment_is_closed_with_what_arrived() {
    let mut cfg = test_config();
    cfg.post_idle_timeout = Duration::from_millis(500);
    let s = start_server(cfg, &["stall"]).await;
    let addr = s.local_addr();
    let mut w = Raw::connect(addr).await;
    w.start_post("/ai/trickle/stall/0", &[]).await;
    w.chunk(b"part").await;
    // A reader already following the segment gets what arrived, then its end.
    let (h, body) = within(
        "the stalled segment ends for readers",
        simple(addr, "GET", "/ai/trickle/stall/0", &[]),
    )
    .await;
    assert_eq!((h.status, body.as_slice()), (200, &b"part"[..]));
    let (h, _) = within("the stalled POST is answered", w.final_head()).await;
    assert_eq!(h.status, 408);
    let (h, _) = post(addr, "/ai/trickle/stall/-1", b"after", &[]).await;
    assert_eq!((h.status, h.num("lp-trickle-seq")), (200, Some(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preconnected_post_waits_behind_a_segment_streaming_longer_than_the_bound() {
    let mut cfg = test_config();
    cfg.post_idle_timeout = Duration::from_millis(1500);
    cfg.interim_interval = Duration::from_millis(200);
    let s = start_server(cfg, &["pre"]).await;
    let addr = s.local_addr();
    let mut streaming = Raw::connect(addr).await;
    streaming.start_post("/ai/trickle/pre/0", &[]).await;
    streaming.chunk(b"0").await;
    let ch = s.state.channel("pre").unwrap();
    wait_until("segment 0 streaming", || ch.next_write() == 1).await;
    // The publisher's preconnect for 1, idle while 0 streams.
    let mut preconnect = Raw::connect(addr).await;
    preconnect.start_post("/ai/trickle/pre/1", &[]).await;
    wait_until("the preconnect waits at the server", || {
        ch.open_posts() == 2
    })
    .await;
    // Segment 0 streams for well over three bounds, a byte every 200 ms.
    for _ in 0..25 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        streaming.chunk(b"0").await;
    }
    streaming.end().await;
    let (h, _) = within("segment 0 answered", streaming.final_head()).await;
    assert_eq!(h.status, 200);
    // The preconnect was not cut: its segment goes out on it.
    preconnect.chunk(b"one").await;
    preconnect.end().await;
    let (h, interim) = within("segment 1 answered", preconnect.final_head()).await;
    assert_eq!((h.status, h.num("lp-trickle-seq")), (200, Some(1)));
    assert!(
        interim > 0,
        "the preconnect was kept alive with 100 Continue"
    );
    assert_eq!(s.state.stats.posts_timed_out.load(Ordering::Relaxed), 0);
    let (h, body) = simple(addr, "GET", "/ai/trickle/pre/1", &[]).await;
    assert_eq!((h.status, body.as_slice()), (200, &b"one"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_holding_connections_hits_its_own_limit_while_another_is_served() {
    let mut cfg = test_config();
    cfg.max_connections = 16;
    cfg.max_connections_per_ip = 4;
    cfg.post_idle_timeout = Duration::from_secs(600);
    let channels: Vec<String> = (0..16).map(|i| format!("a{i}")).collect();
    let mut names: Vec<&str> = channels.iter().map(String::as_str).collect();
    names.push("b");
    let s = start_server(cfg, &names).await;
    let addr = s.local_addr();
    // The first client opens a body-less POST on every channel it can.
    let mut held = Vec::new();
    let mut refusals = Vec::new();
    for name in &channels {
        let mut c = Raw::connect(addr).await;
        c.send(
            format!(
                "POST /ai/trickle/{name}/0 HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        held.push(c);
    }
    wait_until("the first client's extra connections refused", || {
        s.state
            .stats
            .connections_refused_per_ip
            .load(Ordering::Relaxed)
            == 12
    })
    .await;
    for c in held.iter_mut().skip(4) {
        let (h, _) = within("a refused connection's answer", c.final_head()).await;
        refusals.push((
            h.status,
            String::from_utf8_lossy(&c.body(&h).await).to_string(),
        ));
    }
    for (status, why) in &refusals {
        assert_eq!(*status, 429, "{why}");
        assert!(why.contains("limit 4 per client"), "{why}");
    }
    // The second client still publishes and subscribes.
    let mut reader = Raw::connect_from(SECOND_CLIENT, addr).await;
    reader.request("GET", "/ai/trickle/b/0", &[]).await;
    let mut w = Raw::connect_from(SECOND_CLIENT, addr).await;
    w.start_post("/ai/trickle/b/0", &[]).await;
    w.chunk(b"from the second client").await;
    w.end().await;
    let (h, _) = within("the second client's POST", w.final_head()).await;
    assert_eq!(h.status, 200);
    let (h, _) = within("the second client's GET", reader.final_head()).await;
    assert_eq!(h.status, 200);
    assert_eq!(reader.body(&h).await, b"from the second client");
}

#[tokio::test]
async fn a_channel_refuses_open_posts_past_its_limit() {
    let mut cfg = test_config();
    cfg.max_posts_per_channel = 2;
    cfg.post_idle_timeout = Duration::from_secs(600);
    let s = start_server(cfg, &["few", "other"]).await;
    let addr = s.local_addr();
    let mut held = Vec::new();
    for seq in 0..2 {
        let mut c = Raw::connect(addr).await;
        c.start_post(&format!("/ai/trickle/few/{seq}"), &[]).await;
        held.push(c);
    }
    let ch = s.state.channel("few").unwrap();
    wait_until("two POSTs open on the channel", || ch.open_posts() == 2).await;
    let mut third = Raw::connect(addr).await;
    third.start_post("/ai/trickle/few/2", &[]).await;
    let (h, _) = within("the third POST's answer", third.final_head()).await;
    let why = String::from_utf8_lossy(&third.body(&h).await).to_string();
    assert_eq!(h.status, 429, "{why}");
    assert!(
        why.contains("Too many open POSTs on channel few (limit 2)"),
        "{why}"
    );
    // Other channels are not affected.
    let (h, _) = post(addr, "/ai/trickle/other/0", b"x", &[]).await;
    assert_eq!(h.status, 200);
    // The held ones still write.
    held[0].chunk(b"zero").await;
    held[0].end().await;
    let (h, _) = within("the held POST's answer", held[0].final_head()).await;
    assert_eq!(h.status, 200);
}
