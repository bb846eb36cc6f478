//! Webhook output against a local HTTP server that is down, then slow, then
//! failing, then up; and against one that stalls under a burst.

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use support::actions::{build, configs, effect, item};
use support::http::HeldWebhook;
use support::net::free_port;
use support::time::{wait_until, wait_until_for};
use support::tmp::temp_dir;
use support::tracing::with_warnings;
use trickle_edge::actions::{Dispatched, item_json};
use trickle_edge::rules::OutputAction::Deliver;

const SLOW: u8 = 0;
const FAILING: u8 = 1;
const UP: u8 = 2;

/// What the test server saw: (content-type, JSON body) of accepted posts.
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// Serves `127.0.0.1:port`: in SLOW mode answers after 30 s, in FAILING mode
/// with 503, in UP mode records the post and answers 200.
async fn serve(port: u16, mode: Arc<AtomicU8>, seen: Seen) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (mode, seen) = (mode.clone(), seen.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (mode, seen) = (mode.clone(), seen.clone());
                    async move {
                        let ct = req
                            .headers()
                            .get("content-type")
                            .map(|v| v.to_str().unwrap_or("").to_string());
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let status = match mode.load(Ordering::SeqCst) {
                            SLOW => {
                                tokio::time::sleep(Duration::from_secs(30)).await;
                                StatusCode::OK
                            }
                            FAILING => StatusCode::SERVICE_UNAVAILABLE,
                            _ => {
                                let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
                                seen.lock().unwrap().push((ct.unwrap_or_default(), v));
                                StatusCode::OK
                            }
                        };
                        let mut resp = Response::new(Full::new(Bytes::new()));
                        *resp.status_mut() = status;
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_after_down_slow_and_failing_server_in_order_through_the_spill() {
    let port = free_port(); // closed: nothing listens yet
    let dir = temp_dir("webhook-down");
    let out = build(json!({ "hook": {
        "type": "webhook", "url": format!("http://127.0.0.1:{port}/hook"),
        "timeout": "300ms", "retry_min": "20ms", "retry_max": "200ms", "max_attempts": 10000, "queue": 2,
        "spill_dir": dir,
    }}));
    let counters = || out.counters_of("hook").unwrap();

    assert_eq!(out.dispatch(effect("hook", Deliver, 1)), Dispatched::Queued);
    wait_until("retrying against a closed port", || counters().retries >= 2).await;

    // Seq 1 is in flight; the queue holds 2, the overflow file the rest.
    let results: Vec<_> = (2..=6)
        .map(|seq| out.dispatch(effect("hook", Deliver, seq)))
        .collect();
    assert_eq!(results[..2], [Dispatched::Queued, Dispatched::Queued]);
    assert!(
        results[2..].iter().all(|r| *r == Dispatched::Spilled),
        "{results:?}"
    );
    assert!(dir.join("hook.spill").exists());
    assert_eq!((counters().spilled, counters().dropped), (3, 0));

    let mode = Arc::new(AtomicU8::new(SLOW));
    let seen: Seen = Arc::default();
    let server = serve(port, mode.clone(), seen.clone()).await;
    wait_until("an attempt timed out on the slow server", || {
        counters().timeouts >= 1
    })
    .await;
    mode.store(FAILING, Ordering::SeqCst);
    let retries = counters().retries;
    wait_until("503 retried", || counters().retries >= retries + 2).await;
    mode.store(UP, Ordering::SeqCst);

    wait_until("6 delivered", || counters().sent == 6).await;
    let seen = seen.lock().unwrap().clone();
    let seqs: Vec<_> = seen
        .iter()
        .map(|(_, v)| v["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6], "none lost, order kept");
    assert!(
        !dir.join("hook.spill").exists(),
        "a drained spill is removed"
    );
    assert!(seen.iter().all(|(ct, _)| ct == "application/json"));
    assert_eq!(seen[0].1["rule"], "rule-1");
    assert_eq!(seen[0].1["payload"]["label"], "person");
    assert_eq!(counters().failed, 0);
    server.abort();
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 15 item 4: a burst into a webhook whose receiver has stalled is
/// not shed. What the queue cannot hold waits in the overflow file; a log
/// output beside it writes every line meanwhile; once the receiver answers
/// again it gets every effect, once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_into_a_stalled_webhook_is_delivered_whole_in_order_without_holding_the_log() {
    const N: i64 = 20_000;
    let dir = temp_dir("webhook-burst");
    let hook = HeldWebhook::start().await;
    let out = build(json!({
        "hook": {
            "type": "webhook", "url": format!("http://{}/hook", hook.addr),
            "timeout": "600s", "max_attempts": 1, "spill_dir": dir,
        },
        "events": { "type": "log", "path": dir.join("events.jsonl"), "fsync_interval": "100ms" },
    }));
    for seq in 0..N {
        out.dispatch(effect("hook", Deliver, seq));
        out.dispatch(effect("events", Deliver, seq));
    }
    wait_until_for(Duration::from_secs(300), "every line in the log", || {
        out.counters_of("events").unwrap().sent == N as u64
    })
    .await;
    let c = out.counters_of("hook").unwrap();
    assert_eq!(c.sent, 0, "the stalled receiver answered: {c:?}");
    assert!(c.spilled > 0 && c.dropped == 0, "{c:?}");
    assert!(dir.join("hook.spill").exists());

    hook.open();
    wait_until_for(Duration::from_secs(600), "every effect delivered", || {
        out.counters_of("hook").unwrap().sent == N as u64
    })
    .await;
    let seqs = hook.seqs();
    assert!(
        seqs.iter().copied().eq(0..N),
        "lost, repeated or reordered: {} received, first wrong at {:?}",
        seqs.len(),
        seqs.iter().zip(0..N).position(|(g, w)| *g != w)
    );
    let c = out.counters_of("hook").unwrap();
    assert_eq!((c.fired, c.failed, c.dropped), (N as u64, 0, 0));
    assert!(
        !dir.join("hook.spill").exists(),
        "a drained spill is removed"
    );
    out.shutdown(Duration::from_secs(10)).await;
    std::fs::remove_dir_all(&dir).ok();
}

/// Only a full overflow file drops: exactly what neither the queue nor the
/// file could hold, counted and warned about; everything else arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spill_drops_exactly_what_it_cannot_hold_and_warns() {
    const FIRST: i64 = 100_000; // every seq 6 digits: every body one length
    const N: i64 = 500;
    const QUEUE: i64 = 4;
    const ROOM: i64 = 10;
    let dir = temp_dir("webhook-full");
    let hook = HeldWebhook::start().await;
    let line = serde_json::to_vec(&item_json("rule-1", Some(&item(FIRST))))
        .unwrap()
        .len()
        + 1;
    let out = build(json!({ "hook": {
        "type": "webhook", "url": format!("http://{}/hook", hook.addr),
        "timeout": "600s", "max_attempts": 1, "queue": QUEUE, "spill_dir": dir,
        "spill_max_bytes": ROOM as usize * line + line / 2,
    }}));
    // The first is in flight, held by the receiver.
    out.dispatch(effect("hook", Deliver, FIRST));
    wait_until("the first POST held", || {
        hook.waiting.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    let (results, warnings) = with_warnings(|| {
        (FIRST + 1..FIRST + N)
            .map(|seq| out.dispatch(effect("hook", Deliver, seq)))
            .collect::<Vec<_>>()
    });
    let count = |d: Dispatched| results.iter().filter(|r| **r == d).count() as i64;
    assert_eq!(
        (count(Dispatched::Queued), count(Dispatched::Spilled)),
        (QUEUE, ROOM)
    );
    let dropped = N - 1 - QUEUE - ROOM;
    assert_eq!(count(Dispatched::Dropped), dropped);
    let c = out.counters_of("hook").unwrap();
    assert_eq!(
        (c.fired, c.spilled, c.dropped),
        (N as u64, ROOM as u64, dropped as u64)
    );
    assert!(!warnings.is_empty(), "no warning for {dropped} dropped");
    assert!(
        warnings[0].contains("output cannot keep up")
            && warnings[0].contains("hook")
            && warnings[0].contains("is full"),
        "{warnings:?}"
    );

    hook.open();
    let delivered = 1 + QUEUE + ROOM;
    wait_until("the rest delivered", || {
        out.counters_of("hook").unwrap().sent == delivered as u64
    })
    .await;
    assert_eq!(hook.seqs(), (FIRST..FIRST + delivered).collect::<Vec<_>>());
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gives_up_after_max_attempts() {
    let port = free_port();
    let out = build(json!({ "hook": {
        "type": "webhook", "url": format!("http://127.0.0.1:{port}/"),
        "retry_min": "10ms", "retry_max": "20ms", "max_attempts": 3,
    }}));
    out.dispatch(effect("hook", Deliver, 1));
    wait_until("failed after 3 attempts", || {
        out.counters_of("hook").unwrap().failed == 1
    })
    .await;
    let c = out.counters_of("hook").unwrap();
    assert_eq!((c.sent, c.retries), (0, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_urls_other_than_http_and_https() {
    let cfg = configs(json!({ "hook": { "type": "webhook", "url": "ftp://example.invalid/" } }));
    let err = trickle_edge::actions::Outputs::build(&cfg)
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        err,
        "output `hook`: `url`: \"ftp://example.invalid/\": only http:// and https:// are supported"
    );
    // https:// builds (verification happens at connect: tests/actions_webhook_tls.rs).
    let cfg = configs(json!({ "hook": { "type": "webhook", "url": "https://example.invalid/" } }));
    trickle_edge::actions::Outputs::build(&cfg).expect("https:// is supported");
}

/// A stop with a stalled receiver keeps what was not sent (queued in
/// memory, in flight, spilled): the next start POSTs all of it first, in
/// order, to a receiver that answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_stop_left_unsent_is_posted_first_after_a_restart() {
    const N: i64 = 300;
    let dir = temp_dir("webhook-restart");
    let config = |url: String| {
        json!({ "hook": {
            "type": "webhook", "url": url, "timeout": "600s", "max_attempts": 1,
            "queue": 8, "spill_dir": dir,
        }})
    };
    let stalled = HeldWebhook::start().await;
    let out = build(config(format!("http://{}/hook", stalled.addr)));
    for seq in 0..N {
        out.dispatch(effect("hook", Deliver, seq));
    }
    wait_until("the first POST held", || {
        stalled.waiting.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    out.shutdown(Duration::from_millis(100)).await;
    assert!(stalled.seqs().is_empty());
    assert!(
        dir.join("hook.spill").exists(),
        "nothing kept for the next start"
    );

    let up = HeldWebhook::start().await;
    up.open();
    let again = build(config(format!("http://{}/hook", up.addr)));
    wait_until("every effect of the last run delivered", || {
        again.counters_of("hook").unwrap().sent == N as u64
    })
    .await;
    assert_eq!(up.seqs(), (0..N).collect::<Vec<_>>());
    assert!(
        !dir.join("hook.spill").exists(),
        "a drained spill is removed"
    );
    std::fs::remove_dir_all(&dir).ok();
}
