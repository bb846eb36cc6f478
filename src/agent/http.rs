//! The local supervisor endpoint: `/healthz` (JSON, per stage) and
//! `/metrics` (Prometheus text), and the status page (`status/page.rs`).
//! Loopback by default; other peers need the `[auth]` token.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::net::TcpListener;

use super::metrics::Exposition;
use super::stats::AgentStats;
use crate::http_serve::ServeLimits;
use crate::shutdown::Shutdown;
use crate::stage::StageHandle;
use crate::status::page::Body;

/// Who may read the endpoint (`status/access.rs`).
#[derive(Clone, Default)]
pub struct Access {
    /// Loopback peers need no token.
    pub trust_loopback: bool,
    /// The `[auth]` token; `None`: only trusted peers get answers.
    pub token: Option<String>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("trust_loopback", &self.trust_loopback)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Binds and serves in the background until `shutdown` fires; returns the
/// bound address and the serving stage.
pub async fn start(
    listen: SocketAddr,
    stats: Arc<AgentStats>,
    access: Access,
    shutdown: &Shutdown,
) -> std::io::Result<(SocketAddr, StageHandle)> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let connections = PerPeer {
        stats,
        access: Arc::new(access),
    };
    let stage = StageHandle::spawn("supervisor endpoint", shutdown, |s| {
        crate::http_serve::serve_connections(listener, connections, ServeLimits::default(), s)
    });
    Ok((addr, stage))
}

/// Gives each connection a service that knows its peer, for the token check.
struct PerPeer {
    stats: Arc<AgentStats>,
    access: Arc<Access>,
}

type Service = Box<
    dyn hyper::service::Service<
            Request<Incoming>,
            Response = Response<Body>,
            Error = Infallible,
            Future = std::future::Ready<Result<Response<Body>, Infallible>>,
        > + Send,
>;

impl crate::http_serve::Connections for PerPeer {
    type Io = tokio::net::TcpStream;
    type Body = Body;
    type Service = Service;

    fn open(&self, stream: tokio::net::TcpStream, peer: SocketAddr) -> (Self::Io, Self::Service) {
        let (stats, access) = (self.stats.clone(), self.access.clone());
        let svc = service_fn(move |req| {
            std::future::ready(Ok::<_, Infallible>(handle(&stats, &access, peer, req)))
        });
        (stream, Box::new(svc))
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

fn handle(
    stats: &Arc<AgentStats>,
    access: &Access,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    if !crate::status::page::is_public(req.uri().path())
        && crate::status::access::needs_token(peer.ip(), access.trust_loopback)
        && !crate::status::access::bearer_matches(
            req.headers()
                .get(header::AUTHORIZATION)
                .map(|v| v.as_bytes()),
            access.token.as_deref(),
        )
    {
        let mut r = reply(
            StatusCode::UNAUTHORIZED,
            "text/plain",
            "a bearer token is required from this address\n".into(),
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    match req.uri().path() {
        "/healthz" => {
            let (healthy, body) = healthz(stats);
            let status = if healthy {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            reply(status, "application/json", body.to_string())
        }
        "/metrics" => reply(StatusCode::OK, "text/plain; version=0.0.4", metrics(stats)),
        // The status page and its stream (status/page.rs).
        path => crate::status::page::route(stats, path)
            .unwrap_or_else(|| reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into())),
    }
}

/// Per-stage state as JSON, and whether the whole agent is healthy.
pub fn healthz(stats: &AgentStats) -> (bool, serde_json::Value) {
    let health = stats.health();
    let (media_ok, dead) = (health.media_ok, health.pipeline_dead);
    let last_item_ms = stats.data.last_item_unix_ms.load(Ordering::Relaxed);
    let body = serde_json::json!({
        "status": if media_ok && !dead { "ok" } else { "degraded" },
        "uptime_s": stats.started.elapsed().as_secs(),
        "media": {
            "state": if media_ok { "ok" } else { "stalled" },
            "segments_published": stats.media.segments_published.load(Ordering::Relaxed),
            "last_segment_seq": stats.media.last_seq.load(Ordering::Relaxed),
            "last_segment_age_s": stats.media.last_published_age().map(|d| d.as_secs_f64()),
            "dropped_gops": stats.dropped_gops(),
        },
        "data": {
            "items": stats.data.items.load(Ordering::Relaxed),
            "last_item_unix_ms": (last_item_ms > 0).then_some(last_item_ms),
            "decode_errors": stats.data.decode_errors.load(Ordering::Relaxed),
            "json_strings": stats.data.json_strings.load(Ordering::Relaxed),
        },
        "pipeline": {
            "state": if dead { "dead" } else { "alive" },
            "silent_s": stats.health.silent_for().as_secs_f64(),
        },
        "job": {
            "mode": stats.job_mode,
            "restarts": stats.job_restarts.load(Ordering::Relaxed),
            "restarts_unheard": stats.job_restarts_unheard.load(Ordering::Relaxed),
            "orchestrator": stats.livepeer.get().and_then(|l| l.orchestrator()),
            "last_failover": stats.livepeer.get().and_then(|l| l.last_failover()),
            "swap_backoffs": stats.livepeer.get().map(|l| l.swap_backoffs.load(Ordering::Relaxed)),
            "backing_off_until_unix_ms": stats.livepeer.get().and_then(|l| {
                let until = l.backing_off_until_unix_ms.load(Ordering::Relaxed);
                (until > 0).then_some(until)
            }),
            "byoc_payments": stats.byoc.get().map(|b| serde_json::json!({
                "sent": b.payments.load(Ordering::Relaxed),
                "failed": b.payment_failures.load(Ordering::Relaxed),
                "balance": b.balance(),
                "last_error": b.last_payment_error(),
            })),
        },
    });
    (health.healthy, body)
}

/// The Prometheus exposition of every counter and histogram.
pub fn metrics(stats: &AgentStats) -> String {
    let mut e = Exposition::default();
    let m = &stats.media;
    let d = &stats.data;
    let c = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    e.counter(
        "trickle_edge_segments_published_total",
        "Media segments confirmed by the trickle server.",
        c(&m.segments_published),
    );
    e.counter(
        "trickle_edge_bytes_published_total",
        "Media bytes confirmed by the trickle server.",
        c(&m.bytes_published),
    );
    e.counter(
        "trickle_edge_segment_failures_total",
        "Media segments that failed to publish.",
        c(&m.segment_failures),
    );
    e.counter(
        "trickle_edge_dropped_gops_total",
        "Whole GOPs dropped because the uplink was slower than the camera.",
        stats.dropped_gops(),
    );
    e.counter(
        "trickle_edge_publisher_restarts_total",
        "Times the publisher was rebuilt after a terminal error.",
        c(&m.publisher_restarts),
    );
    e.counter(
        "trickle_edge_reconnects_total",
        "Data and events channel reconnects.",
        c(&d.reconnects),
    );
    e.counter(
        "trickle_edge_data_segments_total",
        "Data and events segments received.",
        c(&d.segments),
    );
    e.counter(
        "trickle_edge_data_segments_skipped_total",
        "Data and events segments the server no longer held when asked (lost during an outage).",
        c(&d.segments_skipped),
    );
    e.counter(
        "trickle_edge_data_items_total",
        "Items decoded from data and events channels.",
        c(&d.items),
    );
    e.counter(
        "trickle_edge_decode_errors_total",
        "Lines or payloads skipped as undecodable.",
        c(&d.decode_errors),
    );
    e.counter(
        "trickle_edge_data_json_strings_total",
        "Items decoded from batch elements that were strings holding JSON.",
        c(&d.json_strings),
    );
    e.counter(
        "trickle_edge_data_segments_overtaken_total",
        "Data or events segments that stalled while a newer one began, read on past.",
        c(&d.stalled_overtaken),
    );
    e.counter(
        "trickle_edge_data_segments_abandoned_total",
        "Overtaken segments ended while still open (their unread rest is lost).",
        c(&d.stalled_abandoned),
    );
    e.counter(
        "trickle_edge_rule_fires_total",
        "Times a rule fired.",
        c(&d.rule_fires),
    );
    e.counter(
        "trickle_edge_items_out_of_order_total",
        "Items rules skipped: timestamp older than one already seen on the channel.",
        c(&d.out_of_order),
    );
    e.counter(
        "trickle_edge_items_untrusted_timestamp_total",
        "Items whose timestamp was too far ahead of this clock to order by.",
        c(&d.untrusted_timestamps),
    );
    e.counter(
        "trickle_edge_effects_total",
        "Effects queued on outputs (each action of a fire, and releases).",
        c(&d.effects),
    );
    e.counter(
        "trickle_edge_effects_dropped_total",
        "Effects dropped because an output queue was full.",
        c(&d.effects_dropped),
    );
    e.counter(
        "trickle_edge_pipeline_deaths_total",
        "Times the pipeline was declared dead (no events).",
        c(&stats.pipeline_deaths),
    );
    e.counter(
        "trickle_edge_job_restarts_total",
        "Job restarts after a dead pipeline.",
        c(&stats.job_restarts),
    );
    e.gauge(
        "trickle_edge_job_restarts_unheard",
        "Job restarts since the pipeline was last heard from (the restart backoff's step).",
        c(&stats.job_restarts_unheard) as f64,
    );
    if let Some(l) = stats.livepeer.get() {
        e.counter(
            "trickle_edge_livepeer_swaps_total",
            "Fresh Livepeer jobs started on another orchestrator after a job failed over.",
            c(&l.swaps),
        );
        e.counter(
            "trickle_edge_livepeer_swap_backoffs_total",
            "Back-offs after more than max_swaps swaps within swap_window (then discovery starts over).",
            c(&l.swap_backoffs),
        );
        e.gauge(
            "trickle_edge_livepeer_backing_off",
            "1 while the agent backs off after too many swaps, else 0.",
            if c(&l.backing_off_until_unix_ms) > 0 {
                1.0
            } else {
                0.0
            },
        );
        e.counter(
            "trickle_edge_livepeer_refusals_total",
            "Livepeer orchestrators that failed to answer or refused a start.",
            c(&l.refusals),
        );
    }
    if let Some(b) = stats.byoc.get() {
        e.counter(
            "trickle_edge_byoc_payments_total",
            "BYOC stream payments the orchestrator accepted (the start's included).",
            c(&b.payments),
        );
        e.counter(
            "trickle_edge_byoc_payment_failures_total",
            "BYOC stream payments that failed (signer, orchestrator or network).",
            c(&b.payment_failures),
        );
        if let Some(balance) = b.balance().and_then(|v| v.parse::<f64>().ok()) {
            e.gauge(
                "trickle_edge_byoc_balance",
                "The sender's balance for the capability at the orchestrator (Livepeer-Balance), last answered.",
                balance,
            );
        }
    }
    let outputs = stats.outputs();
    let counters = outputs.counters();
    let by = |f: fn(&crate::actions::OutputCounters) -> u64| {
        counters
            .iter()
            .map(|(k, v)| (k.clone(), f(v)))
            .collect::<Vec<_>>()
    };
    e.counter_by(
        "trickle_edge_output_sent_total",
        "Actions completed, per output.",
        "output",
        &by(|c| c.sent),
    );
    e.counter_by(
        "trickle_edge_output_errors_total",
        "Actions that failed, per output.",
        "output",
        &by(|c| c.failed),
    );
    e.counter_by(
        "trickle_edge_output_dropped_total",
        "Actions dropped by a full queue (the log output: by a full overflow file), per output.",
        "output",
        &by(|c| c.dropped),
    );
    e.counter_by(
        "trickle_edge_output_fired_total",
        "Effects handed to the output by the rules, per output.",
        "output",
        &by(|c| c.fired),
    );
    e.counter_by(
        "trickle_edge_output_spilled_total",
        "Effects the log output wrote through its overflow file (late, not lost), per output.",
        "output",
        &by(|c| c.spilled),
    );
    e.counter_by(
        "trickle_edge_output_coalesced_total",
        "GPIO levels replaced in the queue by a later level (not lost), per output.",
        "output",
        &by(|c| c.coalesced),
    );
    e.histogram(
        "trickle_edge_item_to_effect_seconds",
        "From an item decoded to its effects queued on outputs.",
        &d.item_to_effect,
    );
    e.histogram(
        "trickle_edge_segment_upload_seconds",
        "From a GOP's first byte to the server confirming the segment.",
        &m.segment_upload,
    );
    e.counter(
        "trickle_edge_snapshots_encoded_total",
        "JPEG snapshots encoded for the status page (only while a viewer is connected).",
        stats.media.snapshot.encoded(),
    );
    e.gauge(
        "trickle_edge_status_viewers",
        "Status pages connected to the live stream now.",
        stats.media.snapshot.viewers() as f64,
    );
    e.gauge(
        "trickle_edge_pipeline_silent_seconds",
        "Seconds since the last pipeline event.",
        stats.health.silent_for().as_secs_f64(),
    );
    // Tasks alive in the runtime serving this scrape (the agent's): a count
    // that only grows over hours is a task leak (bench/soak.sh samples it).
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        e.gauge(
            "trickle_edge_tokio_alive_tasks",
            "Tasks alive in the agent's tokio runtime.",
            rt.metrics().num_alive_tasks() as f64,
        );
    }
    e.finish()
}
