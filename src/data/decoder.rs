//! Incremental decoding of one trickle segment into `Item`s.
//!
//! A segment arrives as a stream of chunks of any size, possibly never ending
//! (a data channel's segment stays open while the pipeline writes to it), so
//! JSONL is decoded line by line as each `\n` arrives and only the current
//! line is ever buffered. Single-value payloads (JSON, text) are buffered up
//! to `max_line_bytes`; binary payloads are hashed as they stream, never kept.

use std::sync::Arc;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::depth::exceeds_depth;
use super::item::{Item, Payload};
use super::stats::{DecodeStats, SkipReason};

/// Bounds on what one payload may cost to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Longest JSONL line, or largest JSON/text segment, that is decoded;
    /// anything longer is skipped without being buffered.
    pub max_line_bytes: usize,
    /// Deepest nesting of arrays/objects accepted. serde_json refuses more
    /// than 128 levels by itself, so values above 127 act as 127.
    pub max_depth: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_line_bytes: 1024 * 1024,
            max_depth: 64,
        }
    }
}

/// How a segment's bytes are interpreted, chosen from its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `application/jsonl`, `application/x-ndjson`: one value per line.
    Lines,
    /// `application/json` (and `+json`): one value per segment.
    Json,
    /// `text/*`: one text item per segment.
    Text,
    /// Missing, empty or `application/octet-stream`: JSON if it parses,
    /// else text if UTF-8, else binary.
    Sniff,
    /// Any other type: size and SHA-256 only.
    Binary,
}

impl Mode {
    fn from_content_type(content_type: Option<&str>) -> Mode {
        let essence = content_type
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/jsonl" | "application/x-ndjson" | "application/ndjson" => Mode::Lines,
            "application/json" => Mode::Json,
            "" | "application/octet-stream" => Mode::Sniff,
            t if t.starts_with("application/") && t.ends_with("+json") => Mode::Json,
            t if t.starts_with("text/") => Mode::Text,
            _ => Mode::Binary,
        }
    }
}

/// Buffered bytes above this are released after the line that needed them,
/// so one large line does not pin a megabyte for the life of the segment.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Decodes one segment of one channel. Create one per segment; feed chunks
/// with [`push`](Self::push) as they arrive and call [`finish`](Self::finish)
/// when the segment ends (or is cut off).
///
/// Bad input never stops decoding: every skipped line or value costs exactly
/// one `tracing::warn!` (with channel, seq, line and reason) and one counter
/// in [`DecodeStats`]; the other items of the segment are still delivered.
#[derive(Debug)]
pub struct SegmentDecoder {
    channel: Arc<str>,
    seq: i64,
    limits: DecodeLimits,
    mode: Mode,
    /// The current line (Lines) or the whole payload so far (Json/Text/Sniff).
    buf: Vec<u8>,
    /// 1-based number of the line being assembled.
    line: u64,
    /// The current line/payload went over the limit and was already counted:
    /// drop bytes until the next `\n` (Lines) or the end of the segment.
    discarding: bool,
    /// Bytes seen in total, and their hash (Sniff/Binary only).
    size: usize,
    hasher: Option<Sha256>,
    stats: DecodeStats,
}

impl SegmentDecoder {
    /// `content_type` is the segment's `Content-Type` header, if any.
    pub fn new(
        channel: Arc<str>,
        seq: i64,
        content_type: Option<&str>,
        limits: DecodeLimits,
    ) -> SegmentDecoder {
        let mode = Mode::from_content_type(content_type);
        let hasher = matches!(mode, Mode::Sniff | Mode::Binary).then(Sha256::new);
        SegmentDecoder {
            channel,
            seq,
            limits,
            mode,
            buf: Vec::new(),
            line: 1,
            discarding: false,
            size: 0,
            hasher,
            stats: DecodeStats::default(),
        }
    }

    /// Feeds the next chunk; returns the items it completed (for JSONL, one
    /// per finished line; for other types, none until `finish`).
    pub fn push(&mut self, chunk: &[u8], now: Instant) -> Vec<Item> {
        let mut out = Vec::new();
        self.size += chunk.len();
        if let Some(h) = &mut self.hasher {
            h.update(chunk);
        }
        match self.mode {
            Mode::Lines => self.push_lines(chunk, now, &mut out),
            Mode::Json | Mode::Text | Mode::Sniff => self.push_whole(chunk),
            Mode::Binary => {}
        }
        out
    }

    /// Ends the segment: decodes a last unterminated line or the buffered
    /// value, and returns the remaining items with the segment's counters.
    pub fn finish(mut self, now: Instant) -> (Vec<Item>, DecodeStats) {
        let mut out = Vec::new();
        match self.mode {
            Mode::Lines => {
                if !self.discarding && !self.buf.is_empty() {
                    let line = std::mem::take(&mut self.buf);
                    self.decode_line(&line, false, now, &mut out);
                }
            }
            _ => self.finish_whole(now, &mut out),
        }
        (out, self.stats)
    }

    /// Counters so far (useful for a segment that never ends).
    pub fn stats(&self) -> &DecodeStats {
        &self.stats
    }

    /// Bytes of buffer currently allocated: stays within `max_line_bytes`
    /// whatever the input, which the tests check.
    pub fn buffered_capacity(&self) -> usize {
        self.buf.capacity()
    }

    fn push_lines(&mut self, mut chunk: &[u8], now: Instant, out: &mut Vec<Item>) {
        while let Some(pos) = chunk.iter().position(|&b| b == b'\n') {
            let (part, rest) = (&chunk[..pos], &chunk[pos + 1..]);
            if !self.discarding && self.append(part) {
                let line = std::mem::take(&mut self.buf);
                self.decode_line(&line, true, now, out);
                self.buf = line;
                self.buf.clear();
                self.buf.shrink_to(KEEP_CAPACITY);
            }
            self.discarding = false;
            self.line += 1;
            chunk = rest;
        }
        if !self.discarding {
            self.append(chunk);
        }
    }

    fn push_whole(&mut self, chunk: &[u8]) {
        if self.discarding {
            return;
        }
        if !self.append(chunk) && self.mode != Mode::Sniff {
            // Sniffing just falls back to binary (already hashed): no warning.
            self.skip(
                SkipReason::Oversize,
                format!("segment over {} bytes", self.limits.max_line_bytes),
            );
        }
    }

    /// Appends to the buffer unless that would pass `max_line_bytes`, in which
    /// case the buffer is released, `discarding` is set, the line is counted
    /// as oversize (JSONL only: whole payloads are counted by the caller) and
    /// `false` is returned. Capacity is grown by hand so that it never exceeds
    /// the limit either.
    fn append(&mut self, bytes: &[u8]) -> bool {
        let max = self.limits.max_line_bytes;
        let need = self.buf.len() + bytes.len();
        if need > max {
            self.buf = Vec::new();
            self.discarding = true;
            if self.mode == Mode::Lines {
                self.skip(SkipReason::Oversize, format!("line over {max} bytes"));
            }
            return false;
        }
        if need > self.buf.capacity() {
            let target = (self.buf.capacity() * 2).clamp(need, max);
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(bytes);
        true
    }

    /// Decodes one JSONL line. `terminated` is false for a last line that the
    /// segment ended without a `\n`: if that fails to parse for lack of
    /// input, it is counted as truncated rather than invalid.
    fn decode_line(&mut self, line: &[u8], terminated: bool, now: Instant, out: &mut Vec<Item>) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        if let Some(value) = self.parse_json(line, terminated) {
            self.emit(value, now, out);
        }
    }

    fn finish_whole(&mut self, now: Instant, out: &mut Vec<Item>) {
        let overflowed = self.discarding;
        if overflowed && self.mode != Mode::Sniff {
            return; // already counted as oversize
        }
        // Whitespace is no JSON value either; for text it is the payload.
        let blank = matches!(self.mode, Mode::Json | Mode::Sniff)
            && !overflowed
            && self.buf.iter().all(u8::is_ascii_whitespace);
        if self.size == 0 || blank {
            self.skip(SkipReason::Empty, "segment has no payload".into());
            return;
        }
        let buf = std::mem::take(&mut self.buf);
        match self.mode {
            Mode::Json => {
                if let Some(value) = self.parse_json(&buf, false) {
                    self.emit(value, now, out);
                }
            }
            Mode::Text => match String::from_utf8(buf) {
                Ok(text) => self.push_item(Payload::Text(text), now, out),
                Err(e) => {
                    let hint = encoding_hint(e.as_bytes()).unwrap_or_default();
                    self.skip(SkipReason::InvalidUtf8, format!("{e}{hint}"));
                }
            },
            Mode::Sniff if !overflowed => match std::str::from_utf8(&buf) {
                Ok(text) => {
                    let json = (!exceeds_depth(&buf, self.limits.max_depth))
                        .then(|| serde_json::from_str::<Value>(text).ok())
                        .flatten();
                    match json {
                        Some(value) => self.emit(value, now, out),
                        None => self.push_item(Payload::Text(text.to_owned()), now, out),
                    }
                }
                Err(_) => self.emit_binary(now, out),
            },
            Mode::Sniff | Mode::Binary => self.emit_binary(now, out),
            Mode::Lines => unreachable!("lines are finished by `finish`"),
        }
    }

    /// UTF-8 check, depth check, then parse; each failure is one skip.
    fn parse_json(&mut self, bytes: &[u8], terminated: bool) -> Option<Value> {
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let hint = encoding_hint(bytes).unwrap_or_default();
                self.skip(SkipReason::InvalidUtf8, format!("{e}{hint}"));
                return None;
            }
        };
        if exceeds_depth(bytes, self.limits.max_depth) {
            let max = self.limits.max_depth;
            self.skip(SkipReason::TooDeep, format!("nested deeper than {max}"));
            return None;
        }
        let parsed = serde_json::from_str::<Value>(text);
        if let (Err(e), false) = (&parsed, self.mode == Mode::Lines) {
            // A whole-segment value may span lines: report serde's line.
            self.line = e.line() as u64;
        }
        match parsed {
            Ok(v) => Some(v),
            Err(e) if e.is_eof() && !terminated => {
                self.skip(SkipReason::Truncated, e.to_string());
                None
            }
            Err(e) => {
                let hint = encoding_hint(bytes)
                    .or_else(|| surrogate_hint(text, &e))
                    .unwrap_or_default();
                self.skip(SkipReason::InvalidJson, format!("{e}{hint}"));
                None
            }
        }
    }

    /// Turns one parsed value into items. Arrays are pytrickle batches and
    /// are flattened; `[]` is a keepalive. Batch elements must be objects,
    /// or strings holding one JSON object: pytrickle's `send_data(str)` puts
    /// the caller's `json.dumps(...)` into the batch as a string. Other
    /// elements are dropped with one warning for the whole line. Any other
    /// top-level value (object or scalar) is one item.
    fn emit(&mut self, value: Value, now: Instant, out: &mut Vec<Item>) {
        let Value::Array(elements) = value else {
            return self.emit_value(value, now, out);
        };
        if elements.is_empty() {
            self.stats.keepalive += 1;
            return;
        }
        let total = elements.len();
        let mut dropped = 0;
        let mut python_repr = 0;
        let mut too_deep = 0;
        for element in elements {
            match element {
                Value::Object(_) => self.emit_value(element, now, out),
                Value::String(text) => match string_element(&text, self.limits.max_depth) {
                    StringElement::Object(v) => {
                        self.stats.json_strings += 1;
                        self.emit_value(v, now, out);
                    }
                    StringElement::PythonRepr => python_repr += 1,
                    StringElement::TooDeep => too_deep += 1,
                    StringElement::Other => dropped += 1,
                },
                _ => dropped += 1,
            }
        }
        if python_repr > 0 {
            self.skip(
                SkipReason::InvalidJson,
                format!(
                    "{python_repr} of {total} batch elements are strings that look like a \
                     Python repr ({{'key': ...}}), not JSON: the worker should send \
                     json.dumps(obj), not str(obj)"
                ),
            );
        }
        if too_deep > 0 {
            let max = self.limits.max_depth;
            let detail =
                format!("{too_deep} of {total} string batch elements nest deeper than {max}");
            self.skip(SkipReason::TooDeep, detail);
        }
        if dropped > 0 {
            self.skip(
                SkipReason::NonObject,
                format!("{dropped} of {total} batch elements are not objects"),
            );
        }
    }

    fn emit_value(&mut self, value: Value, now: Instant, out: &mut Vec<Item>) {
        let item = Item::json(self.channel.clone(), self.seq, now, value);
        // Checked after unwrapping, so a wrapped event's own fields are judged.
        if let Some(fields) = item.json_payload().and_then(wrong_types) {
            let detail = format!("delivered, but wrong type for {fields}");
            self.skip(SkipReason::WrongTypes, detail);
        }
        self.stats.items += 1;
        out.push(item);
    }

    fn emit_binary(&mut self, now: Instant, out: &mut Vec<Item>) {
        let sha256 = self.hasher.take().unwrap_or_default().finalize().into();
        let payload = Payload::Binary {
            size: self.size,
            sha256,
        };
        self.push_item(payload, now, out);
    }

    fn push_item(&mut self, payload: Payload, now: Instant, out: &mut Vec<Item>) {
        self.stats.items += 1;
        out.push(Item {
            channel: self.channel.clone(),
            seq: self.seq,
            received_at: now,
            event_type: None,
            payload,
        });
    }

    /// The one place a problem is logged and counted, so the two never drift.
    fn skip(&mut self, reason: SkipReason, detail: String) {
        self.stats.count(reason);
        tracing::warn!(
            channel = %self.channel,
            seq = self.seq,
            line = self.line,
            reason = reason.as_str(),
            %detail,
            "data payload problem"
        );
    }
}

/// Why bytes that should be UTF-8 JSON are not, when the bytes say it: a
/// sender's mistake named is one a user can fix from the log alone. The
/// text is appended to the parser's own message.
fn encoding_hint(bytes: &[u8]) -> Option<&'static str> {
    const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
    if bytes.starts_with(UTF8_BOM) {
        return Some(
            " (hint: it starts with a UTF-8 byte-order mark, EF BB BF; JSON on a trickle \
             channel is sent without one: Python's json.dumps never writes it, \
             open(..., encoding=\"utf-8-sig\") does)",
        );
    }
    if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        return Some(
            " (hint: it starts with a UTF-16 byte-order mark; JSON on a trickle channel \
             must be UTF-8: encode with .encode(\"utf-8\"), not \"utf-16\")",
        );
    }
    if bytes.starts_with(&[0x1F, 0x8B]) {
        return Some(
            " (hint: it starts with gzip's magic bytes 1F 8B: the body is compressed, and \
             trickle carries segments as written, with no Content-Encoding; send it \
             uncompressed)",
        );
    }
    // UTF-16 without a mark: ASCII text with a NUL after (LE) or before (BE)
    // nearly every character. A line split of such text starts anywhere.
    let sample = &bytes[..bytes.len().min(64)];
    let nuls = sample.iter().filter(|&&b| b == 0).count();
    if sample.len() >= 4 && nuls * 3 >= sample.len() {
        return Some(
            " (hint: every other byte is NUL, which is UTF-16 text without a byte-order \
             mark; JSON on a trickle channel must be UTF-8)",
        );
    }
    None
}

/// serde_json refuses a `\uD800`..`\uDFFF` escape without its pair, which
/// no valid Unicode string produces; name where such strings come from.
/// (serde_json calls it "unexpected end of hex escape" when a quote follows
/// the lone half, "lone leading surrogate" otherwise.)
fn surrogate_hint(text: &str, e: &serde_json::Error) -> Option<&'static str> {
    let msg = e.to_string();
    let about_escapes = msg.contains("surrogate") || msg.contains("hex escape");
    let has_surrogate = text.as_bytes().windows(4).any(|w| {
        w[0] == b'\\'
            && w[1] == b'u'
            && w[2].eq_ignore_ascii_case(&b'd')
            && matches!(w[3].to_ascii_lowercase(), b'8'..=b'9' | b'a'..=b'f')
    });
    (about_escapes && has_surrogate).then_some(
        " (hint: a \\uD800-\\uDFFF escape without its pair is not a Unicode character; \
         the sender serialised a string holding a lone surrogate, as Python does for \
         bytes decoded with errors=\"surrogateescape\"; clean the text before json.dumps)",
    )
}

/// What a string element of a batch holds.
enum StringElement {
    /// A JSON object, decoded.
    Object(Value),
    /// Not JSON, but shaped like a Python dict's repr (`{'a': 1}`).
    PythonRepr,
    /// Nested deeper than the decoder's limit.
    TooDeep,
    Other,
}

fn string_element(text: &str, max_depth: usize) -> StringElement {
    let trimmed = text.trim();
    if !trimmed.starts_with('{') {
        return StringElement::Other;
    }
    if exceeds_depth(trimmed.as_bytes(), max_depth) {
        return StringElement::TooDeep;
    }
    match serde_json::from_str::<Value>(trimmed) {
        Ok(v @ Value::Object(_)) => StringElement::Object(v),
        _ if trimmed.ends_with('}') && trimmed.contains('\'') => StringElement::PythonRepr,
        _ => StringElement::Other,
    }
}

/// Names the well-known fields (`type`, `timestamp`, `ts`, `boxes`) that are
/// present with the wrong JSON type, as rules would silently ignore them.
fn wrong_types(value: &Value) -> Option<String> {
    let obj = value.as_object()?;
    type Check = (&'static str, fn(&Value) -> bool);
    let checks: [Check; 4] = [
        ("type", Value::is_string),
        ("timestamp", Value::is_number),
        ("ts", Value::is_number),
        ("boxes", Value::is_array),
    ];
    let bad: Vec<&str> = checks
        .iter()
        .filter(|(k, ok)| obj.get(*k).is_some_and(|v| !ok(v)))
        .map(|(k, _)| *k)
        .collect();
    (!bad.is_empty()).then(|| bad.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(
            Mode::from_content_type(Some("application/jsonl")),
            Mode::Lines
        );
        assert_eq!(
            Mode::from_content_type(Some("application/x-ndjson")),
            Mode::Lines
        );
        assert_eq!(
            Mode::from_content_type(Some("Application/JSON; charset=utf-8")),
            Mode::Json
        );
        assert_eq!(
            Mode::from_content_type(Some("application/cloudevents+json")),
            Mode::Json
        );
        assert_eq!(Mode::from_content_type(Some("text/plain")), Mode::Text);
        assert_eq!(Mode::from_content_type(None), Mode::Sniff);
        assert_eq!(
            Mode::from_content_type(Some("application/octet-stream")),
            Mode::Sniff
        );
        assert_eq!(Mode::from_content_type(Some("image/png")), Mode::Binary);
    }

    #[test]
    fn wrong_types_lists_fields() {
        let v = serde_json::json!({"type": 1, "boxes": "x", "timestamp": 2});
        assert_eq!(wrong_types(&v).as_deref(), Some("type, boxes"));
        assert_eq!(wrong_types(&serde_json::json!({"type": "a"})), None);
    }

    #[test]
    fn capacity_growth_never_passes_limit() {
        let limits = DecodeLimits {
            max_line_bytes: 1000,
            max_depth: 8,
        };
        let mut d = SegmentDecoder::new("c".into(), 0, Some("application/jsonl"), limits);
        for _ in 0..999 {
            d.push(b"1", Instant::now());
            assert!(d.buffered_capacity() <= 1000);
        }
    }
}
