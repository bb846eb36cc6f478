//! The one JSON shape that every output sends or writes for an item, so a
//! log line, a webhook body, an MQTT payload and an exec stdin all agree.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::data::{Item, Payload};
use crate::rules::OutputAction;

/// `{"channel", "seq", "type", "payload", "rule"}` for an item (all but
/// `rule` are `null` when the effect carries no item). Binary payloads become
/// `{"size", "sha256"}` with the digest in lowercase hex, never the bytes.
pub fn item_json(rule: &str, item: Option<&Item>) -> Value {
    match item {
        Some(item) => json!({
            "channel": &*item.channel,
            "seq": item.seq,
            "type": item.event_type,
            "payload": payload_json(&item.payload),
            "rule": rule,
        }),
        None => json!({
            "channel": null,
            "seq": null,
            "type": null,
            "payload": null,
            "rule": rule,
        }),
    }
}

fn payload_json(payload: &Payload) -> Value {
    match payload {
        Payload::Json(v) => v.clone(),
        Payload::Text(t) => Value::String(t.clone()),
        Payload::Binary { size, sha256 } => json!({ "size": size, "sha256": hex(sha256) }),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// RFC 3339 UTC timestamp with milliseconds (`2026-11-25T15:21:09.123Z`),
/// from wall-clock time: log readers correlate it with other logs, so it is
/// not the monotonic `Instant` used everywhere else.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (H. Hinnant's public-domain algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Lowercase action name, as written in logs and configs.
pub(crate) fn action_name(a: &OutputAction) -> &'static str {
    match a {
        OutputAction::Activate => "activate",
        OutputAction::Deactivate => "deactivate",
        OutputAction::Pulse { .. } => "pulse",
        OutputAction::Deliver => "deliver",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(951_782_400_250); // leap day 2000
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.250Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_798_761_599); // 2026-12-31T23:59:59Z
        assert_eq!(rfc3339(t), "2026-12-31T23:59:59.000Z");
    }

    #[test]
    fn binary_payload_is_size_and_hex() {
        let item = Item {
            channel: "data".into(),
            seq: 7,
            received_at: tokio::time::Instant::now(),
            event_type: Some("blob".into()),
            payload: Payload::Binary {
                size: 3,
                sha256: [0xab; 32],
            },
        };
        let v = item_json("r", Some(&item));
        assert_eq!(v["payload"]["size"], 3);
        assert_eq!(v["payload"]["sha256"], "ab".repeat(32));
        assert_eq!(v["channel"], "data");
        assert_eq!(v["seq"], 7);
        assert_eq!(v["type"], "blob");
        assert_eq!(v["rule"], "r");
        assert_eq!(item_json("r", None)["seq"], Value::Null);
    }
}
