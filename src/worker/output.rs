//! Results out: detections on the data channel, status on the events channel.
//!
//! Data follows pytrickle: `application/jsonl`, each line a JSON array of the
//! items produced during one batch interval (~333 ms), and a `[]` line when
//! nothing was written for `keepalive_interval`. Lines go into long-lived
//! segments: a segment is rolled after `lines_per_segment` lines or once it is
//! `segment_max_age` old (checked when a line is written), which keeps the
//! request count low while a reader joining late waits at most that long
//! for a fresh segment. Each line is handed to the HTTP body as soon as it is
//! made, so readers see it at once even though the segment is still open.
//!
//! Events follow Livepeer's ai-runner: one JSON object per segment, a status
//! every `status_interval`, wrapped as
//! `{"queue_event_type": "ai_stream_status", "event": {"type": "status", ...}}`
//! (the shape of `fixtures/data-channel/good/event-wrapped-status.json`).
//! The gateway treats 30 s without an event as a dead pipeline, so this
//! doubles as the worker's heartbeat.

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tracing::{debug, warn};

use super::session::{Ctx, now_ms};
use crate::trickle::{Publisher, PublisherOptions, SegmentUpload};

/// Connects a publisher, retrying transient failures with backoff until the
/// stream is cancelled. `None` when the channel does not exist (terminal).
pub(crate) async fn connect_publisher(
    ctx: &Ctx,
    url: &str,
    content_type: &str,
) -> Option<Publisher> {
    let opts = PublisherOptions {
        client: ctx.config.client.clone(),
        content_type: content_type.into(),
        ..Default::default()
    };
    let mut backoff = ctx.config.restart_backoff.start();
    loop {
        match Publisher::connect(url, opts.clone()).await {
            Ok(p) => return Some(p),
            Err(e) if e.is_terminal() => {
                ctx.stats.error(&e);
                return None;
            }
            Err(e) => {
                warn!(url, error = %e, "cannot connect; retrying");
                backoff.wait().await;
            }
        }
    }
}

/// An open data segment and how much it holds.
struct OpenSegment {
    writer: SegmentUpload,
    lines: usize,
    opened: Instant,
}

/// Writes one JSONL line, opening or rolling the segment as needed.
async fn write_line(
    ctx: &Ctx,
    publisher: &mut Publisher,
    open: &mut Option<OpenSegment>,
    line: Bytes,
) {
    if open.is_none() {
        match publisher.next_segment().await {
            Ok(writer) => {
                *open = Some(OpenSegment {
                    writer,
                    lines: 0,
                    opened: Instant::now(),
                })
            }
            Err(e) => return ctx.stats.error(&e),
        }
    }
    let Some(seg) = open.as_mut() else { return };
    if let Err(e) = seg.writer.write(line).await {
        *open = None;
        return ctx.stats.error(&e);
    }
    seg.lines += 1;
    if seg.lines >= ctx.config.lines_per_segment
        || seg.opened.elapsed() >= ctx.config.segment_max_age
    {
        finish(ctx, open.take()).await;
    }
}

async fn finish(ctx: &Ctx, open: Option<OpenSegment>) {
    if let Some(seg) = open
        && let Err(e) = seg.writer.finish().await
    {
        ctx.stats.error(&e);
    }
}

/// Batches detection items into JSONL lines on `data_url`.
pub(crate) async fn data_task(ctx: Ctx, url: String, mut items: mpsc::Receiver<Value>) {
    let connected = tokio::select! {
        _ = ctx.cancelled() => return,
        p = connect_publisher(&ctx, &url, "application/jsonl") => p,
    };
    let Some(mut publisher) = connected else {
        return;
    };
    let mut open = None;
    let mut batch = Vec::new();
    let mut tick = tokio::time::interval(ctx.config.batch_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_line = Instant::now();
    loop {
        tokio::select! {
            _ = ctx.cancelled() => break,
            item = items.recv() => match item {
                Some(v) => batch.push(v),
                None => break,
            },
            _ = tick.tick() => {
                let keepalive = last_line.elapsed() >= ctx.config.keepalive_interval;
                if batch.is_empty() && !keepalive {
                    continue;
                }
                let mut line = serde_json::to_vec(&Value::Array(std::mem::take(&mut batch)))
                    .expect("JSON values always serialise");
                line.push(b'\n');
                debug!(bytes = line.len(), "data line");
                write_line(&ctx, &mut publisher, &mut open, Bytes::from(line)).await;
                last_line = Instant::now();
            }
        }
    }
    // Finish the open segment so readers get a clean end, not a reset.
    finish(&ctx, open).await;
}

/// The ai-runner status event for the current state of the stream.
fn status_event(ctx: &Ctx) -> Value {
    let s = &ctx.stats;
    json!({
        "queue_event_type": "ai_stream_status",
        "event": {
            "type": "status",
            "pipeline": ctx.config.pipeline_name,
            "timestamp": now_ms(),
            "inference_status": {
                "fps": s.fps(),
                "last_error": s.last_error(),
                "restart_count": s.restart_count.load(Ordering::Relaxed),
                "last_params": Value::Object(ctx.params.borrow().clone()),
            },
            "input_status": {
                "last_input_time": s.last_input_ms(),
                "segments": s.segments_in.load(Ordering::Relaxed),
            },
        }
    })
}

/// Publishes a status event every `status_interval`, the first at once.
pub(crate) async fn events_task(ctx: Ctx, url: String) {
    let connected = tokio::select! {
        _ = ctx.cancelled() => return,
        p = connect_publisher(&ctx, &url, "application/json") => p,
    };
    let Some(mut publisher) = connected else {
        return;
    };
    let mut tick = tokio::time::interval(ctx.config.status_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ctx.cancelled() => return,
            _ = tick.tick() => {}
        }
        let body = Bytes::from(status_event(&ctx).to_string());
        let result = async {
            let mut w = publisher.next_segment().await?;
            w.write(body).await?;
            w.finish().await
        }
        .await;
        if let Err(e) = result {
            let terminal = e.is_terminal();
            ctx.stats.error(&e);
            if terminal {
                return;
            }
        }
    }
}
