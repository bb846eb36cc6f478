//! The pytrickle worker HTTP API, on hyper 1.x. Every route is served both
//! as `/stream/…` (pytrickle's default) and `/api/stream/…` (pytrickle with
//! `route_prefix="/api"`); `/live-video-to-video` is an alias of start.
//!
//! | request | answer |
//! |---|---|
//! | `POST /stream/start` | 200 + status; a start while a stream runs stops it and starts the new one (restart, not 409: a caller that lost track of the worker can always start afresh) |
//! | `POST /stream/stop` | 200 `{"stopped": bool, "clean": bool}` (stopped: a stream was there; clean: its tasks ended within ~2 s without being aborted) |
//! | `POST /stream/params` | 200 `{"params": merged}`; 409 when no stream runs |
//! | `GET /stream/status` | 200 + [`Status`](super::Status) |
//! | `GET /health` | 200 `{"status":"OK"}` running, `"IDLE"` idle; 503 `"ERROR"` when the stream ended by itself |
//!
//! Bad bodies are 400 `{"error": "...", "field": "..."}` naming the field.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{debug, info};

use crate::http_serve::ServeLimits;
use crate::shutdown::{Shutdown, ShutdownTrigger};

use super::config::WorkerConfig;
use super::request::{RequestError, StartRequest, params_update};
use super::runner::{Worker, WorkerError};

/// Requests are a few hundred bytes of JSON; refuse anything absurd.
const MAX_BODY: usize = 1 << 20;

fn reply(status: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).expect("API bodies always serialise");
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .expect("static response parts are valid")
}

fn refuse(e: RequestError) -> Response<Full<Bytes>> {
    reply(
        StatusCode::BAD_REQUEST,
        &json!({"error": e.to_string(), "field": e.field}),
    )
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Response<Full<Bytes>>> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) => Err(refuse(RequestError {
            field: "body".into(),
            message: format!("cannot read (limit {MAX_BODY} bytes): {e}"),
        })),
    }
}

/// Routes one request. Never fails: every problem is an HTTP answer.
async fn handle(
    worker: Worker,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let route = (req.method().clone(), req.uri().path().to_string());
    debug!(method = %route.0, path = %route.1, "api request");
    // pytrickle serves `/stream/*` by default and `/api/stream/*` with
    // `route_prefix="/api"`, with `/live-video-to-video` as a start alias;
    // this worker answers all of them, like either setting.
    let path = match route.1.as_str() {
        "/live-video-to-video" => "/stream/start",
        p => p
            .strip_prefix("/api")
            .filter(|p| p.starts_with("/stream/"))
            .unwrap_or(p),
    };
    let resp = match (&route.0, path) {
        (&Method::POST, "/stream/start") => match read_body(req).await {
            Err(r) => r,
            Ok(body) => match StartRequest::from_json(&body) {
                Ok(start) => reply(StatusCode::OK, &worker.start(start).await),
                Err(e) => refuse(e),
            },
        },
        (&Method::POST, "/stream/stop") => {
            let outcome = worker.stop().await;
            let body = json!({"stopped": outcome.is_some(), "clean": outcome.unwrap_or(true)});
            reply(StatusCode::OK, &body)
        }
        (&Method::POST, "/stream/params") => match read_body(req).await {
            Err(r) => r,
            Ok(body) => {
                let update = serde_json::from_slice::<Value>(&body)
                    .map_err(|e| RequestError {
                        field: "body".into(),
                        message: format!("not JSON: {e}"),
                    })
                    .and_then(|v| params_update(&v));
                match update {
                    Err(e) => refuse(e),
                    Ok(update) => match worker.update_params(update).await {
                        Some(params) => reply(StatusCode::OK, &json!({"params": params})),
                        None => reply(
                            StatusCode::CONFLICT,
                            &json!({"error": "no stream is running"}),
                        ),
                    },
                }
            }
        },
        (&Method::GET, "/stream/status") => reply(StatusCode::OK, &worker.status().await),
        (&Method::GET, "/health") => {
            let health = worker.health().await;
            let code = if health == "ERROR" {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            reply(code, &json!({"status": health}))
        }
        (_, "/stream/start" | "/stream/stop" | "/stream/params" | "/stream/status" | "/health") => {
            reply(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({"error": "method not allowed"}),
            )
        }
        _ => reply(StatusCode::NOT_FOUND, &json!({"error": "not found"})),
    };
    Ok(resp)
}

/// A worker serving its HTTP API in the background: what `demo` and tests use.
#[derive(Debug)]
pub struct WorkerHandle {
    worker: Worker,
    local_addr: SocketAddr,
    stop: ShutdownTrigger,
    task: JoinHandle<()>,
}

impl WorkerHandle {
    /// Binds `listen` (port 0 picks a free one) and starts serving.
    pub async fn start(
        listen: SocketAddr,
        config: WorkerConfig,
    ) -> Result<WorkerHandle, WorkerError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| WorkerError::Bind {
                addr: listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| WorkerError::Bind {
            addr: listen,
            source,
        })?;
        let worker = Worker::new(config);
        let (stop, shutdown) = ShutdownTrigger::new();
        let task = tokio::spawn(serve(listener, worker.clone(), shutdown));
        info!(%local_addr, "worker API listening");
        Ok(WorkerHandle {
            worker,
            local_addr,
            stop,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://addr`, the base for `/api/stream/start`.
    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// The worker itself, for in-process control without HTTP.
    pub fn worker(&self) -> &Worker {
        &self.worker
    }

    /// Stops accepting, lets open requests finish, and stops the stream.
    pub async fn shutdown(self) {
        self.stop.trigger();
        let _ = self.task.await;
        self.worker.stop().await;
    }
}

async fn serve(listener: TcpListener, worker: Worker, shutdown: Shutdown) {
    let service = service_fn(move |req| handle(worker.clone(), req));
    crate::http_serve::serve(listener, service, ServeLimits::default(), shutdown).await;
}

/// Runs the worker API on `listen` until `shutdown` fires, then stops the
/// stream (`trickle-edge worker --listen ADDR`).
pub async fn run_worker(listen: SocketAddr, mut shutdown: Shutdown) -> Result<(), WorkerError> {
    let handle = WorkerHandle::start(listen, WorkerConfig::default()).await?;
    shutdown.recv().await;
    info!("worker shutting down");
    handle.shutdown().await;
    Ok(())
}
