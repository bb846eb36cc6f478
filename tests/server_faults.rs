//! Servers that misbehave: a stand-in that answers 470 to every GET or 500
//! to every request, one that accepts and never answers, a real server
//! killed and restarted 20 times under a publisher and a subscriber, and 50
//! subscribers that lose their server at once. The clients must keep going,
//! back off (counted requests, never a clock), count what they lose, and
//! recover when the server behaves again.
//!
//! The stand-ins are small hyper servers on loopback, in this file.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::net::{start_server, test_config};
use support::time::{wait_until, within};
use tokio::net::TcpListener;
use tokio::time::Instant;
use trickle_edge::trickle::{Publisher, PublisherOptions, Subscriber, SubscriberOptions};

/// How one stand-in answers a request: its method and path in, a status
/// and headers out.
type Answer = Arc<dyn Fn(&str, &str) -> (StatusCode, Vec<(&'static str, String)>) + Send + Sync>;

/// A misbehaving HTTP server on loopback that records when each request
/// arrived.
struct StandIn {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<(Instant, String, String)>>>,
    task: tokio::task::JoinHandle<()>,
    /// Every connection's task, so that stopping closes kept-alive sockets
    /// too (a pooled client would otherwise keep talking to the stand-in).
    connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl StandIn {
    async fn start(addr: SocketAddr, answer: Answer) -> StandIn {
        let listener = bind_retrying(addr).await;
        let addr = listener.local_addr().unwrap();
        let requests: Arc<Mutex<Vec<(Instant, String, String)>>> = Arc::default();
        let log = requests.clone();
        let connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let conns = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let answer = answer.clone();
                let log = log.clone();
                let conn = tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let answer = answer.clone();
                        let log = log.clone();
                        async move {
                            let method = req.method().to_string();
                            let path = req.uri().path().to_string();
                            log.lock().unwrap().push((
                                Instant::now(),
                                method.clone(),
                                path.clone(),
                            ));
                            // Read what the client sends, so a POST is not
                            // failed by a reset rather than by our answer.
                            let _ = req.into_body().collect().await;
                            let (status, headers) = answer(&method, &path);
                            let mut resp = Response::builder().status(status);
                            for (k, v) in headers {
                                resp = resp.header(k, v);
                            }
                            Ok::<_, Infallible>(
                                resp.body(Full::new(Bytes::from_static(b"stand-in")))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
                conns.lock().unwrap().push(conn);
            }
        });
        StandIn {
            addr,
            requests,
            task,
            connections,
        }
    }

    fn count(&self, method: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, m, _)| m == method)
            .count()
    }

    fn stop(self) {
        self.task.abort();
        for conn in self.connections.lock().unwrap().drain(..) {
            conn.abort();
        }
    }
}

/// Binds `addr`, waiting while the port is still held by a server being
/// torn down (its listener closes as its task ends).
async fn bind_retrying(addr: SocketAddr) -> TcpListener {
    within(format!("binding {addr}"), async {
        loop {
            match TcpListener::bind(addr).await {
                Ok(l) => return l,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
}

/// A channel's URL at `addr` under the real server's base path, so a
/// client started against a stand-in finds the channel once a real server
/// takes the port over.
fn channel_url(addr: SocketAddr, channel: &str) -> String {
    format!("http://{addr}{}{channel}", test_config().base_path)
}

fn loopback_any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A subscriber asking a stand-in that answers every GET with `470` and a
/// live edge the subscriber is already at (a broken or hostile server)
/// must not ask again at once: each repeated miss waits at least
/// `ahead_retry`, so a window of `W` holds at most `W / ahead_retry` GETs
/// plus the first two. Before the fix it asked again immediately, forever:
/// tens of thousands of GETs a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_470_storm_is_asked_again_at_a_backed_off_pace() {
    let standin = StandIn::start(
        loopback_any(),
        Arc::new(|_, _| {
            (
                StatusCode::from_u16(470).unwrap(),
                vec![("Lp-Trickle-Latest", "5".to_string())],
            )
        }),
    )
    .await;
    let opts = SubscriberOptions::default();
    let ahead_retry = opts.ahead_retry;
    let mut sub = Subscriber::new(&channel_url(standin.addr, "storm"), opts).unwrap();
    let reader = tokio::spawn(async move {
        let _ = sub.next_segment().await;
    });
    // The window starts at the first request, so start-up costs nothing.
    wait_until("the first GET", || standin.count("GET") >= 1).await;
    let window = Duration::from_secs(3);
    let start = standin.requests.lock().unwrap()[0].0;
    tokio::time::sleep_until(start + window).await;
    let gets = standin
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, _, _)| *t <= start + window)
        .count();
    let bound = (window.as_millis() / ahead_retry.as_millis()) as usize + 2;
    println!("470 storm: {gets} GETs in {window:?} (bound {bound})");
    assert!(
        gets <= bound,
        "{gets} GETs in {window:?} against a 470 storm: more than one per ahead_retry ({ahead_retry:?}), bound {bound}"
    );
    assert!(!reader.is_finished(), "the subscriber keeps trying");
    reader.abort();

    // The server behaves again: a real server on the same port, where the
    // publisher writes seq 5 onwards, is followed without a restart.
    let addr = standin.addr;
    standin.stop();
    let mut cfg = test_config();
    cfg.listen = addr;
    let server = start_server_retrying(cfg, &["storm"]).await;
    let url = format!("{}storm", server.base_url());
    let mut sub = Subscriber::new(
        &url,
        SubscriberOptions {
            start_seq: 0,
            ..Default::default()
        },
    )
    .unwrap();
    let mut publisher = Publisher::connect(&url, PublisherOptions::default())
        .await
        .unwrap();
    let read = tokio::spawn(async move { sub.next_segment().await.unwrap().unwrap() });
    let mut w = publisher.next_segment().await.unwrap();
    w.write(Bytes::from_static(b"after the storm"))
        .await
        .unwrap();
    w.finish().await.unwrap();
    let seg = within("a segment once the server behaves", read)
        .await
        .unwrap();
    assert_eq!(seg.collect(100).await.unwrap(), "after the storm");
}

/// A server answering 500 to every request: a subscriber keeps asking with
/// exponential backoff (500 ms doubling to 3 s, full jitter), nowhere near a
/// tight loop, and reads the first segment once a real server is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_answering_500_is_retried_with_backoff_and_recovered_from() {
    let standin = StandIn::start(
        loopback_any(),
        Arc::new(|_, _| (StatusCode::INTERNAL_SERVER_ERROR, vec![])),
    )
    .await;
    let opts = SubscriberOptions {
        start_seq: 0,
        ..Default::default()
    };
    let mut sub = Subscriber::new(&channel_url(standin.addr, "cam"), opts).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let got = done.clone();
    let reader = tokio::spawn(async move {
        let seg = sub.next_segment().await.unwrap().unwrap();
        let body = seg.collect(100).await.unwrap();
        got.store(true, Ordering::Release);
        (body, sub.reconnects)
    });
    wait_until("the first GET", || standin.count("GET") >= 1).await;
    let window = Duration::from_secs(4);
    let start = standin.requests.lock().unwrap()[0].0;
    tokio::time::sleep_until(start + window).await;
    let gets = standin.count("GET");
    // Ceilings 0.5, 1, 2, 3, 3 s: the expected delays (half each) sum past
    // 4 s after 5 attempts. Full jitter may draw short delays, so allow
    // four times that; a loop without backoff makes thousands.
    let bound = 4 * 5 + 1;
    println!("500 storm: {gets} GETs in {window:?} (bound {bound})");
    assert!(gets <= bound, "{gets} GETs in {window:?} answered 500");
    assert!(!done.load(Ordering::Acquire), "nothing to read yet");

    let addr = standin.addr;
    standin.stop();
    let mut cfg = test_config();
    cfg.listen = addr;
    let server = start_server_retrying(cfg, &["cam"]).await;
    let url = format!("{}cam", server.base_url());
    let mut publisher = Publisher::connect(
        &url,
        PublisherOptions {
            start_seq: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut w = publisher.next_segment().await.unwrap();
    w.write(Bytes::from_static(b"recovered")).await.unwrap();
    w.finish().await.unwrap();
    let (body, reconnects) = within("the subscriber recovers", reader).await.unwrap();
    assert_eq!(body, "recovered");
    assert!(reconnects >= 1, "failed GETs are counted as reconnects");
}

/// Starts a real server on a port a stand-in has just released.
async fn start_server_retrying(
    cfg: trickle_edge::trickle::server::ServerConfig,
    channels: &[&str],
) -> trickle_edge::trickle::server::RunningServer {
    drop(bind_retrying(cfg.listen).await);
    start_server(cfg, channels).await
}

/// Counts what a stand-in receives without ever answering: connections
/// accepted and held open.
async fn silent_server() -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind(loopback_any()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let n = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            n.fetch_add(1, Ordering::Relaxed);
            held.push(tcp);
        }
    });
    (addr, accepted)
}

/// A server that accepts TCP and never answers: the subscriber asks again
/// on a fresh connection after `idle_reissue`, the publisher's segment
/// fails after `response_timeout` instead of hanging, and `connect` gives
/// up on `GET /next` after its own bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_accepts_and_never_answers_times_out_and_is_retried() {
    let (addr, accepted) = silent_server().await;
    let url = format!("http://{addr}/cam");
    let mut sub = Subscriber::new(
        &url,
        SubscriberOptions {
            start_seq: 0,
            idle_reissue: Duration::from_millis(300),
            ..Default::default()
        },
    )
    .unwrap();
    let reader = tokio::spawn(async move { sub.next_segment().await.map(|_| ()) });
    wait_until("the subscriber asks again on fresh connections", || {
        accepted.load(Ordering::Relaxed) >= 3
    })
    .await;
    assert!(!reader.is_finished());
    reader.abort();

    let before = accepted.load(Ordering::Relaxed);
    let connect = within(
        "connect gives up on a silent GET /next",
        Publisher::connect(&url, PublisherOptions::default()),
    )
    .await;
    let err = connect.expect_err("no answer is not a position");
    assert!(
        err.to_string().contains("no answer"),
        "the error says the server did not answer: {err}"
    );
    assert!(accepted.load(Ordering::Relaxed) > before);

    let mut publisher = Publisher::connect(
        &url,
        PublisherOptions {
            start_seq: Some(0),
            response_timeout: Duration::from_millis(500),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut w = publisher.next_segment().await.unwrap();
    w.write(Bytes::from_static(b"into the void")).await.unwrap();
    let finished = within("the segment fails rather than hangs", w.finish()).await;
    let err = finished.expect_err("a silent server confirms nothing");
    assert!(err.to_string().contains("no answer"), "{err}");
}

/// The server killed and restarted 20 times on the same port while a
/// publisher writes and a subscriber reads: every segment the publisher
/// tried is either confirmed or counted failed, and every confirmed one
/// either reached the subscriber or is counted in its `skipped`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_server_kills_lose_nothing_uncounted() {
    let mut cfg = test_config();
    let server = start_server(cfg.clone(), &["cam"]).await;
    cfg.listen = server.local_addr();
    let url = format!("{}cam", server.base_url());
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
    let stop = Arc::new(AtomicBool::new(false));
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let got = received.clone();
    let skipped = Arc::new(AtomicU64::new(0));
    let skips = skipped.clone();
    let reader = tokio::spawn(async move {
        while let Ok(Some(seg)) = sub.next_segment().await {
            skips.store(sub.skipped, Ordering::Release);
            if let Ok(body) = seg.collect(100).await {
                got.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into());
            }
        }
    });
    let stopping = stop.clone();
    let writer = tokio::spawn(async move {
        let (mut tried, mut confirmed) = (0u64, Vec::new());
        while !stopping.load(Ordering::Acquire) {
            tried += 1;
            let body = format!("segment-{tried}");
            match publisher.next_segment().await {
                Ok(mut w) => {
                    if w.write(Bytes::from(body.clone())).await.is_ok() && w.finish().await.is_ok()
                    {
                        confirmed.push(body);
                    }
                }
                Err(e) if e.is_terminal() => {
                    publisher = Publisher::connect(&url, PublisherOptions::default())
                        .await
                        .unwrap_or(publisher);
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        (tried, confirmed, publisher)
    });

    let mut server = server;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.kill().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        server = start_server_retrying(cfg.clone(), &["cam"]).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Release);
    let (tried, confirmed, publisher) = within("the writer stops", writer).await.unwrap();
    // The last server stays up: once the restarts stop, the subscriber
    // must be following live again. Markers go out until one arrives (a
    // reader that was still backing off jumps past the first ones).
    let mut publisher = publisher;
    within("the subscriber follows live after the restarts", async {
        for n in 0.. {
            let mark = format!("marker-{n}");
            let mut w = publisher.next_segment().await.unwrap();
            w.write(Bytes::from(mark)).await.unwrap();
            w.finish().await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            if received
                .lock()
                .unwrap()
                .iter()
                .any(|b| b.starts_with("marker-"))
            {
                break;
            }
        }
    })
    .await;
    reader.abort();
    let skipped = skipped.load(Ordering::Acquire);
    let received = received.lock().unwrap().clone();
    let stats = publisher.stats();
    let failed = stats.segments_failed.load(Ordering::Relaxed);
    let ok = stats.segments_ok.load(Ordering::Relaxed);
    let unread: Vec<_> = confirmed.iter().filter(|b| !received.contains(b)).collect();
    println!(
        "20 restarts: tried {tried}, confirmed {}, publisher ok {ok} failed {failed} retries {}, \
         received {}, unread {}, subscriber skipped {skipped}",
        confirmed.len(),
        stats.retries.load(Ordering::Relaxed),
        received.len(),
        unread.len(),
    );
    // A killed server loses what it held (the ring is in memory), so most
    // segments end counted as skipped; none may go uncounted.
    assert!(!received.is_empty(), "segments flowed between the restarts");
    assert!(
        unread.len() as u64 <= skipped,
        "{} confirmed segments never reached the subscriber but it counted {} skipped: {unread:?}",
        unread.len(),
        skipped
    );
}

/// 50 subscribers parked on one server that dies: their reconnects are
/// spread by full jitter, not one thundering herd. Prints the histogram
/// of attempts in the first second (per 100 ms) for docs/benchmarks.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_subscribers_reconnect_spread_over_time() {
    let server = start_server(test_config(), &["cam"]).await;
    let addr = server.local_addr();
    let url = format!("{}cam", server.base_url());
    let mut readers = Vec::new();
    for _ in 0..50 {
        let mut sub = Subscriber::new(
            &url,
            SubscriberOptions {
                start_seq: 0,
                ..Default::default()
            },
        )
        .unwrap();
        readers.push(tokio::spawn(async move {
            let _ = sub.next_segment().await;
        }));
    }
    support::net::readers_waiting(&server, "cam", 0, 50).await;
    server.kill().await;
    let died = Instant::now();
    // The port is taken over at once by a listener that notes each
    // connection and closes it: every attempt fails and is counted.
    let listener = bind_retrying(addr).await;
    let attempts: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let seen = attempts.clone();
    let counter = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            seen.lock().unwrap().push(died.elapsed());
            drop(tcp);
        }
    });
    wait_until("the first second of attempts", || {
        died.elapsed() >= Duration::from_secs(1)
    })
    .await;
    let first_second: Vec<Duration> = attempts
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|d| *d < Duration::from_secs(1))
        .collect();
    let mut buckets = [0usize; 10];
    for d in &first_second {
        buckets[(d.as_millis() / 100) as usize] += 1;
    }
    println!(
        "reconnect attempts of 50 subscribers in the first second after the server died (per 100 ms):"
    );
    for (i, n) in buckets.iter().enumerate() {
        println!(
            "  {:>4}-{:>4} ms: {:>3} {}",
            i * 100,
            i * 100 + 100,
            n,
            "#".repeat(*n)
        );
    }
    assert!(
        first_second.len() >= 25,
        "most of the 50 subscribers tried again within a second (backoff starts at 500 ms): {}",
        first_second.len()
    );
    let fullest = buckets.iter().max().copied().unwrap_or(0);
    assert!(
        fullest < first_second.len(),
        "all {} attempts fell in one 100 ms bucket: no jitter",
        first_second.len()
    );
    counter.abort();
    for r in readers {
        r.abort();
    }
}

/// `trickle-edge run` against a server whose GETs work but whose every POST
/// answers 500: the agent keeps running, and what it sends is bounded by its
/// policy, not by how fast the server answers. Segments come one per GOP
/// (1 s by default); each is posted at most `1 + unsent_retries` (9) times
/// plus one preconnect, and a publisher restarted after three failed
/// segments starts no faster than the GOPs. So a window of 8 s holds at
/// most (8 + 1) x 10 = 90 POSTs; a retry loop without pacing makes
/// thousands. Measured: 9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_backs_off_from_a_server_that_fails_every_post() {
    let standin = StandIn::start(
        loopback_any(),
        Arc::new(|method, _| match method {
            "GET" => (StatusCode::OK, vec![("Lp-Trickle-Latest", "0".to_string())]),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, vec![]),
        }),
    )
    .await;
    let dir = support::tmp::temp_dir("post500");
    let cfg = dir.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[camera]\nsource = \"test\"\nwidth = 160\nheight = 120\nfps = 10\n\
             [job]\nmode = \"static\"\npublish_url = \"{}\"\n\
             [supervisor]\nlisten = \"{}\"\n",
            channel_url(standin.addr, "cam"),
            support::net::free_addr()
        ),
    )
    .unwrap();
    let mut agent = tokio::process::Command::new(env!("CARGO_BIN_EXE_trickle-edge"))
        .args(["run", "--config"])
        .arg(&cfg)
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_until("the first POST", || standin.count("POST") >= 1).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let posts = standin.count("POST");
    let gets = standin.count("GET");
    println!("POST-500 server: {posts} POSTs and {gets} GETs in ~8 s");
    assert!(
        agent.try_wait().unwrap().is_none(),
        "the agent keeps running"
    );
    assert!(
        posts <= 90,
        "{posts} POSTs in 8 s against a server failing them"
    );
    agent.kill().await.unwrap();
    std::fs::remove_dir_all(&dir).ok();
}
