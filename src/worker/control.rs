//! The control channel: parameter updates from the edge.
//!
//! Each segment is one JSON object. `{"keep":"alive"}` (sent every ~10 s) is
//! ignored; anything else is a params update, bare or wrapped in `params`,
//! merged into the stream's params (the detector reads them on its next
//! frame). A broken payload costs one log line and a counter, never the
//! subscription.

use serde_json::Value;
use tracing::{info, warn};

use super::request::params_update;
use super::session::{Ctx, Stats};
use crate::trickle::{Subscriber, SubscriberOptions};

/// Control messages are small; anything bigger is refused, not buffered.
const MAX_CONTROL_BYTES: usize = 64 * 1024;

/// What one control segment means.
#[derive(Debug, PartialEq)]
pub(crate) enum Control {
    KeepAlive,
    Params(serde_json::Map<String, Value>),
}

/// Parses one control segment; the error is the log line.
pub(crate) fn parse(body: &[u8]) -> Result<Control, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    if v.get("keep").is_some() && v.as_object().is_some_and(|o| o.len() == 1) {
        return Ok(Control::KeepAlive);
    }
    params_update(&v)
        .map(Control::Params)
        .map_err(|e| e.to_string())
}

/// Follows `control_url` until the stream is cancelled or the channel ends.
pub(crate) async fn control_task(ctx: Ctx, url: String) {
    let opts = SubscriberOptions {
        client: ctx.config.client.clone(),
        // The latest update applies even if it was sent just before we came.
        start_seq: -2,
        ..Default::default()
    };
    let mut sub = match Subscriber::new(&url, opts) {
        Ok(s) => s,
        Err(e) => return ctx.stats.error(format!("control {url}: {e}")),
    };
    loop {
        let seg = tokio::select! {
            _ = ctx.cancelled() => return,
            s = sub.next_segment() => s,
        };
        let seg = match seg {
            Ok(Some(seg)) => seg,
            Ok(None) => return info!("control channel ended"),
            Err(e) => return ctx.stats.error(format!("control {url}: {e}")),
        };
        let seq = seg.seq;
        let body = tokio::select! {
            _ = ctx.cancelled() => return,
            b = seg.collect(MAX_CONTROL_BYTES) => b,
        };
        let parsed = match body {
            Ok(b) if b.is_empty() => continue,
            Ok(b) => parse(&b),
            Err(e) => Err(e.to_string()),
        };
        match parsed {
            Ok(Control::KeepAlive) => {}
            Ok(Control::Params(update)) => {
                let shown = Value::Object(update.clone());
                info!(seq, update = %shown, "params updated from control");
                Stats::count(&ctx.stats.control_updates);
                ctx.merge_params(update);
            }
            Err(e) => {
                warn!(seq, error = %e, "control message refused");
                Stats::count(&ctx.stats.control_rejected);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keepalive_updates_and_garbage() {
        assert_eq!(parse(br#"{"keep":"alive"}"#), Ok(Control::KeepAlive));
        let want = json!({"threshold": 200}).as_object().unwrap().clone();
        assert_eq!(
            parse(br#"{"threshold":200}"#),
            Ok(Control::Params(want.clone()))
        );
        assert_eq!(
            parse(br#"{"params":{"threshold":200}}"#),
            Ok(Control::Params(want))
        );
        assert!(parse(b"{oops").unwrap_err().contains("not JSON"));
        assert!(parse(b"[1,2]").is_err());
    }
}
