//! Webhook output against a local HTTP server that is down, then slow, then
//! failing, then up.

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
use support::actions::{build, configs, effect};
use support::net::free_port;
use support::time::wait_until;
use trickle_edge::actions::Dispatched;
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
async fn delivers_after_down_slow_and_failing_server_and_drops_oldest() {
    let port = free_port(); // closed: nothing listens yet
    let out = build(json!({ "hook": {
        "type": "webhook", "url": format!("http://127.0.0.1:{port}/hook"),
        "timeout": "300ms", "retry_min": "20ms", "retry_max": "200ms", "max_attempts": 10000, "queue": 2,
    }}));
    let counters = || out.counters_of("hook").unwrap();

    assert_eq!(out.dispatch(effect("hook", Deliver, 1)), Dispatched::Queued);
    wait_until("retrying against a closed port", || counters().retries >= 2).await;

    // Seq 1 is in flight; the queue holds 2 and evicts the oldest beyond that.
    let results: Vec<_> = (2..=6)
        .map(|seq| out.dispatch(effect("hook", Deliver, seq)))
        .collect();
    assert_eq!(results[..2], [Dispatched::Queued, Dispatched::Queued]);
    assert!(
        results[2..]
            .iter()
            .all(|r| *r == Dispatched::QueuedDroppedOldest),
        "{results:?}"
    );
    assert_eq!(counters().dropped, 3);

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

    wait_until("3 delivered", || counters().sent == 3).await;
    let seen = seen.lock().unwrap().clone();
    let seqs: Vec<_> = seen
        .iter()
        .map(|(_, v)| v["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 5, 6], "oldest dropped, order kept");
    assert!(seen.iter().all(|(ct, _)| ct == "application/json"));
    assert_eq!(seen[0].1["rule"], "rule-1");
    assert_eq!(seen[0].1["payload"]["label"], "person");
    assert_eq!(counters().failed, 0);
    server.abort();
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
