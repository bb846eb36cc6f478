#!/usr/bin/env bash
# Soak: `trickle-edge run` (release build, static job, 1280x720 30 fps test
# camera, x264 at 2 Mbit/s) publishing into a local `trickle-edge serve`,
# while `trickle-edge publish` writes 50 detections a second into the data
# channel and a rule logs every one of them into a log output. Every
# SOAK_SAMPLE_SECONDS (10) the agent's RSS, open fds, OS threads and
# alive tokio tasks (`trickle_edge_tokio_alive_tasks` on /metrics) are
# sampled; at the end a table and the least-squares slope per hour of each
# (over the samples after SOAK_WARMUP_SECONDS, 60, when start-up
# allocations are done) is printed, plus one machine-readable `BENCH soak ...` line (bench/run).
# A leak shows as a slope that stays positive however long the soak runs.
# A 20-minute RSS slope is not one by itself: glibc keeps memory freed after
# each data segment's burst in its arenas, and that flattens (docs/
# benchmarks.md, "Soak (issue 15)": amplify with the knobs below and
# compare growth per item and per segment).
#
# RSS's anonymous part (heap, thread stacks: what a leak grows) is printed
# too; the rest of RSS is file-backed (the binary's and GStreamer plugins'
# code, paged in and out by the kernel as the machine's page cache moves).
#
# Usage: SOAK_MINUTES=20 bash bench/soak.sh   (after cargo build --release;
# TRICKLE_EDGE_BIN=path runs another build). Not part of CI.
# Knobs to amplify one path at a time (defaults in brackets):
#   SOAK_RATE [50] data items/s (0: no data writer, media only);
#   SOAK_WIDTH [1280], SOAK_HEIGHT [720], SOAK_FPS [30],
#   SOAK_BITRATE_KBPS [2000] the test camera and x264;
#   SOAK_GOP_SECONDS [1.0] the GOP, i.e. media segment, length.
# E.g. per-item growth: SOAK_RATE=1000 SOAK_WIDTH=160 SOAK_HEIGHT=120 SOAK_FPS=5.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${SOAK_MINUTES:-20}
EVERY=${SOAK_SAMPLE_SECONDS:-10}
WARMUP=${SOAK_WARMUP_SECONDS:-60}
RATE=${SOAK_RATE:-50} # data items per second
WIDTH=${SOAK_WIDTH:-1280}
HEIGHT=${SOAK_HEIGHT:-720}
FPS=${SOAK_FPS:-30}
KBPS=${SOAK_BITRATE_KBPS:-2000}
GOP=${SOAK_GOP_SECONDS:-1.0}
BIN=${TRICKLE_EDGE_BIN:-./target/release/trickle-edge}
PORT=${SOAK_PORT:-29493}
SUP=$((PORT + 1))
[ -x "$BIN" ] || { echo "soak: $BIN not found: run cargo build --release first" >&2; exit 2; }
TMP=$(mktemp -d)
SRV="" AGENT="" WRITER=""
cleanup() {
  for p in $WRITER $AGENT $SRV; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

$BIN serve --listen "127.0.0.1:$PORT" --channel cam --channel data=application/jsonl \
  --idle-timeout-secs 3600 >"$TMP/serve.log" 2>&1 & SRV=$!
cat >"$TMP/agent.toml" <<TOML
[camera]
source = "test"
width = $WIDTH
height = $HEIGHT
fps = $FPS
[encoder]
kind = "x264"
bitrate_kbps = $KBPS
gop_seconds = $GOP
[job]
mode = "static"
publish_url = "http://127.0.0.1:$PORT/ai/trickle/cam"
data_url = "http://127.0.0.1:$PORT/ai/trickle/data"
[supervisor]
listen = "127.0.0.1:$SUP"
[outputs.detections]
type = "log"
path = "$TMP/detections.jsonl"
max_bytes = 4194304
max_files = 2
[[rules]]
name = "every-ball"
match = { type = "detection", label = "ball", min_confidence = 0.5 }
then = [{ output = "detections" }]
TOML
sleep 0.3
$BIN run --config "$TMP/agent.toml" 2>"$TMP/agent.log" & AGENT=$!
for _ in $(seq 1 200); do grep -q "READY" "$TMP/agent.log" && break; sleep 0.05; done
grep -q "READY" "$TMP/agent.log" || { echo "soak: the agent did not become READY:" >&2; tail -20 "$TMP/agent.log" >&2; exit 1; }

# The writer: every second (paced by the clock), RATE lines of exactly
# LINE bytes, so that `publish --segment-bytes` (which cuts at a byte count,
# not at a newline) cuts one segment per second on a line boundary. A
# detection line is 103-108 bytes (n grows), so it is padded to 128: with
# 100 every segment began and ended in the middle of a line (two items
# lost and two decoder warnings per segment).
# With SOAK_RATE=0 there is no writer (media only).
LINE=128
if [ "$RATE" -gt 0 ]; then
(
  n=0
  next=$(date +%s%N)
  while :; do
    for _ in $(seq 1 $RATE); do
      n=$((n + 1))
      x=$(( (n * 7) % 90 ))
      printf "%-$((LINE - 1))s\n" "{\"type\":\"detection\",\"n\":$n,\"boxes\":[{\"label\":\"ball\",\"confidence\":0.9,\"x\":0.$x,\"y\":0.5,\"w\":0.1,\"h\":0.1}]}"
    done
    next=$((next + 1000000000))
    wait_ns=$((next - $(date +%s%N)))
    [ "$wait_ns" -gt 0 ] && sleep "$(printf '%d.%09d' $((wait_ns / 1000000000)) $((wait_ns % 1000000000)))"
  done
) | $BIN publish "http://127.0.0.1:$PORT/ai/trickle/data" --content-type application/jsonl \
      --segment-bytes $((RATE * LINE)) >/dev/null 2>"$TMP/publish.log" & WRITER=$!
fi

metric() { curl -s "http://127.0.0.1:$SUP/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
sample() {
  local t=$1 rss anon fds thr tasks items fires
  rss=$(awk '/^VmRSS/{print $2}' "/proc/$AGENT/status")
  anon=$(awk '/^RssAnon/{print $2}' "/proc/$AGENT/status")
  thr=$(awk '/^Threads/{print $2}' "/proc/$AGENT/status")
  fds=$(find "/proc/$AGENT/fd" -mindepth 1 -maxdepth 1 | wc -l)
  tasks=$(metric trickle_edge_tokio_alive_tasks)
  items=$(metric trickle_edge_data_items_total)
  fires=$(metric trickle_edge_rule_fires_total)
  echo "$t $rss $fds $thr ${tasks:-NaN} ${items:-0} ${fires:-0} $anon"
}

echo "# soak: run ${WIDTH}x${HEIGHT}@${FPS} x264 ${KBPS} kbit/s GOP ${GOP} s + $RATE data items/s -> rule -> log output, ${MINUTES} min, a sample every ${EVERY} s" >&2
t0=$(date +%s)
end=$((t0 + MINUTES * 60))
sleep 2 # past the first segment and the writer's first second
: >"$TMP/samples"
while :; do
  now=$(date +%s)
  kill -0 "$AGENT" 2>/dev/null || { echo "soak: the agent died:" >&2; tail -20 "$TMP/agent.log" >&2; exit 1; }
  [ -z "$WRITER" ] || kill -0 "$WRITER" 2>/dev/null || { echo "soak: the data writer died:" >&2; tail -20 "$TMP/publish.log" >&2; exit 1; }
  sample $((now - t0)) | tee -a "$TMP/samples" >&2
  [ "$now" -ge "$end" ] && break
  sleep $(( EVERY < end - now ? EVERY : end - now ))
done
segs=$(metric trickle_edge_segments_published_total)
dropped=$(metric trickle_edge_effects_dropped_total)
# Lines the log output wrote, from its own counter (the files on disk keep
# only the newest `max_files` after rotation, so counting lines there would
# undercount).
logged=$(metric 'trickle_edge_output_sent_total{output="detections"}')
kill -TERM "$AGENT"; wait "$AGENT" || true; AGENT=""

# Table and least-squares slopes (per hour) of each column against time,
# after the warm-up and, for RSS, also over the second half alone: a leak
# keeps its slope there, warm-up flattens.
awk -v minutes="$MINUTES" -v warmup="$WARMUP" -v segs="${segs:-0}" -v dropped="${dropped:-0}" -v logged="$logged" '
  function slope(c, from,    i, m, st, sv, stt, stv, d) {
    st=0; sv=0; stt=0; stv=0; m=0
    for (i=from; i<=n; i++) { m++; st+=t[i]; sv+=v[c,i]; stt+=t[i]*t[i]; stv+=t[i]*v[c,i] }
    d = m*stt - st*st
    return (d > 0) ? (m*stv - st*sv) / d * 3600 : 0
  }
  { n++; t[n]=$1; for (c=2; c<=5; c++) v[c,n]=$c; v[8,n]=$8; it[n]=$6; items=$6; fires=$7 }
  END {
    printf "%8s %10s %10s %6s %8s %8s %9s\n", "t (s)", "RSS (KiB)", "anon (KiB)", "fds", "threads", "tasks", "items"
    for (i=1; i<=n; i++) printf "%8d %10d %10d %6d %8d %8s %9d\n", t[i], v[2,i], v[8,i], v[3,i], v[4,i], v[5,i], it[i]
    split("2 8 3 4 5", col, " ")
    split("rss_kib anon_kib fds threads tasks", name, " ")
    # Slopes from the samples after the warm-up (all of them if too few).
    from = 1
    for (i=1; i<=n; i++) if (t[i] < warmup) from = i + 1
    if (n - from < 2) from = 1
    half = 1
    for (i=1; i<=n; i++) if (t[i] < t[n] / 2) half = i + 1
    if (n - half < 2) half = from
    printf "slopes over t >= %d s (%d samples):\n", t[from], n - from + 1
    line = "BENCH soak minutes=" minutes " samples=" n " duration_s=" t[n] " slope_from_s=" t[from] " items_per_s=" sprintf("%.1f", items / t[n])
    for (k=1; k<=5; k++) {
      c = col[k]; s = slope(c, from)
      printf "slope per hour: %-8s %+10.1f (first sample %s, last %s)\n", name[k], s, v[c,1], v[c,n]
      line = line sprintf(" %s_first=%s %s_last=%s %s_per_hour=%.1f", name[k], v[c,1], name[k], v[c,n], name[k], s)
    }
    for (k=1; k<=2; k++) {
      c = col[k]; s = slope(c, half)
      printf "second half (t >= %d s): %-8s %+10.1f per hour\n", t[half], name[k], s
      line = line sprintf(" %s_per_hour_2nd_half=%.1f", name[k], s)
    }
    printf "items %d (%.1f/s), rule fires %d, lines logged %d, effects dropped %s, segments published %s\n", items, items / t[n], fires, logged, dropped, segs
    print line " items=" items " fires=" fires " logged=" logged " dropped=" dropped " segments=" segs
  }' "$TMP/samples"
