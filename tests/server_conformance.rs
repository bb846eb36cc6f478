//! The server against trickle-protocol.md, one test per request row and per
//! server fact, spoken in raw HTTP so the library's client cannot hide a bug.

mod support;

use std::time::Duration;

use support::http::{Raw, post, simple};
use support::net::{readers_waiting, start_server, test_config};
use support::time::within;

const CH: &str = "/ai/trickle/conf";

#[tokio::test]
async fn create_with_expect_content_sets_the_segment_type() {
    let s = start_server(test_config(), &[]).await;
    let (h, _) = simple(
        s.local_addr(),
        "POST",
        "/ai/trickle/made",
        &[("Expect-Content", "application/jsonl")],
    )
    .await;
    assert_eq!(h.status, 200);
    let (h, _) = post(s.local_addr(), "/ai/trickle/made/0", b"{}\n", &[]).await;
    assert_eq!(h.status, 200);
    let (h, body) = simple(s.local_addr(), "GET", "/ai/trickle/made/0", &[]).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-type"), Some("application/jsonl"));
    assert_eq!(body, b"{}\n");
}

#[tokio::test]
async fn create_is_404_when_creation_is_not_allowed() {
    let mut cfg = test_config();
    cfg.allow_create = false;
    let s = start_server(cfg, &["conf"]).await;
    let (h, _) = simple(
        s.local_addr(),
        "POST",
        "/ai/trickle/other",
        &[("Expect-Content", "video/MP2T")],
    )
    .await;
    assert_eq!(h.status, 404);
    // An existing channel is simply confirmed.
    let (h, _) = simple(
        s.local_addr(),
        "POST",
        CH,
        &[("Expect-Content", "video/MP2T")],
    )
    .await;
    assert_eq!(h.status, 200);
}

#[tokio::test]
async fn post_answers_with_the_seq_after_the_body_ends() {
    let s = start_server(test_config(), &["conf"]).await;
    let mut c = Raw::connect(s.local_addr()).await;
    c.start_post(&format!("{CH}/0"), &[("Content-Type", "video/MP2T")])
        .await;
    c.chunk(b"hello ").await;
    c.chunk(b"world").await;
    c.end().await;
    let (h, _) = c.final_head().await;
    assert_eq!(h.status, 200);
    assert_eq!(h.num("lp-trickle-seq"), Some(0));
    let (_, body) = simple(s.local_addr(), "GET", &format!("{CH}/0"), &[]).await;
    assert_eq!(body, b"hello world");
}

#[tokio::test]
async fn post_to_unknown_channel_is_404_with_connection_close() {
    let s = start_server(test_config(), &[]).await;
    let (h, body) = post(s.local_addr(), "/ai/trickle/nope/0", b"x", &[]).await;
    assert_eq!(h.status, 404);
    assert_eq!(String::from_utf8_lossy(&body), "Stream not found");
    assert_eq!(h.header("connection"), Some("close"));
}

#[tokio::test]
async fn preconnected_post_gets_closed_header_when_channel_closes() {
    let mut cfg = test_config();
    cfg.interim_interval = Duration::from_millis(50);
    let s = start_server(cfg, &["conf"]).await;
    let mut c = Raw::connect(s.local_addr()).await;
    c.start_post(&format!("{CH}/0"), &[]).await;
    // An interim answer shows the POST holds its seq at the server.
    let h = within("the POST waiting at the server", c.head())
        .await
        .unwrap();
    assert_eq!(h.status, 100);
    let (h, _) = simple(s.local_addr(), "DELETE", CH, &[]).await;
    assert_eq!(h.status, 200);
    let (h, _) = within("POST answer", c.final_head()).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.header("lp-trickle-closed"), Some("terminated"));
}

#[tokio::test]
async fn post_minus_one_writes_at_the_next_position() {
    let s = start_server(test_config(), &["conf"]).await;
    for expect in 0..3 {
        let (h, _) = post(s.local_addr(), &format!("{CH}/-1"), b"data", &[]).await;
        assert_eq!(h.status, 200);
        assert_eq!(h.num("lp-trickle-seq"), Some(expect));
    }
}

#[tokio::test]
async fn reset_header_wakes_readers_of_older_segments() {
    let s = start_server(test_config(), &["conf"]).await;
    post(s.local_addr(), &format!("{CH}/0"), b"a", &[]).await;
    // A reader waits at the live edge (seq 1, pre-created) for a publisher
    // that has died; the restarted publisher resumes at 7 with a reset.
    let mut reader = Raw::connect(s.local_addr()).await;
    reader.request("GET", &format!("{CH}/1"), &[]).await;
    readers_waiting(&s, "conf", 1, 1).await;
    let (h, _) = post(
        s.local_addr(),
        &format!("{CH}/7"),
        b"fresh",
        &[("Lp-Trickle-Reset", "1")],
    )
    .await;
    assert_eq!(h.status, 200);
    let (h, _) = within("woken reader", reader.final_head()).await;
    assert_eq!(h.status, 470);
    assert_eq!(h.num("lp-trickle-latest"), Some(8));
}

#[tokio::test]
async fn two_readers_get_bytes_before_the_segment_ends() {
    let s = start_server(test_config(), &["conf"]).await;
    let mut r1 = Raw::connect(s.local_addr()).await;
    let mut r2 = Raw::connect(s.local_addr()).await;
    r1.request("GET", &format!("{CH}/0"), &[]).await;
    r2.request("GET", &format!("{CH}/0"), &[]).await;
    let mut w = Raw::connect(s.local_addr()).await;
    w.start_post(&format!("{CH}/0"), &[("Content-Type", "video/MP2T")])
        .await;
    w.chunk(b"first").await;
    for r in [&mut r1, &mut r2] {
        let (h, _) = within("reader head", r.final_head()).await;
        assert_eq!(h.status, 200);
        assert_eq!(h.num("lp-trickle-seq"), Some(0));
        assert_eq!(h.header("content-type"), Some("video/MP2T"));
        // The segment is still open: these bytes arrive before it ends.
        assert_eq!(
            within("first bytes", r.body_chunk()).await.unwrap(),
            b"first"
        );
    }
    w.chunk(b"second").await;
    w.end().await;
    for r in [&mut r1, &mut r2] {
        assert_eq!(
            within("more bytes", r.body_chunk()).await.unwrap(),
            b"second"
        );
        assert_eq!(within("end", r.body_chunk()).await, None);
    }
    let (h, _) = w.final_head().await;
    assert_eq!(h.status, 200);
}

#[tokio::test]
async fn get_minus_one_waits_for_the_next_segment_and_minus_two_is_current() {
    let s = start_server(test_config(), &["conf"]).await;
    post(s.local_addr(), &format!("{CH}/0"), b"zero", &[]).await;
    let (h, body) = simple(s.local_addr(), "GET", &format!("{CH}/-2"), &[]).await;
    assert_eq!((h.status, h.num("lp-trickle-seq")), (200, Some(0)));
    assert_eq!(body, b"zero");
    let mut next = Raw::connect(s.local_addr()).await;
    next.request("GET", &format!("{CH}/-1"), &[]).await;
    // -1 is the next write position: seq 1.
    readers_waiting(&s, "conf", 1, 1).await;
    post(s.local_addr(), &format!("{CH}/1"), b"one", &[]).await;
    let (h, _) = within("-1 answer", next.final_head()).await;
    assert_eq!((h.status, h.num("lp-trickle-seq")), (200, Some(1)));
    assert_eq!(next.body(&h).await, b"one");
}

#[tokio::test]
async fn reader_ten_segments_behind_gets_470_and_recovers() {
    let s = start_server(test_config(), &["conf"]).await;
    for seq in 0..12 {
        post(
            s.local_addr(),
            &format!("{CH}/{seq}"),
            format!("s{seq}").as_bytes(),
            &[],
        )
        .await;
    }
    let (h, body) = simple(s.local_addr(), "GET", &format!("{CH}/2"), &[]).await;
    assert_eq!(h.status, 470);
    assert_eq!(h.num("lp-trickle-seq"), Some(2));
    assert_eq!(h.num("lp-trickle-latest"), Some(12));
    assert_eq!(body, b"Entry not found");
    // Recovering: the newest held segments are readable, and the latest is
    // pre-created for the reader.
    let (h, body) = simple(s.local_addr(), "GET", &format!("{CH}/11"), &[]).await;
    assert_eq!((h.status, body.as_slice()), (200, b"s11".as_slice()));
    let mut live = Raw::connect(s.local_addr()).await;
    live.request("GET", &format!("{CH}/12"), &[]).await;
    post(s.local_addr(), &format!("{CH}/12"), b"s12", &[]).await;
    let (h, _) = within("live edge", live.final_head()).await;
    assert_eq!(h.status, 200);
    assert_eq!(live.body(&h).await, b"s12");
}

#[tokio::test]
async fn ring_holds_exactly_five_segments() {
    let s = start_server(test_config(), &["conf"]).await;
    for seq in 0..9 {
        post(s.local_addr(), &format!("{CH}/{seq}"), b"x", &[]).await;
    }
    for seq in 0..9 {
        let (h, _) = simple(s.local_addr(), "GET", &format!("{CH}/{seq}"), &[]).await;
        let expect = if seq >= 4 { 200 } else { 470 };
        assert_eq!(h.status, expect, "seq {seq}");
    }
}

#[tokio::test]
async fn get_ahead_of_the_live_edge_is_470() {
    let s = start_server(test_config(), &["conf"]).await;
    post(s.local_addr(), &format!("{CH}/0"), b"x", &[]).await;
    let (h, _) = simple(s.local_addr(), "GET", &format!("{CH}/5"), &[]).await;
    assert_eq!(h.status, 470);
    assert_eq!(h.num("lp-trickle-latest"), Some(1));
    // Early, not left behind by a restart: no hint to go back.
    assert_eq!(h.header("lp-trickle-reset"), None);
}

#[tokio::test]
async fn get_on_unknown_channel_is_404() {
    let s = start_server(test_config(), &[]).await;
    let (h, _) = simple(s.local_addr(), "GET", "/ai/trickle/none/0", &[]).await;
    assert_eq!(h.status, 404);
}

#[tokio::test]
async fn channel_deleted_while_a_get_waits_ends_the_stream() {
    let s = start_server(test_config(), &["conf"]).await;
    let mut r = Raw::connect(s.local_addr()).await;
    r.request("GET", &format!("{CH}/0"), &[]).await;
    readers_waiting(&s, "conf", 0, 1).await;
    let (h, _) = simple(s.local_addr(), "DELETE", CH, &[]).await;
    assert_eq!(h.status, 200);
    let (h, _) = within("woken GET", r.final_head()).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.header("lp-trickle-closed"), Some("terminated"));
    // Once deleted, the channel is unknown.
    let (h, _) = simple(s.local_addr(), "GET", &format!("{CH}/0"), &[]).await;
    assert_eq!(h.status, 404);
}

#[tokio::test]
async fn next_reports_the_next_write_seq() {
    let s = start_server(test_config(), &["conf"]).await;
    let (h, body) = simple(s.local_addr(), "GET", &format!("{CH}/next"), &[]).await;
    assert_eq!(
        (h.status, h.num("lp-trickle-latest"), body.as_slice()),
        (200, Some(0), b"0".as_slice())
    );
    post(s.local_addr(), &format!("{CH}/0"), b"x", &[]).await;
    post(s.local_addr(), &format!("{CH}/1"), b"x", &[]).await;
    let (h, body) = simple(s.local_addr(), "GET", &format!("{CH}/next"), &[]).await;
    assert_eq!(
        (h.num("lp-trickle-latest"), body.as_slice()),
        (Some(2), b"2".as_slice())
    );
    let (h, _) = simple(s.local_addr(), "GET", "/ai/trickle/none/next", &[]).await;
    assert_eq!(h.status, 404);
}

#[tokio::test]
async fn delete_segment_closes_it_early_and_wakes_readers() {
    let s = start_server(test_config(), &["conf"]).await;
    let mut w = Raw::connect(s.local_addr()).await;
    w.start_post(&format!("{CH}/0"), &[]).await;
    w.chunk(b"partial").await;
    let mut r = Raw::connect(s.local_addr()).await;
    r.request("GET", &format!("{CH}/0"), &[]).await;
    let (h, _) = within("reader head", r.final_head()).await;
    assert_eq!(h.status, 200);
    assert_eq!(r.body_chunk().await.unwrap(), b"partial");
    let (h, _) = simple(s.local_addr(), "DELETE", &format!("{CH}/0"), &[]).await;
    assert_eq!(h.status, 200);
    assert_eq!(within("reader end", r.body_chunk()).await, None);
    let (h, body) = simple(s.local_addr(), "DELETE", &format!("{CH}/3"), &[]).await;
    assert_eq!(h.status, 400);
    assert_eq!(body, b"Nonexistent segment");
}

#[tokio::test]
async fn delete_channel_and_unknown_channel() {
    let s = start_server(test_config(), &["conf"]).await;
    let (h, _) = simple(s.local_addr(), "DELETE", CH, &[]).await;
    assert_eq!(h.status, 200);
    let (h, _) = simple(s.local_addr(), "DELETE", CH, &[]).await;
    assert_eq!(h.status, 400);
}

#[tokio::test]
async fn preconnected_get_waits_until_the_segment_is_written() {
    let s = start_server(test_config(), &["conf"]).await;
    let mut r = Raw::connect(s.local_addr()).await;
    r.request("GET", &format!("{CH}/0"), &[]).await;
    readers_waiting(&s, "conf", 0, 1).await;
    // Nothing may arrive while the segment does not exist yet.
    let early = tokio::time::timeout(Duration::from_millis(300), r.head()).await;
    assert!(early.is_err(), "GET answered before anything was written");
    post(s.local_addr(), &format!("{CH}/0"), b"now", &[]).await;
    let (h, _) = within("GET answer", r.final_head()).await;
    assert_eq!(h.status, 200);
    assert_eq!(r.body(&h).await, b"now");
}

#[tokio::test]
async fn idle_post_receives_interim_100_continue() {
    let mut cfg = test_config();
    cfg.interim_interval = Duration::from_millis(200);
    let s = start_server(cfg, &["conf"]).await;
    let mut w = Raw::connect(s.local_addr()).await;
    w.start_post(&format!("{CH}/0"), &[]).await;
    for _ in 0..2 {
        let h = within("interim", w.head()).await.unwrap();
        assert_eq!(h.status, 100);
    }
    w.chunk(b"late").await;
    w.end().await;
    let (h, _) = w.final_head().await;
    assert_eq!(h.status, 200);
    assert_eq!(h.num("lp-trickle-seq"), Some(0));
    assert!(
        s.state
            .stats
            .interim_sent
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
}

#[tokio::test]
async fn idle_channels_are_swept() {
    let mut cfg = test_config();
    cfg.idle_timeout = Duration::from_millis(300);
    cfg.sweep_interval = Duration::from_millis(100);
    let s = start_server(cfg, &["conf"]).await;
    let mut r = Raw::connect(s.local_addr()).await;
    r.request("GET", &format!("{CH}/0"), &[]).await;
    let (h, _) = within("sweep", r.final_head()).await;
    assert_eq!(h.header("lp-trickle-closed"), Some("terminated"));
    let (h, _) = simple(s.local_addr(), "GET", &format!("{CH}/next"), &[]).await;
    assert_eq!(h.status, 404);
}

#[tokio::test]
async fn empty_post_still_advances_the_write_position() {
    let s = start_server(test_config(), &["conf"]).await;
    let (h, _) = post(s.local_addr(), &format!("{CH}/0"), b"", &[]).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.header("connection"), Some("close"));
    let (_, body) = simple(s.local_addr(), "GET", &format!("{CH}/next"), &[]).await;
    assert_eq!(body, b"1");
}

#[tokio::test]
async fn segment_that_ended_empty_answers_200_with_an_empty_body() {
    let s = start_server(test_config(), &["conf"]).await;
    post(s.local_addr(), &format!("{CH}/0"), b"", &[]).await;
    let (h, body) = simple(s.local_addr(), "GET", &format!("{CH}/0"), &[]).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.num("lp-trickle-seq"), Some(0));
    assert_eq!(h.header("lp-trickle-closed"), None);
    assert!(body.is_empty(), "{body:?}");
    // A reader already waiting when the POST ends empty gets the same.
    let mut r = Raw::connect(s.local_addr()).await;
    r.request("GET", &format!("{CH}/1"), &[]).await;
    readers_waiting(&s, "conf", 1, 1).await;
    post(s.local_addr(), &format!("{CH}/1"), b"", &[]).await;
    let (h, _) = within("the waiting reader's answer", r.final_head()).await;
    assert_eq!((h.status, h.num("lp-trickle-seq")), (200, Some(1)));
    assert!(r.body(&h).await.is_empty());
}

#[tokio::test]
async fn post_to_a_held_seq_is_a_restart_and_keeps_the_new_bytes() {
    let s = start_server(test_config(), &["conf"]).await;
    for seq in 0..3 {
        post(s.local_addr(), &format!("{CH}/{seq}"), b"old", &[]).await;
    }
    // A publisher restarted at 0 without Lp-Trickle-Reset, as pytrickle and
    // Go's publisher do.
    let (h, _) = post(s.local_addr(), &format!("{CH}/0"), b"new-0", &[]).await;
    assert_eq!((h.status, h.num("lp-trickle-seq")), (200, Some(0)));
    let (_, body) = simple(s.local_addr(), "GET", &format!("{CH}/0"), &[]).await;
    assert_eq!(body, b"new-0");
    let (_, next) = simple(s.local_addr(), "GET", &format!("{CH}/next"), &[]).await;
    assert_eq!(next, b"1", "the write position moved back");
    let (h, _) = post(s.local_addr(), &format!("{CH}/1"), b"new-1", &[]).await;
    assert_eq!((h.status, h.num("lp-trickle-seq")), (200, Some(1)));
    let (_, body) = simple(s.local_addr(), "GET", &format!("{CH}/1"), &[]).await;
    assert_eq!(body, b"new-1");
}

#[tokio::test]
async fn post_to_an_evicted_older_seq_moves_the_position_back() {
    let s = start_server(test_config(), &["conf"]).await;
    for seq in 0..12 {
        post(s.local_addr(), &format!("{CH}/{seq}"), b"old", &[]).await;
    }
    let (h, _) = post(s.local_addr(), &format!("{CH}/0"), b"new-0", &[]).await;
    assert_eq!((h.status, h.num("lp-trickle-seq")), (200, Some(0)));
    let (_, next) = simple(s.local_addr(), "GET", &format!("{CH}/next"), &[]).await;
    assert_eq!(next, b"1");
    let (h, body) = simple(s.local_addr(), "GET", &format!("{CH}/-2"), &[]).await;
    assert_eq!((h.status, h.num("lp-trickle-seq")), (200, Some(0)));
    assert_eq!(body, b"new-0");
}

#[tokio::test]
async fn reader_parked_above_a_restarted_publisher_is_sent_back_to_it() {
    let s = start_server(test_config(), &["conf"]).await;
    for seq in 0..41 {
        post(s.local_addr(), &format!("{CH}/{seq}"), b"old", &[]).await;
    }
    let mut parked = Raw::connect(s.local_addr()).await;
    parked.request("GET", &format!("{CH}/41"), &[]).await;
    readers_waiting(&s, "conf", 41, 1).await;
    // The publisher restarts at 0; its first POST is open, no byte sent yet.
    let mut w = Raw::connect(s.local_addr()).await;
    w.start_post(&format!("{CH}/0"), &[("Content-Type", "video/MP2T")])
        .await;
    let (h, _) = within("the parked reader woken", parked.final_head()).await;
    assert_eq!(h.status, 470);
    assert_eq!(h.num("lp-trickle-seq"), Some(41));
    assert_eq!(h.num("lp-trickle-latest"), Some(0));
    assert_eq!(h.header("lp-trickle-reset"), Some("1"));
    // A reader arriving late at the old edge is told the same.
    let (h, _) = simple(s.local_addr(), "GET", &format!("{CH}/41"), &[]).await;
    assert_eq!(h.status, 470);
    assert_eq!(h.header("lp-trickle-reset"), Some("1"));
    // Going back to `latest` gets the new run.
    let mut r = Raw::connect(s.local_addr()).await;
    r.request("GET", &format!("{CH}/0"), &[]).await;
    w.chunk(b"new-0").await;
    w.end().await;
    let (h, _) = within("the new run's seq 0", r.final_head()).await;
    assert_eq!((h.status, h.num("lp-trickle-seq")), (200, Some(0)));
    assert_eq!(r.body(&h).await, b"new-0");
    assert_eq!(w.final_head().await.0.status, 200);
}

#[tokio::test]
async fn retried_post_of_a_seq_that_got_no_byte_is_not_a_restart() {
    let s = start_server(test_config(), &["conf"]).await;
    post(s.local_addr(), &format!("{CH}/0"), b"zero", &[]).await;
    // POST 1 ends empty (the position moves on to 2), a reader waits at 2,
    // and the publisher posts 1 again.
    post(s.local_addr(), &format!("{CH}/1"), b"", &[]).await;
    let mut r = Raw::connect(s.local_addr()).await;
    r.request("GET", &format!("{CH}/2"), &[]).await;
    readers_waiting(&s, "conf", 2, 1).await;
    let (h, _) = post(s.local_addr(), &format!("{CH}/1"), b"one", &[]).await;
    assert_eq!((h.status, h.num("lp-trickle-seq")), (200, Some(1)));
    let (_, next) = simple(s.local_addr(), "GET", &format!("{CH}/next"), &[]).await;
    assert_eq!(next, b"2", "a retry does not move the position back");
    let (_, body) = simple(s.local_addr(), "GET", &format!("{CH}/0"), &[]).await;
    assert_eq!(body, b"zero", "a retry closes nothing");
    // The reader at 2 was not woken: it gets seq 2 when it is written.
    post(s.local_addr(), &format!("{CH}/2"), b"two", &[]).await;
    let (h, _) = within("reader at 2", r.final_head()).await;
    assert_eq!((h.status, h.num("lp-trickle-seq")), (200, Some(2)));
    assert_eq!(r.body(&h).await, b"two");
}

#[tokio::test]
async fn get_answers_the_channel_type_not_the_posts() {
    let s = start_server(test_config(), &[]).await;
    let (h, _) = simple(
        s.local_addr(),
        "POST",
        "/ai/trickle/events",
        &[("Expect-Content", "application/json")],
    )
    .await;
    assert_eq!(h.status, 200);
    // Go's publisher names video/MP2T on every channel.
    let mp2t = [("Content-Type", "video/MP2T")];
    post(s.local_addr(), "/ai/trickle/events/0", b"{}", &mp2t).await;
    let (h, _) = simple(s.local_addr(), "GET", "/ai/trickle/events/0", &[]).await;
    assert_eq!(h.header("content-type"), Some("application/json"));
    // A channel made without a type answers an empty one, as Livepeer's does.
    simple(s.local_addr(), "POST", "/ai/trickle/untyped", &[]).await;
    post(s.local_addr(), "/ai/trickle/untyped/0", b"{}", &mp2t).await;
    let (h, _) = simple(s.local_addr(), "GET", "/ai/trickle/untyped/0", &[]).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-type"), Some(""));
}

#[tokio::test]
async fn oversize_segment_gets_413_and_is_closed_for_readers() {
    let mut cfg = test_config();
    cfg.max_segment_bytes = 1000;
    let s = start_server(cfg, &["conf"]).await;
    let mut r = Raw::connect(s.local_addr()).await;
    r.request("GET", &format!("{CH}/0"), &[]).await;
    let mut w = Raw::connect(s.local_addr()).await;
    w.start_post(&format!("{CH}/0"), &[]).await;
    w.chunk(&[7u8; 600]).await;
    w.chunk(&[7u8; 600]).await;
    let (h, _) = within("413", w.final_head()).await;
    assert_eq!(h.status, 413);
    let (h, _) = within("reader head", r.final_head()).await;
    assert_eq!(h.status, 200);
    let body = within("reader body", r.body(&h)).await;
    assert_eq!(
        body.len(),
        600,
        "readers get what was accepted, then the end"
    );
    // The server is fine afterwards.
    let (h, _) = post(s.local_addr(), &format!("{CH}/1"), b"ok", &[]).await;
    assert_eq!(h.status, 200);
}

#[tokio::test]
async fn reader_and_channel_limits() {
    let mut cfg = test_config();
    cfg.max_readers_per_segment = 2;
    cfg.max_channels = 2;
    let s = start_server(cfg, &["conf"]).await;
    let mut a = Raw::connect(s.local_addr()).await;
    let mut b = Raw::connect(s.local_addr()).await;
    a.request("GET", &format!("{CH}/0"), &[]).await;
    b.request("GET", &format!("{CH}/0"), &[]).await;
    readers_waiting(&s, "conf", 0, 2).await;
    let (h, _) = simple(s.local_addr(), "GET", &format!("{CH}/0"), &[]).await;
    assert_eq!(h.status, 503);
    let (h, _) = simple(s.local_addr(), "POST", "/ai/trickle/second", &[]).await;
    assert_eq!(h.status, 200);
    let (h, _) = simple(s.local_addr(), "POST", "/ai/trickle/third", &[]).await;
    assert_eq!(h.status, 503);
}

#[tokio::test]
async fn bearer_token_is_required_when_configured() {
    let mut cfg = test_config();
    cfg.bearer_token = Some("s3cret".into());
    let s = start_server(cfg, &["conf"]).await;
    let (h, _) = simple(s.local_addr(), "GET", &format!("{CH}/next"), &[]).await;
    assert_eq!(h.status, 401);
    let (h, _) = simple(
        s.local_addr(),
        "GET",
        &format!("{CH}/next"),
        &[("Authorization", "Bearer wrong!")],
    )
    .await;
    assert_eq!(h.status, 401);
    let (h, _) = simple(
        s.local_addr(),
        "GET",
        &format!("{CH}/next"),
        &[("Authorization", "Bearer s3cret")],
    )
    .await;
    assert_eq!(h.status, 200);
}

#[tokio::test]
async fn bad_paths_and_methods() {
    let s = start_server(test_config(), &["conf"]).await;
    let (h, _) = simple(s.local_addr(), "GET", &format!("{CH}/abc"), &[]).await;
    assert_eq!(h.status, 400);
    let (h, _) = simple(s.local_addr(), "GET", "/elsewhere", &[]).await;
    assert_eq!(h.status, 404);
    let (h, _) = simple(s.local_addr(), "PUT", &format!("{CH}/0"), &[]).await;
    assert_eq!(h.status, 405);
    // Issue 15: `.` and `..` were accepted as channel names (test_config
    // allows creating channels on first use).
    for name in [".", ".."] {
        let (h, _) = simple(s.local_addr(), "POST", &format!("/ai/trickle/{name}"), &[]).await;
        assert_eq!(h.status, 400, "channel {name:?}");
        let (h, _) = simple(s.local_addr(), "GET", &format!("/ai/trickle/{name}/0"), &[]).await;
        assert_eq!(h.status, 400, "channel {name:?}");
    }
    assert!(s.state.create_channel("..", None).is_err());
}

#[tokio::test]
async fn memory_is_bounded_by_the_ring() {
    let mut cfg = test_config();
    cfg.max_segment_bytes = 64 * 1024;
    let s = start_server(cfg, &["conf"]).await;
    let chunk = vec![1u8; 60 * 1024];
    for seq in 0..30 {
        post(s.local_addr(), &format!("{CH}/{seq}"), &chunk, &[]).await;
    }
    let held = s.state.held_bytes();
    assert!(held <= 5 * 64 * 1024, "held {held} bytes");
    assert_eq!(held, 5 * chunk.len());
}

/// Issue 15: a malformed chunked body was answered 500, as if the server
/// had failed. It is the client's: 400, naming the problem.
#[tokio::test]
async fn a_malformed_chunked_body_is_400_not_500() {
    let s = start_server(test_config(), &["conf"]).await;
    for bad in [&b"zz\r\nhello\r\n"[..], &b"5\r\nhelloXX"[..]] {
        let mut c = Raw::connect(s.local_addr()).await;
        c.start_post(&format!("{CH}/-1"), &[]).await;
        c.send(bad).await;
        let (h, _) = within("the answer", c.final_head()).await;
        assert_eq!(h.status, 400, "{:?}", String::from_utf8_lossy(bad));
    }
    // The channel still takes a good segment.
    let (h, _) = post(s.local_addr(), &format!("{CH}/-1"), b"fine", &[]).await;
    assert_eq!(h.status, 200);
}

/// Issue 15: one POST at `9223372036854775806` made `seq + 1` wrap, after
/// which every publish failed with `Invalid idx` and subscribers asked for
/// a negative seq forever. Seqs beyond `MAX_SEQ` are refused; the channel
/// keeps working.
#[tokio::test]
async fn a_seq_near_i64_max_is_refused_and_the_channel_keeps_working() {
    let s = start_server(test_config(), &["conf"]).await;
    for seq in [
        i64::MAX - 1,
        i64::MAX,
        trickle_edge::trickle::headers::MAX_SEQ + 1,
    ] {
        let (h, _) = post(s.local_addr(), &format!("{CH}/{seq}"), b"x", &[]).await;
        assert_eq!(h.status, 400, "POST {seq}");
        let (h, _) = simple(s.local_addr(), "GET", &format!("{CH}/{seq}"), &[]).await;
        assert_eq!(h.status, 400, "GET {seq}");
    }
    let (h, _) = post(s.local_addr(), &format!("{CH}/-1"), b"fine", &[]).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.num("lp-trickle-seq"), Some(0));
    let (h, body) = simple(s.local_addr(), "GET", &format!("{CH}/next"), &[]).await;
    assert_eq!(h.status, 200);
    assert_eq!(String::from_utf8_lossy(&body).trim(), "1");
}

/// A late duplicate of an older seq (a client retrying a segment whose bytes
/// did arrive) is not a restart: 409, the position stays, the ring keeps the
/// original. Seen from Livepeer's Python SDK on a loaded machine, where
/// treating it as a restart sent our subscriber back two segments.
#[tokio::test]
async fn a_late_duplicate_of_an_older_seq_is_409_not_a_restart() {
    let s = start_server(test_config(), &["conf"]).await;
    for seq in 0..5 {
        post(s.local_addr(), &format!("{CH}/{seq}"), b"orig", &[]).await;
    }
    let (h, _) = post(s.local_addr(), &format!("{CH}/3"), b"dup", &[]).await;
    assert_eq!(h.status, 409);
    let (_, next) = simple(s.local_addr(), "GET", &format!("{CH}/next"), &[]).await;
    assert_eq!(String::from_utf8_lossy(&next).trim(), "5");
    let (_, body) = simple(s.local_addr(), "GET", &format!("{CH}/3"), &[]).await;
    assert_eq!(body, b"orig");
}
