//! The data-channel fixtures in `tests/fixtures/data-channel` and generated
//! hostile inputs, decoded through the public `data` API.

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::time::{Duration, Instant};
use trickle_edge::data::{DecodeLimits, DecodeStats, Item, Payload, SegmentDecoder};

use support::tracing::with_warnings;

const JSONL: Option<&str> = Some("application/jsonl");
const JSON: Option<&str> = Some("application/json");

fn fixture(rel: &str) -> Vec<u8> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data-channel");
    let path = dir.join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every decoder of these tests: the decoder logs, and a capture on one
/// test's thread needs the kit's global floor under it (see
/// `support::tracing::install_floor`) from before the first log line.
fn decoder(channel: Arc<str>, seq: i64, ct: Option<&str>, limits: DecodeLimits) -> SegmentDecoder {
    support::tracing::install_floor();
    SegmentDecoder::new(channel, seq, ct, limits)
}

/// Decodes `bytes` as one segment in chunks of `chunk` bytes.
fn decode_chunked(
    bytes: &[u8],
    ct: Option<&str>,
    chunk: usize,
    now: Instant,
) -> (Vec<Item>, DecodeStats) {
    let mut dec = decoder("data".into(), 7, ct, DecodeLimits::default());
    let mut items = Vec::new();
    for c in bytes.chunks(chunk.max(1)) {
        items.extend(dec.push(c, now));
    }
    let (rest, stats) = dec.finish(now);
    items.extend(rest);
    (items, stats)
}

fn decode(bytes: &[u8], ct: Option<&str>) -> (Vec<Item>, DecodeStats) {
    decode_chunked(bytes, ct, usize::MAX, Instant::now())
}

fn json_of(item: &Item) -> &serde_json::Value {
    item.json_payload().expect("a JSON item")
}

#[test]
fn good_fixtures_decode_without_warnings() {
    let cases: [(&str, Option<&str>, usize); 9] = [
        ("data-batches.jsonl", JSONL, 3),
        ("data-string-batches.jsonl", JSONL, 2),
        ("data-objects.jsonl", JSONL, 2),
        ("event-detection.json", JSON, 1),
        ("event-heartbeat.json", JSON, 1),
        ("event-metrics.json", JSON, 1),
        ("event-transcription.json", JSON, 1),
        ("event-wrapped-status.json", JSON, 1),
        ("text-plain.txt", Some("text/plain"), 1),
    ];
    for (name, ct, count) in cases {
        let ((items, stats), warnings) =
            with_warnings(|| decode(&fixture(&format!("good/{name}")), ct));
        assert_eq!(items.len(), count, "{name}");
        assert_eq!(stats.items, count as u64, "{name}");
        assert_eq!(stats.warnings(), 0, "{name}: {stats:?}");
        assert!(warnings.is_empty(), "{name}: {warnings:?}");
        for item in &items {
            assert_eq!((&*item.channel, item.seq), ("data", 7));
        }
    }
}

#[test]
fn data_batches_are_flattened_and_keepalive_counted() {
    let (items, stats) = decode(&fixture("good/data-batches.jsonl"), JSONL);
    assert_eq!(stats.keepalive, 1);
    let types: Vec<_> = items.iter().map(|i| i.item_type().unwrap()).collect();
    assert_eq!(types, ["detection", "detection", "transcription"]);
    assert_eq!(json_of(&items[0])["boxes"][0]["label"], "person");
    assert_eq!(json_of(&items[1])["timestamp"], 12.5);
    assert_eq!(json_of(&items[2])["text"], "hello");
}

/// pytrickle's `send_data(str)` / `publish_data(json.dumps(...))` puts the
/// caller's JSON text into the batch as strings: decoded, and counted.
#[test]
fn string_batch_elements_holding_json_objects_are_items() {
    let (items, stats) = decode(&fixture("good/data-string-batches.jsonl"), JSONL);
    assert_eq!(stats.json_strings, 1, "{stats:?}");
    assert_eq!(stats.keepalive, 1);
    assert_eq!(items[0].item_type(), Some("detection"));
    assert_eq!(json_of(&items[0])["boxes"][0]["box"][3], 0.4);
    assert_eq!(items[1].item_type(), Some("metrics"));
}

#[test]
fn a_python_repr_string_is_named_as_such() {
    let bytes = fixture("bad/python-repr-batch.jsonl");
    let ((items, stats), warnings) = with_warnings(|| decode(&bytes, JSONL));
    assert_eq!(items.len(), 1, "the object element is kept");
    assert_eq!(
        (stats.invalid_json, stats.json_strings),
        (1, 0),
        "{stats:?}"
    );
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("Python repr") && warnings[0].contains("json.dumps"),
        "{}",
        warnings[0]
    );
}

#[test]
fn data_objects_and_events_keep_their_fields() {
    let (items, _) = decode(&fixture("good/data-objects.jsonl"), JSONL);
    assert_eq!(json_of(&items[0])["boxes"][0]["label"], "car");
    assert_eq!(items[1].item_type(), Some("metrics"));

    let (items, _) = decode(&fixture("good/event-detection.json"), JSON);
    assert_eq!(json_of(&items[0])["boxes"].as_array().unwrap().len(), 2);
    assert_eq!(items[0].event_type.as_deref(), Some("detection"));

    let (items, _) = decode(&fixture("good/event-metrics.json"), JSON);
    assert_eq!(json_of(&items[0])["occupancy"]["zone_a"], 2);

    let (items, _) = decode(&fixture("good/event-transcription.json"), JSON);
    assert_eq!(json_of(&items[0])["text"], "open the gate please");

    let (items, _) = decode(&fixture("good/event-heartbeat.json"), JSON);
    assert_eq!(items[0].item_type(), Some("heartbeat"));
}

#[test]
fn wrapped_status_event_is_unwrapped() {
    let (items, _) = decode(&fixture("good/event-wrapped-status.json"), JSON);
    let item = &items[0];
    assert_eq!(item.event_type.as_deref(), Some("ai_stream_status"));
    assert_eq!(item.item_type(), Some("status"));
    assert_eq!(json_of(item)["pipeline"], "yolo-detector");
    assert!(json_of(item).get("queue_event_type").is_none());
}

#[test]
fn text_fixture_is_a_text_item() {
    let (items, _) = decode(
        &fixture("good/text-plain.txt"),
        Some("text/plain; charset=utf-8"),
    );
    assert_eq!(
        items[0].payload,
        Payload::Text("person detected at the front door".into())
    );
}

#[test]
fn json_fixtures_sniff_the_same_without_content_type() {
    for name in [
        "event-detection.json",
        "event-wrapped-status.json",
        "text-plain.txt",
    ] {
        let bytes = fixture(&format!("good/{name}"));
        let declared = if name.ends_with(".txt") {
            Some("text/plain")
        } else {
            JSON
        };
        let (a, _) = decode(&bytes, declared);
        let (b, _) = decode_chunked(&bytes, None, 1, a[0].received_at);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].payload, b[0].payload, "{name}");
        assert_eq!(a[0].event_type, b[0].event_type, "{name}");
    }
}

/// Bad fixtures, each fed as the channel that would carry it declares:
/// `.jsonl` on the data channel, `.json`/`.bin` on the events channel (JSON).
const BAD: [(&str, Option<&str>, usize, &str); 14] = [
    ("binary.bin", JSON, 0, "invalid_utf8"),
    ("broken-line.jsonl", JSONL, 2, "invalid_json"),
    ("empty.json", JSON, 0, "empty"),
    ("gzip-body.json", JSON, 0, "invalid_utf8"),
    ("lone-surrogate.json", JSON, 0, "invalid_json"),
    ("utf16-bom.json", JSON, 0, "invalid_utf8"),
    ("utf16-no-bom.json", JSON, 0, "invalid_json"),
    ("utf8-bom.json", JSON, 0, "invalid_json"),
    ("invalid-utf8.json", JSON, 0, "invalid_utf8"),
    ("mixed-array.jsonl", JSONL, 1, "non_object"),
    ("nan.json", JSON, 0, "invalid_json"),
    ("python-repr-batch.jsonl", JSONL, 1, "invalid_json"),
    ("truncated.json", JSON, 0, "truncated"),
    ("wrong-types.json", JSON, 1, "wrong_types"),
];

fn reason_count(stats: &DecodeStats, reason: &str) -> u64 {
    match reason {
        "invalid_utf8" => stats.invalid_utf8,
        "invalid_json" => stats.invalid_json,
        "empty" => stats.empty,
        "non_object" => stats.non_object,
        "truncated" => stats.truncated,
        "wrong_types" => stats.wrong_types,
        other => panic!("unknown reason {other}"),
    }
}

#[test]
fn each_bad_fixture_costs_one_warning_and_one_counter() {
    for (name, ct, count, reason) in BAD {
        let bytes = fixture(&format!("bad/{name}"));
        for chunk in [usize::MAX, 1, 5] {
            let ((items, stats), warnings) =
                with_warnings(|| decode_chunked(&bytes, ct, chunk, Instant::now()));
            assert_eq!(items.len(), count, "{name} chunk {chunk}");
            assert_eq!(stats.warnings(), 1, "{name}: {stats:?}");
            assert_eq!(reason_count(&stats, reason), 1, "{name}: {stats:?}");
            assert_eq!(warnings.len(), 1, "{name}: {warnings:?}");
            let w = &warnings[0];
            for needle in [
                "channel=data",
                "seq=7",
                "line=",
                &format!("reason={reason}"),
            ] {
                assert!(w.contains(needle), "{name}: {w} lacks {needle}");
            }
        }
    }
}

/// The parser says what is wrong ("expected value at line 1 column 1");
/// these say why, for mistakes a sender's code makes.
#[test]
fn decode_errors_name_the_likely_cause() {
    let cases = [
        ("utf8-bom.json", "UTF-8 byte-order mark"),
        ("utf16-bom.json", "UTF-16 byte-order mark"),
        ("utf16-no-bom.json", "UTF-16 text without a byte-order mark"),
        ("gzip-body.json", "gzip's magic bytes"),
        ("lone-surrogate.json", "lone surrogate"),
    ];
    for (name, hint) in cases {
        let bytes = fixture(&format!("bad/{name}"));
        let (_, warnings) = with_warnings(|| decode(&bytes, JSON));
        assert_eq!(warnings.len(), 1, "{name}: {warnings:?}");
        assert!(warnings[0].contains(hint), "{name}: {}", warnings[0]);
    }
    // No hint where none applies: a plain syntax error stays as it was.
    let (_, warnings) = with_warnings(|| decode(&fixture("bad/nan.json"), JSON));
    assert!(!warnings[0].contains("hint:"), "{}", warnings[0]);
}

#[test]
fn bad_fixtures_keep_their_good_lines() {
    let (items, _) = decode(&fixture("bad/broken-line.jsonl"), JSONL);
    assert_eq!(items[0].item_type(), Some("detection"));
    assert_eq!(json_of(&items[1])["people_count"], 1);
    let (_, warnings) = with_warnings(|| decode(&fixture("bad/broken-line.jsonl"), JSONL));
    assert!(warnings[0].contains("line=2"), "{warnings:?}");

    let (items, _) = decode(&fixture("bad/mixed-array.jsonl"), JSONL);
    assert_eq!(json_of(&items[0]), &json!({"type": "ok"}));

    let (items, _) = decode(&fixture("bad/wrong-types.json"), JSON);
    assert_eq!(json_of(&items[0])["boxes"], "not-a-list");
}

#[test]
fn segment_after_a_bad_one_decodes_normally() {
    let mut total = DecodeStats::default();
    for (name, ct, _, _) in BAD {
        let (_, stats) = decode(&fixture(&format!("bad/{name}")), ct);
        total.add(&stats);
        let (items, stats) = decode(&fixture("good/data-batches.jsonl"), JSONL);
        assert_eq!(items.len(), 3, "after {name}");
        assert_eq!(stats.warnings(), 0);
        total.add(&stats);
    }
    assert_eq!(total.warnings(), BAD.len() as u64);
    assert_eq!(total.items, 3 * BAD.len() as u64 + 5);
}

#[test]
fn binary_payloads_are_summarised() {
    let bytes = fixture("bad/binary.bin");
    let sha: [u8; 32] = Sha256::digest(&bytes).into();
    let expected = Payload::Binary {
        size: 20,
        sha256: sha,
    };
    for ct in [None, Some("application/octet-stream"), Some("image/png")] {
        let ((items, stats), warnings) =
            with_warnings(|| decode_chunked(&bytes, ct, 3, Instant::now()));
        assert_eq!(items.len(), 1, "{ct:?}");
        assert_eq!(items[0].payload, expected, "{ct:?}");
        assert_eq!(stats.warnings(), 0);
        assert!(warnings.is_empty());
    }
}

#[test]
fn four_mib_line_is_skipped_without_being_held() {
    let limits = DecodeLimits::default();
    let mut input = b"{\"type\":\"before\"}\n{\"pad\":\"".to_vec();
    input.resize(input.len() + 4 * 1024 * 1024, b'x');
    input.extend_from_slice(b"\"}\n{\"type\":\"after\"}\n");
    let chunk = 64 * 1024;
    let ((items, stats), warnings) = with_warnings(|| {
        let mut dec = decoder("data".into(), 1, JSONL, limits);
        let mut items = Vec::new();
        for c in input.chunks(chunk) {
            items.extend(dec.push(c, Instant::now()));
            assert!(dec.buffered_capacity() <= limits.max_line_bytes + chunk);
        }
        let (rest, stats) = dec.finish(Instant::now());
        items.extend(rest);
        (items, stats)
    });
    let types: Vec<_> = items.iter().map(|i| i.item_type().unwrap()).collect();
    assert_eq!(types, ["before", "after"]);
    assert_eq!((stats.oversize, stats.warnings()), (1, 1));
    assert!(warnings[0].contains("line=2") && warnings[0].contains("reason=oversize"));
}

#[test]
fn four_mib_json_segment_is_skipped() {
    let mut input = b"{\"pad\":\"".to_vec();
    input.resize(4 * 1024 * 1024, b'x');
    input.extend_from_slice(b"\"}");
    let ((items, stats), warnings) =
        with_warnings(|| decode_chunked(&input, JSON, 4096, Instant::now()));
    assert!(items.is_empty());
    assert_eq!(
        (stats.oversize, stats.warnings(), warnings.len()),
        (1, 1, 1)
    );
    // Unknown type: too big to sniff, so it is summarised as binary.
    let (items, stats) = decode_chunked(&input, None, 4096, Instant::now());
    assert!(matches!(items[0].payload, Payload::Binary { size, .. } if size == input.len()));
    assert_eq!(stats.warnings(), 0);
}

#[test]
fn json_nested_100_000_levels_is_skipped_without_crashing() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let lines = format!("{{\"type\":\"a\"}}\n{deep}\n{{\"type\":\"b\"}}\n");
    let ((items, stats), warnings) = with_warnings(|| decode(lines.as_bytes(), JSONL));
    assert_eq!(items.len(), 2);
    assert_eq!(
        (stats.too_deep, stats.warnings(), warnings.len()),
        (1, 1, 1)
    );
    assert!(warnings[0].contains("line=2") && warnings[0].contains("reason=too_deep"));

    let deep_obj = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
    let (items, stats) = decode(deep_obj.as_bytes(), JSON);
    assert!(items.is_empty());
    assert_eq!(stats.too_deep, 1);
}

#[test]
fn depth_limit_is_exact() {
    let nested = |n: usize| format!("{}{}\n", "[".repeat(n), "]".repeat(n));
    // A single-element batch wrapping 63 more levels: 64 levels, accepted.
    let (_, stats) = decode(nested(64).as_bytes(), JSONL);
    assert_eq!(stats.too_deep, 0);
    let (_, stats) = decode(nested(65).as_bytes(), JSONL);
    assert_eq!(stats.too_deep, 1);
}

#[tokio::test(start_paused = true)]
async fn never_ending_segment_emits_each_line_as_it_completes() {
    let input = b"{\"n\":1}\n[]\n[{\"n\":2},{\"n\":3}]\n{\"n\":4}\n";
    let mut dec = decoder("data".into(), 3, JSONL, DecodeLimits::default());
    let mut emitted = Vec::new();
    for (i, byte) in input.iter().enumerate() {
        tokio::time::advance(Duration::from_millis(10)).await;
        let items = dec.push(std::slice::from_ref(byte), Instant::now());
        if *byte == b'\n' {
            for item in &items {
                assert_eq!(
                    item.received_at,
                    Instant::now(),
                    "emitted when its newline arrived"
                );
            }
        } else {
            assert!(items.is_empty(), "nothing before a line ends (byte {i})");
        }
        emitted.extend(
            items
                .into_iter()
                .map(|it| it.json_payload().unwrap()["n"].clone()),
        );
    }
    assert_eq!(emitted, [json!(1), json!(2), json!(3), json!(4)]);
    assert_eq!(dec.stats().keepalive, 1);
    // The segment is still open: a partial line is buffered, not emitted.
    assert!(dec.push(b"{\"n\":5", Instant::now()).is_empty());
    let (rest, stats) = dec.finish(Instant::now());
    assert!(rest.is_empty());
    assert_eq!((stats.items, stats.truncated), (4, 1));
}

#[test]
fn final_line_without_newline_is_decoded() {
    let (items, stats) = decode(b"{\"n\":1}\n{\"n\":2}", JSONL);
    assert_eq!(items.len(), 2);
    assert_eq!(stats.warnings(), 0);
}

#[test]
fn scalars_and_crlf_and_blank_lines() {
    let (items, stats) = decode(b"42\r\n\r\n  \n\"hi\"\n{\"type\":\"x\"}\r\n", JSONL);
    let payloads: Vec<_> = items.iter().map(json_of).cloned().collect();
    assert_eq!(payloads, [json!(42), json!("hi"), json!({"type": "x"})]);
    assert_eq!(stats.warnings(), 0);
}

#[test]
fn every_chunk_boundary_gives_identical_results() {
    let input = "{\"type\":\"a\",\"s\":\"caf\u{e9} \u{1f600}\"}\n[]\n\r\n[{\"type\":\"b\"},7]\n{\"type\":\n\
                 [{\"type\":\"c\"},{\"queue_event_type\":\"q\",\"event\":{\"k\":1}}]\r\n{\"type\":\"d\"}"
        .as_bytes();
    let now = Instant::now();
    let reference = decode_chunked(input, JSONL, usize::MAX, now);
    assert_eq!(reference.0.len(), 5);
    assert_eq!(
        (
            reference.1.keepalive,
            reference.1.non_object,
            reference.1.invalid_json
        ),
        (1, 1, 1)
    );
    for i in 0..=input.len() {
        for j in i..=input.len() {
            let mut dec = decoder("data".into(), 7, JSONL, DecodeLimits::default());
            let mut items = dec.push(&input[..i], now);
            items.extend(dec.push(&input[i..j], now));
            items.extend(dec.push(&input[j..], now));
            let (rest, stats) = dec.finish(now);
            items.extend(rest);
            assert_eq!(
                (&items, &stats),
                (&reference.0, &reference.1),
                "split at {i},{j}"
            );
        }
    }
}

#[test]
fn text_and_json_segments_have_limits_too() {
    let limits = DecodeLimits {
        max_line_bytes: 16,
        max_depth: 64,
    };
    let run = |bytes: &[u8], ct: Option<&str>| {
        with_warnings(|| {
            let mut dec = decoder("events".into(), 2, ct, limits);
            let mut items = dec.push(bytes, Instant::now());
            let (rest, stats) = dec.finish(Instant::now());
            items.extend(rest);
            (items, stats)
        })
    };
    let ((items, stats), w) = run(b"seventeen bytes!!", Some("text/plain"));
    assert!(items.is_empty());
    assert_eq!((stats.oversize, w.len()), (1, 1));
    let ((items, stats), w) = run(b"caf\xc3", Some("text/plain"));
    assert!(items.is_empty());
    assert_eq!((stats.invalid_utf8, w.len()), (1, 1));
    let ((items, stats), w) = run(b" \n\t ", JSON);
    assert!(items.is_empty());
    assert_eq!((stats.empty, w.len()), (1, 1));
    let ((_, stats), w) = run(b"{\n\"a\":\n1,,}", JSON);
    assert_eq!(stats.invalid_json, 1);
    assert!(
        w[0].contains("line=3"),
        "serde's line for a whole value: {w:?}"
    );
}

#[test]
fn wrong_types_are_judged_after_unwrapping() {
    let wrapped = br#"{"queue_event_type":"q","event":{"type":"detection","boxes":{}}}"#;
    let ((items, stats), w) = with_warnings(|| decode(wrapped, JSON));
    assert_eq!((items.len(), stats.wrong_types, w.len()), (1, 1, 1));
    assert!(w[0].contains("boxes"), "{w:?}");
}

/// Deterministic xorshift, so the randomised test needs no extra crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_inputs_and_chunkings_agree_and_never_panic() {
    let pieces: [&[u8]; 12] = [
        b"{\"type\":\"a\"}\n",
        b"[{\"n\":1},{\"n\":2}]\n",
        b"[]\n",
        b"\r\n",
        b"\n",
        b"{\"long\":\"0123456789abcdefghijklmnop\"}\n",
        b"[[[[[[[[[[1]]]]]]]]]]\n",
        b"{\"type\":\n",
        b"\xff\xfe\n",
        b"NaN\n",
        b"\"caf\xc3\xa9\"\n",
        b"{\"type\":\"unterminated\"",
    ];
    let limits = DecodeLimits {
        max_line_bytes: 24,
        max_depth: 8,
    };
    let now = Instant::now();
    let run = |input: &[u8], cuts: &[usize]| {
        let mut dec = decoder("data".into(), 0, JSONL, limits);
        let mut items = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain([input.len()].iter()) {
            items.extend(dec.push(&input[start..cut], now));
            assert!(dec.buffered_capacity() <= limits.max_line_bytes);
            start = cut;
        }
        let (rest, stats) = dec.finish(now);
        items.extend(rest);
        (items, stats)
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..300 {
        let mut input = Vec::new();
        for _ in 0..rng.below(12) {
            input.extend_from_slice(pieces[rng.below(pieces.len())]);
        }
        let reference = run(&input, &[]);
        for _ in 0..10 {
            let mut cuts: Vec<usize> = (0..rng.below(6))
                .map(|_| rng.below(input.len() + 1))
                .collect();
            cuts.sort_unstable();
            assert_eq!(run(&input, &cuts), reference, "cuts {cuts:?}");
        }
    }
}
