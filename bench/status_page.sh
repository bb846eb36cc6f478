#!/usr/bin/env bash
# What the status page costs (issue 16 item 4): CPU and RSS of `trickle-edge
# run` with the demo's setup (640x360 30 fps test camera, x264, the reference
# worker seeing the ball, a hold rule, a simulated GPIO line, a log output)
# with nobody watching, then with one viewer (bench/status_viewer.py: the
# page's SSE stream and every new snapshot JPEG, as page.js does), and the
# page load to the first frame.
#
# Per round, one agent process: SECS with no viewer, then a viewer connects
# (its page load timed: the first frame this agent ever encoded) and stays
# SECS. With TRICKLE_EDGE_BASELINE_BIN (a build without the status page),
# each round first runs that build SECS with no viewer, for the "no viewer
# costs nothing" comparison. Rounds alternate so load on a shared machine
# falls on every variant alike. After the rounds, LOADS more page loads on a
# fresh agent (each after the last viewer left).
#
# Only the agent process is measured (not the worker, nor the viewer).
# Prints one line per measurement, a summary, and `BENCH status_page ...`.
# Usage: bash bench/status_page.sh [seconds] [rounds]   (after cargo build
# --release; TRICKLE_EDGE_BIN=path runs another build)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-20}
ROUNDS=${2:-2}
LOADS=${STATUS_BENCH_LOADS:-5}
BIN=${TRICKLE_EDGE_BIN:-./target/release/trickle-edge}
BASE=${TRICKLE_EDGE_BASELINE_BIN:-}
PORT=${STATUS_BENCH_PORT:-29593}
SUP=$((PORT + 1))
[ -x "$BIN" ] || { echo "status_page: $BIN not found: run cargo build --release first" >&2; exit 2; }
TMP=$(mktemp -d)
WORKER="" AGENT="" VIEWER=""
cleanup() {
  for p in $VIEWER $AGENT $WORKER; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

$BIN worker --listen "127.0.0.1:$PORT" >"$TMP/worker.log" 2>&1 & WORKER=$!
cat >"$TMP/agent.toml" <<TOML
[camera]
source = "test"
width = 640
height = 360
fps = 30
[encoder]
kind = "x264"
bitrate_kbps = 800
gop_seconds = 1.0
[job]
mode = "worker"
worker_url = "http://127.0.0.1:$PORT"
listen = "127.0.0.1:0"
channel_prefix = "bench"
[supervisor]
listen = "127.0.0.1:$SUP"
[outputs.ball-left]
type = "gpio"
backend = "simulated"
line = "ball-left"
[outputs.events]
type = "log"
path = "$TMP/events.jsonl"
[[rules]]
name = "ball-in-left-third"
match = { type = "detection", label = "ball", min_confidence = 0.3, zone = { rect = [0.0, 0.0, 0.333, 1.0] } }
hold = "700ms"
then = [{ output = "ball-left", action = "hold" }, { output = "events" }]
TOML

tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14+$15}' "/proc/$AGENT/stat"; }
kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$AGENT/status"; }

# Starts `$1 run` and waits for READY (first segment published).
start_agent() {
  "$1" run --config "$TMP/agent.toml" 2>"$TMP/agent.err" & AGENT=$!
  for _ in $(seq 1 300); do grep -q "READY" "$TMP/agent.err" && break; sleep 0.05; done
  grep -q "READY" "$TMP/agent.err" || { echo "status_page: agent not ready:" >&2; tail -5 "$TMP/agent.err" >&2; exit 1; }
  sleep 3 # settle: the job's first items, the rule's first fires
}

stop_agent() {
  kill -TERM "$AGENT"; wait "$AGENT" || true; AGENT=""
}

# Measures the agent for SECS; prints "cpu_pct rss_mb hwm_mb".
measure() {
  local c0 c1 t0 t1
  c0=$(cpu_ticks); t0=$(date +%s.%N)
  sleep "$SECS"
  c1=$(cpu_ticks); t1=$(date +%s.%N)
  awk -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v tck="$tck" -v rss="$(kib VmRSS)" -v hwm="$(kib VmHWM)" \
    'BEGIN { printf "%.1f %.1f %.1f\n", 100*(c1-c0)/tck/(t1-t0), rss/1024, hwm/1024 }'
}

metric() {
  curl -s "http://127.0.0.1:$SUP/metrics" | awk -v m="$1" '$1 == m {print $2}'
}

: >"$TMP/rows"
: >"$TMP/loads"
for r in $(seq 1 "$ROUNDS"); do
  if [ -n "$BASE" ]; then
    start_agent "$BASE"
    read -r c rss hwm < <(measure)
    echo "round $r baseline (no status page), no viewer: ${c}% CPU, RSS ${rss} MB (peak ${hwm} MB)"
    echo "baseline $c $rss $hwm" >>"$TMP/rows"
    stop_agent
  fi
  start_agent "$BIN"
  read -r c rss hwm < <(measure)
  echo "round $r status page, no viewer: ${c}% CPU, RSS ${rss} MB (peak ${hwm} MB), snapshots encoded $(metric trickle_edge_snapshots_encoded_total)"
  echo "idle $c $rss $hwm" >>"$TMP/rows"
  python3 bench/status_viewer.py watch "127.0.0.1:$SUP" $((SECS + 10)) >"$TMP/viewer.out" & VIEWER=$!
  for _ in $(seq 1 200); do [ -s "$TMP/viewer.out" ] && break; sleep 0.05; done
  head -1 "$TMP/viewer.out" >>"$TMP/loads"
  sleep 3 # the branch open and encoding
  read -r c rss hwm < <(measure)
  echo "round $r status page, one viewer: ${c}% CPU, RSS ${rss} MB (peak ${hwm} MB), first load $(head -1 "$TMP/viewer.out")"
  echo "viewer $c $rss $hwm" >>"$TMP/rows"
  kill "$VIEWER" 2>/dev/null || true; wait "$VIEWER" 2>/dev/null || true; VIEWER=""
  stop_agent
done

start_agent "$BIN"
python3 bench/status_viewer.py loads "127.0.0.1:$SUP" "$LOADS" | tee -a "$TMP/loads" | sed 's/^/page load after a viewer left: /'
stop_agent

python3 - "$TMP/rows" "$TMP/loads" "$SECS" "$ROUNDS" <<'PY'
import json, statistics as st, sys
rows, loads, secs, rounds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
by = {}
for line in open(rows):
    k, c, rss, hwm = line.split()
    by.setdefault(k, []).append((float(c), float(rss), float(hwm)))
def agg(k, i):
    v = [r[i] for r in by.get(k, [])]
    return (st.median(v), min(v), max(v)) if v else None
loads = [json.loads(l) for l in open(loads) if l.strip().startswith("{")]
fresh = [l["fresh_frame_ms"] for l in loads if l.get("fresh_frame_ms") is not None]
kept = [l["first_frame_ms"] for l in loads if l.get("stale")]
kv = {"seconds": secs, "rounds": rounds}
for k in ("baseline", "idle", "viewer"):
    c, rss = agg(k, 0), agg(k, 1)
    if c:
        print(f"{k}: CPU median {c[0]:.1f}% (min {c[1]:.1f}, max {c[2]:.1f}); RSS median {rss[0]:.1f} MB (min {rss[1]:.1f}, max {rss[2]:.1f})")
        kv[f"{k}_cpu_pct"] = f"{c[0]:.1f}"
        kv[f"{k}_rss_mb"] = f"{rss[0]:.1f}"
if fresh:
    print(f"page GET -> first snapshot encoded for this viewer served: median {st.median(fresh):.0f} ms (min {min(fresh):.0f}, max {max(fresh):.0f}, {len(fresh)} loads)")
    kv["first_frame_ms"] = f"{st.median(fresh):.0f}"
    kv["loads"] = len(fresh)
if kept:
    print(f"  of which {len(kept)} opened after an earlier viewer left, and showed its kept snapshot first after a median {st.median(kept):.0f} ms")
    kv["kept_frame_ms"] = f"{st.median(kept):.0f}"
print("BENCH status_page " + " ".join(f"{k}={v}" for k, v in kv.items()))
PY
