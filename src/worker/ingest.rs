//! Video in: follow the ingest channel, pass each segment through unchanged,
//! and feed its bytes to the decoder as they arrive.
//!
//! Pass-through is byte-exact and one output segment per input segment: a
//! real worker would publish its *processed* video here; the reference worker
//! publishes the original so the edge can check the full loop.

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::decode::Decoder;
use super::detect::{DetectorParams, detect};
use super::output::connect_publisher;
use super::session::{Ctx, Stats, now_ms};
use crate::trickle::{Publisher, SegmentUpload, Subscriber, SubscriberOptions};

/// Reads `subscribe_url` segment by segment until the stream is cancelled or
/// the channel ends (then the whole stream ends: there is nothing to analyse).
pub(crate) async fn ingest_task(
    ctx: Ctx,
    subscribe_url: String,
    publish_url: Option<String>,
    chunks: mpsc::Sender<Bytes>,
) {
    let opts = SubscriberOptions {
        client: ctx.config.client.clone(),
        // The segment being written now is delivered from its first byte, so
        // starting there loses nothing and begins at a keyframe.
        start_seq: -2,
        ..Default::default()
    };
    let mut sub = match Subscriber::new(&subscribe_url, opts) {
        Ok(s) => s,
        Err(e) => return end_stream(&ctx, format!("cannot subscribe to {subscribe_url}: {e}")),
    };
    let mut out = match publish_url {
        Some(url) => tokio::select! {
            _ = ctx.cancelled() => return,
            p = connect_publisher(&ctx, &url, "video/MP2T") => p,
        },
        None => None,
    };
    loop {
        let next = tokio::select! {
            _ = ctx.cancelled() => return,
            n = sub.next_segment() => n,
        };
        let mut seg = match next {
            Ok(Some(seg)) => seg,
            Ok(None) => return end_stream(&ctx, format!("ingest channel {subscribe_url} ended")),
            Err(e) => return end_stream(&ctx, format!("ingest {subscribe_url}: {e}")),
        };
        Stats::count(&ctx.stats.segments_in);
        debug!(seq = seg.seq, "ingest segment");
        let mut writer = open_output(&ctx, &mut out).await;
        loop {
            let chunk = tokio::select! {
                _ = ctx.cancelled() => {
                    if let Some(w) = writer {
                        w.abort();
                    }
                    return;
                }
                c = seg.chunk() => c,
            };
            match chunk {
                Ok(Some(bytes)) => {
                    ctx.stats.input_seen();
                    // The decoder is behind: skip bytes rather than stall the
                    // pass-through (it resyncs at the next segment's keyframe).
                    let _ = chunks.try_send(bytes.clone());
                    if let Some(w) = writer.as_mut()
                        && let Err(e) = w.write(bytes).await
                    {
                        ctx.stats.error(&e);
                        writer = None;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // A broken input segment must not become a clean but
                    // truncated output segment.
                    ctx.stats.error(&e);
                    if let Some(w) = writer.take() {
                        w.abort();
                    }
                    break;
                }
            }
        }
        if let Some(w) = writer {
            match w.finish().await {
                Ok(_) => Stats::count(&ctx.stats.segments_out),
                Err(e) => {
                    if e.is_terminal() {
                        out = None;
                    }
                    ctx.stats.error(&e);
                }
            }
        }
    }
}

/// Starts the output segment matching an input segment, if there is an
/// output. A terminal error (the channel is gone) ends the pass-through.
async fn open_output(ctx: &Ctx, out: &mut Option<Publisher>) -> Option<SegmentUpload> {
    let result = out.as_mut()?.next_segment().await;
    match result {
        Ok(w) => Some(w),
        Err(e) => {
            if e.is_terminal() {
                *out = None;
            }
            ctx.stats.error(&e);
            None
        }
    }
}

fn end_stream(ctx: &Ctx, reason: String) {
    info!(%reason, "stream ending");
    ctx.stats.error(reason);
    ctx.cancel();
}

/// Decodes the ingest bytes and runs the detector on every frame. A pipeline
/// that fails is rebuilt after a backoff delay (counted in `restart_count`);
/// the delay resets once frames flow again.
pub(crate) async fn media_task(
    ctx: Ctx,
    mut chunks: mpsc::Receiver<Bytes>,
    items: Option<mpsc::Sender<Value>>,
) {
    let mut backoff = ctx.config.restart_backoff.start();
    let mut params = ctx.params.subscribe();
    loop {
        match Decoder::start(ctx.config.analysis_width, ctx.config.analysis_height) {
            Ok((mut decoder, mut frames)) => loop {
                tokio::select! {
                    _ = ctx.cancelled() => return,
                    chunk = chunks.recv() => match chunk {
                        Some(bytes) => {
                            if let Err(e) = decoder.push(bytes) {
                                ctx.stats.error(e);
                                break;
                            }
                        }
                        None => return,
                    },
                    Some(frame) = frames.recv() => {
                        backoff.reset();
                        ctx.stats.frame_analysed();
                        let p = DetectorParams::from_params(&params.borrow_and_update());
                        if let Some(d) = detect(&frame, &p) {
                            Stats::count(&ctx.stats.detections);
                            if let Some(tx) = &items
                                && tx.try_send(d.to_json(now_ms())).is_err()
                            {
                                Stats::count(&ctx.stats.dropped_items);
                            }
                        }
                    }
                    failure = decoder.failure() => {
                        let e = failure.map_or("decode pipeline reached end of stream".into(), |e| e.to_string());
                        ctx.stats.error(e);
                        break;
                    }
                }
            },
            Err(e) => ctx.stats.error(e),
        }
        Stats::count(&ctx.stats.restart_count);
        tokio::select! {
            _ = ctx.cancelled() => return,
            _ = backoff.wait() => {}
        }
    }
}
