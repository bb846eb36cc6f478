//! The reference worker's HTTP API: refusals, restarts and lifecycle, over
//! real HTTP requests (no video needed: the channels simply stay quiet).

mod support;

use std::net::SocketAddr;

use serde_json::{Value, json};
use support::http::{post, simple};
use support::net::{free_addr, start_server, test_config};
use support::time::{wait_for_some, within};
use trickle_edge::worker::{WorkerConfig, WorkerHandle};

async fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let (head, bytes) = match body {
        Some(b) => {
            post(
                addr,
                path,
                b.as_bytes(),
                &[("content-type", "application/json")],
            )
            .await
        }
        None => simple(addr, method, path, &[]).await,
    };
    assert_eq!(head.header("content-type"), Some("application/json"));
    (
        head.status,
        serde_json::from_slice(&bytes).expect("every answer is JSON"),
    )
}

async fn worker() -> WorkerHandle {
    WorkerHandle::start("127.0.0.1:0".parse().unwrap(), WorkerConfig::default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_are_400_naming_the_field() {
    let w = worker().await;
    let a = w.local_addr();
    let cases = [
        ("{", "body"),
        ("[1]", "body"),
        (r#"{"publish_url":"http://127.0.0.1:1/x"}"#, "subscribe_url"),
        (r#"{"subscribe_url":42}"#, "subscribe_url"),
        (
            r#"{"subscribe_url":"http://127.0.0.1:1/x","events_url":"ws://nope"}"#,
            "events_url",
        ),
        (
            r#"{"subscribe_url":"http://127.0.0.1:1/x","gateway_request_id":7}"#,
            "gateway_request_id",
        ),
        (
            r#"{"subscribe_url":"http://127.0.0.1:1/x","params":"threshold=3"}"#,
            "params",
        ),
    ];
    for (body, field) in cases {
        let (code, v) = call(a, "POST", "/api/stream/start", Some(body)).await;
        assert_eq!(code, 400, "{body}");
        assert_eq!(v["field"], field, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(field), "{v}");
    }
    let (code, v) = call(a, "POST", "/api/stream/params", Some("not json")).await;
    assert_eq!((code, v["field"].as_str()), (400, Some("body")));
    // Nothing was started by any of those.
    assert_eq!(
        call(a, "GET", "/api/stream/status", None).await.1["state"],
        "idle"
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_worker_answers_health_status_and_refuses_params() {
    let w = worker().await;
    let a = w.local_addr();
    assert_eq!(
        call(a, "GET", "/health", None).await,
        (200, json!({"status": "IDLE"}))
    );
    let (code, st) = call(a, "GET", "/api/stream/status", None).await;
    assert_eq!(code, 200);
    assert_eq!(st["state"], "idle");
    assert_eq!(st["frames_decoded"], 0);
    let (code, _) = call(a, "POST", "/api/stream/params", Some(r#"{"threshold":9}"#)).await;
    assert_eq!(code, 409);
    assert_eq!(
        call(a, "POST", "/api/stream/stop", Some("")).await,
        (200, json!({"stopped": false, "clean": true}))
    );
    assert_eq!(call(a, "GET", "/nope", None).await.0, 404);
    assert_eq!(call(a, "GET", "/api/stream/start", None).await.0, 405);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_while_running_restarts_with_the_new_request() {
    let s = start_server(test_config(), &["one", "two"]).await;
    let w = worker().await;
    let a = w.local_addr();
    let start = |id: &str| {
        json!({
            "subscribe_url": format!("{}{id}", s.base_url()),
            "gateway_request_id": id,
            "params": {"prompt": id},
        })
        .to_string()
    };
    let (code, v) = call(a, "POST", "/api/stream/start", Some(&start("one"))).await;
    assert_eq!(
        (code, &v["gateway_request_id"]),
        (200, &json!("one")),
        "{v}"
    );
    let health = call(a, "GET", "/health", None).await;
    let (_, st) = call(a, "GET", "/api/stream/status", None).await;
    assert_eq!(health, (200, json!({"status": "OK"})), "status: {st}");
    let (code, v) = call(a, "POST", "/api/stream/start", Some(&start("two"))).await;
    assert_eq!((code, &v["state"]), (200, &json!("running")), "{v}");
    let (_, st) = call(a, "GET", "/api/stream/status", None).await;
    assert_eq!(st["gateway_request_id"], "two", "{st}");
    assert_eq!(st["params"], json!({"prompt": "two"}), "{st}");
    // Params merge shallowly, bare or wrapped.
    call(
        a,
        "POST",
        "/api/stream/params",
        Some(r#"{"threshold":200}"#),
    )
    .await;
    let (code, v) = call(
        a,
        "POST",
        "/api/stream/params",
        Some(r#"{"params":{"prompt":"x"}}"#),
    )
    .await;
    assert_eq!(
        (code, v),
        (200, json!({"params": {"prompt": "x", "threshold": 200}}))
    );
    assert_eq!(
        call(a, "POST", "/api/stream/stop", Some("{}")).await,
        (200, json!({"stopped": true, "clean": true}))
    );
    assert_eq!(
        call(a, "GET", "/api/stream/status", None).await.1["state"],
        "idle"
    );
    // The worker never deletes channels it did not create.
    assert_eq!(
        (
            s.state.channel("one").is_some(),
            s.state.channel("two").is_some()
        ),
        (true, true),
        "channels left: {:?}",
        s.state.channel_names()
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_worker_serves_until_shutdown() {
    // Find a free port, then hand it to run_worker as the CLI would.
    let port = free_addr();
    let (stop, shutdown) = trickle_edge::shutdown::ShutdownTrigger::new();
    let task = tokio::spawn(trickle_edge::worker::run_worker(port, shutdown));
    let health = wait_for_some("worker listening", || async {
        if tokio::net::TcpStream::connect(port).await.is_ok() {
            Some(call(port, "GET", "/health", None).await)
        } else {
            None
        }
    })
    .await;
    assert_eq!(health, (200, json!({"status": "IDLE"})));
    stop.trigger();
    within("run_worker returns", task).await.unwrap().unwrap();
}

/// pytrickle serves `/stream/*` by default, `/api/stream/*` with
/// `route_prefix="/api"`, and `/live-video-to-video` as a start alias: the
/// reference worker answers every form, as an orchestrator or agent may use
/// any of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pytrickle_route_form_is_served() {
    let w = worker().await;
    let a = w.local_addr();
    for path in ["/stream/status", "/api/stream/status"] {
        let (code, v) = call(a, "GET", path, None).await;
        assert_eq!((code, v["state"].as_str()), (200, Some("idle")), "{path}");
    }
    let start = r#"{"subscribe_url":"http://127.0.0.1:1/in","params":{"k":1}}"#;
    for path in ["/stream/start", "/api/stream/start", "/live-video-to-video"] {
        let (code, v) = call(a, "POST", path, Some(start)).await;
        assert_eq!(
            (code, v["state"].as_str()),
            (200, Some("running")),
            "{path}"
        );
    }
    let (code, v) = call(a, "POST", "/stream/params", Some(r#"{"k":2}"#)).await;
    assert_eq!((code, v["params"]["k"].as_i64()), (200, Some(2)));
    let (code, v) = call(a, "POST", "/stream/stop", Some("{}")).await;
    assert_eq!((code, v["stopped"].as_bool()), (200, Some(true)));
    // Only the stream routes take the prefix: no `/api/health`, no `/api/x`.
    let (code, _) = call(a, "GET", "/api/health", None).await;
    assert_eq!(code, 404);
    let (code, _) = call(a, "GET", "/api/other", None).await;
    assert_eq!(code, 404);
    w.shutdown().await;
}
