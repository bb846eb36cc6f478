//! Our publisher and subscriber against our server, end to end on loopback.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use support::net::{readers_waiting, start_server, test_config};
use support::time::{wait_until, within};
use trickle_edge::trickle::channel::{ReadSlot, WriteSlot};
use trickle_edge::trickle::{Publisher, PublisherOptions, Subscriber, SubscriberOptions};

fn payload(seq: i64) -> Vec<u8> {
    // Varying sizes, content tied to the seq so loss or reordering shows.
    let len = 100 + (seq as usize * 37) % 3000;
    (0..len).map(|i| (seq as usize * 31 + i) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_segments_in_order_without_loss_or_duplicates() {
    let s = start_server(test_config(), &["many"]).await;
    let url = format!("{}many", s.base_url());
    let mut sub = Subscriber::new(
        &url,
        SubscriberOptions {
            start_seq: 0,
            ..Default::default()
        },
    )
    .unwrap();
    // A camera makes one segment a second; this loop makes them as fast as it
    // can. Keep the publisher at most 3 segments ahead so the reader stays
    // inside the server's ring of 5, as it would at any real frame rate.
    let window = std::sync::Arc::new(tokio::sync::Semaphore::new(3));
    let reader_window = window.clone();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < 1000 {
            let seg = sub.next_segment().await.unwrap().expect("stream continues");
            let seq = seg.seq;
            let body = seg.collect(1 << 20).await.unwrap();
            got.push((seq, body));
            reader_window.add_permits(1);
        }
        (got, sub.skipped)
    });
    let mut publisher = Publisher::connect(&url, PublisherOptions::default())
        .await
        .unwrap();
    for seq in 0..1000 {
        window.acquire().await.unwrap().forget();
        let mut w = publisher.next_segment().await.unwrap();
        assert_eq!(w.seq(), seq);
        let p = payload(seq);
        let (a, b) = p.split_at(p.len() / 2);
        w.write(Bytes::copy_from_slice(a)).await.unwrap();
        w.write(Bytes::copy_from_slice(b)).await.unwrap();
        assert_eq!(w.finish().await.unwrap().seq, seq);
    }
    let (got, skipped) = within("1000 segments", reader).await.unwrap();
    assert_eq!(skipped, 0);
    let seqs: Vec<i64> = got.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (0..1000).collect::<Vec<_>>(), "in order, no gaps");
    let unique: BTreeSet<i64> = seqs.iter().copied().collect();
    assert_eq!(unique.len(), 1000, "no duplicates");
    for (seq, body) in got {
        assert_eq!(body.as_ref(), payload(seq).as_slice(), "bytes of seq {seq}");
    }
    publisher.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_sees_bytes_before_the_segment_ends() {
    let s = start_server(test_config(), &["live"]).await;
    let url = format!("{}live", s.base_url());
    let mut publisher = Publisher::connect(&url, PublisherOptions::default())
        .await
        .unwrap();
    // -1 would mean "the segment after the one being written": start at 0.
    let mut sub = Subscriber::new(
        &url,
        SubscriberOptions {
            start_seq: 0,
            ..Default::default()
        },
    )
    .unwrap();
    let mut w = publisher.next_segment().await.unwrap();
    w.write(Bytes::from_static(b"early")).await.unwrap();
    let mut seg = within("segment", sub.next_segment())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seg.seq, 0);
    assert_eq!(seg.content_type.as_deref(), Some("video/MP2T"));
    assert_eq!(
        within("early bytes", seg.chunk()).await.unwrap().unwrap(),
        "early"
    );
    w.write(Bytes::from_static(b"late")).await.unwrap();
    w.finish().await.unwrap();
    assert_eq!(
        within("late bytes", seg.chunk()).await.unwrap().unwrap(),
        "late"
    );
    assert_eq!(within("end", seg.chunk()).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_preconnects_the_next_post() {
    let mut cfg = test_config();
    // A POST that has sent no body byte yet gets a `100 Continue` every
    // interval: the server's count of those shows a POST waiting there.
    cfg.interim_interval = Duration::from_millis(50);
    let s = start_server(cfg, &["pre"]).await;
    let url = format!("{}pre", s.base_url());
    let mut publisher = Publisher::connect(&url, PublisherOptions::default())
        .await
        .unwrap();
    let mut w = publisher.next_segment().await.unwrap();
    assert_eq!(w.seq(), 0);
    // Segment 0 starts streaming: from its first byte on, its own POST is no
    // longer idle and sends no more interim responses.
    w.write(Bytes::from_static(b"zero")).await.unwrap();
    let ch = s.state.channel("pre").unwrap();
    wait_until(
        "segment 0's first byte at the server",
        || matches!(ch.for_read(0), ReadSlot::Found(seg) if !seg.is_empty()),
    )
    .await;
    let interim = || s.state.stats.interim_sent.load(Ordering::Relaxed);
    let before = interim();
    // While segment 0 streams and before segment 1 is asked for, another
    // POST is already waiting at the server...
    wait_until(
        "a preconnected POST waiting at the server while segment 0 streams",
        || interim() > before,
    )
    .await;
    // ...and it holds seq 1: a second writer is refused (`Taken` claims
    // nothing, so this probe leaves the slot to the preconnected POST).
    let probe = ch.for_write(1, false);
    assert!(
        matches!(probe, WriteSlot::Taken { seq: 1 }),
        "seq 1 is not held by a preconnected POST: {probe:?}"
    );
    assert_eq!(w.finish().await.unwrap().seq, 0);
    // The waiting POST is the one segment 1 goes out on.
    let mut w = publisher.next_segment().await.unwrap();
    assert_eq!(w.seq(), 1);
    w.write(Bytes::from_static(b"one")).await.unwrap();
    assert_eq!(w.finish().await.unwrap().seq, 1);
    assert_eq!(publisher.stats().retries.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_preconnects_the_next_get() {
    let s = start_server(test_config(), &["subpre"]).await;
    let url = format!("{}subpre", s.base_url());
    let mut publisher = Publisher::connect(&url, PublisherOptions::default())
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
    let mut w = publisher.next_segment().await.unwrap();
    w.write(Bytes::from_static(b"zero")).await.unwrap();
    let seg = within("segment 0", sub.next_segment())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seg.seq, 0);
    // Segment 0 is still open and nobody asked for segment 1, yet the
    // subscriber's GET for it is already parked at the server.
    readers_waiting(&s, "subpre", 1, 1).await;
    w.finish().await.unwrap();
    assert_eq!(seg.collect(100).await.unwrap(), "zero");
    let mut w = publisher.next_segment().await.unwrap();
    w.write(Bytes::from_static(b"one")).await.unwrap();
    w.finish().await.unwrap();
    let seg = within("segment 1", sub.next_segment())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seg.seq, 1);
    assert_eq!(seg.collect(100).await.unwrap(), "one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_404_is_terminal_and_close_deletes_the_channel() {
    let s = start_server(test_config(), &["gone"]).await;
    let err = Publisher::connect(
        &format!("{}missing", s.base_url()),
        PublisherOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(err.is_terminal(), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");

    let url = format!("{}gone", s.base_url());
    let publisher = Publisher::connect(&url, PublisherOptions::default())
        .await
        .unwrap();
    let mut sub = Subscriber::new(&url, SubscriberOptions::default()).unwrap();
    let waiting = tokio::spawn(async move { sub.next_segment().await });
    // Its GET (-1: the next write, seq 0) is parked before the close.
    readers_waiting(&s, "gone", 0, 1).await;
    publisher.close().await.unwrap();
    assert!(
        within("end of stream", waiting)
            .await
            .unwrap()
            .unwrap()
            .is_none()
    );
    assert!(s.state.channel("gone").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_from_minus_two_gets_the_current_segment() {
    let s = start_server(test_config(), &["cur"]).await;
    let url = format!("{}cur", s.base_url());
    let mut publisher = Publisher::connect(&url, PublisherOptions::default())
        .await
        .unwrap();
    for i in 0..3 {
        let mut w = publisher.next_segment().await.unwrap();
        w.write(Bytes::from(format!("seg{i}"))).await.unwrap();
        w.finish().await.unwrap();
    }
    let mut sub = Subscriber::new(
        &url,
        SubscriberOptions {
            start_seq: -2,
            ..Default::default()
        },
    )
    .unwrap();
    let seg = within("current", sub.next_segment())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seg.seq, 2);
    assert_eq!(seg.collect(100).await.unwrap(), "seg2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_subscriber_jumps_to_the_live_edge() {
    let s = start_server(test_config(), &["slow"]).await;
    let url = format!("{}slow", s.base_url());
    let mut publisher = Publisher::connect(&url, PublisherOptions::default())
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
    let mut w = publisher.next_segment().await.unwrap();
    w.write(Bytes::from_static(b"0")).await.unwrap();
    w.finish().await.unwrap();
    let first = within("seg 0", sub.next_segment()).await.unwrap().unwrap();
    assert_eq!(first.collect(10).await.unwrap(), "0");
    // The reader stalls while 12 more segments go by.
    for i in 1..13 {
        let mut w = publisher.next_segment().await.unwrap();
        w.write(Bytes::from(i.to_string())).await.unwrap();
        w.finish().await.unwrap();
    }
    // Its preconnected GET for 1 was answered long ago (and the segment has
    // since been evicted); whatever it gets next, it must end up live.
    let mut last = -1;
    let mut w = publisher.next_segment().await.unwrap();
    assert_eq!(w.seq(), 13);
    let s = std::sync::Arc::new(s);
    let server = s.clone();
    let producer = tokio::spawn(async move {
        // Segment 13 begins only once the reader waits for it at the live edge.
        readers_waiting(&server, "slow", 13, 1).await;
        w.write(Bytes::from_static(b"13")).await.unwrap();
        w.finish().await.unwrap();
        publisher
    });
    while last != 13 {
        let seg = within("live edge", sub.next_segment())
            .await
            .unwrap()
            .unwrap();
        let seq = seg.seq;
        if let Ok(body) = seg.collect(10).await {
            assert_eq!(body, seq.to_string());
        }
        assert!(seq > last);
        last = seq;
    }
    assert!(sub.skipped > 0, "the reader skipped evicted segments");
    producer.await.unwrap();
}

/// Issue 15: a subscriber with a wrong or missing token retried its 401
/// forever. A refusal of credentials is terminal, with a message that says
/// where the token comes from; the `subscribe` command exits with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_ends_the_subscription_with_a_clear_error() {
    let mut cfg = test_config();
    cfg.bearer_token = Some("s3cret".into());
    let server = start_server(cfg, &["data"]).await;
    let url = format!("{}data", server.base_url());
    for token in [None, Some("wrong")] {
        let mut opts = SubscriberOptions::default();
        opts.client.bearer_token = token.map(str::to_string);
        let mut sub = Subscriber::new(&url, opts).unwrap();
        let e = within("the refusal", sub.next_segment()).await.unwrap_err();
        let text = e.to_string();
        assert!(text.contains("answered 401"), "{text}");
        assert!(text.contains("check the bearer token"), "{text}");
        assert!(sub.next_segment().await.unwrap().is_none(), "ended");
    }
    let out = within(
        "subscribe exits",
        tokio::process::Command::new(env!("CARGO_BIN_EXE_trickle-edge"))
            .args(["subscribe", &url, "--count", "1"])
            .output(),
    )
    .await
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("answered 401"), "{stderr}");
}

/// Issue 15: a hostile server answering `Lp-Trickle-Seq:
/// 9223372036854775807` must not make our subscriber count past `i64::MAX`:
/// the header is refused and the subscriber keeps its own position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_seq_header_is_not_believed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = asked.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = 0;
                while !String::from_utf8_lossy(&buf[..got]).contains("\r\n\r\n") {
                    match sock.read(&mut buf[got..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got += n,
                    }
                }
                let text = String::from_utf8_lossy(&buf[..got]).to_string();
                let path = text
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                log.lock().unwrap().push(path);
                let _ = sock
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nlp-trickle-seq: 9223372036854775807\r\nlp-trickle-latest: 9223372036854775807\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                    )
                    .await;
            });
        }
    });
    let url = format!("http://{addr}/ai/trickle/ch");
    let opts = SubscriberOptions {
        start_seq: 0,
        ..Default::default()
    };
    let mut sub = Subscriber::new(&url, opts).unwrap();
    for want in 0..3 {
        let seg = within("a segment", sub.next_segment())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seg.seq, want, "our own position, not the server's");
    }
    let asked = asked.lock().unwrap().clone();
    assert!(asked.iter().all(|p| !p.contains('-')), "{asked:?}");
    assert!(asked.contains(&"/ai/trickle/ch/2".to_string()), "{asked:?}");
    // A start seq out of range is refused up front.
    let opts = SubscriberOptions {
        start_seq: i64::MAX,
        ..Default::default()
    };
    assert!(Subscriber::new(&url, opts).is_err());
}
