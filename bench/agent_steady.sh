#!/usr/bin/env bash
# Steady-state cost of `trickle-edge run` (static job, 1280x720 30 fps test
# camera, x264, 2 Mbit/s) publishing into a local `trickle-edge serve`, and
# process start -> READY (first segment confirmed). Prints one summary line
# and its `BENCH agent_steady ...` twin for bench/run.
# Usage: bash bench/agent_steady.sh [seconds]   (after cargo build --release;
# TRICKLE_EDGE_BIN=path runs another build, e.g. an older commit's)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-20}
BIN=${TRICKLE_EDGE_BIN:-./target/release/trickle-edge}
TMP=$(mktemp -d)
trap 'kill $SRV $AGENT 2>/dev/null || true; rm -rf "$TMP"' EXIT
$BIN serve --listen 127.0.0.1:29393 --channel cam >/dev/null 2>&1 & SRV=$!
cat > "$TMP/agent.toml" <<TOML
[camera]
source = "test"
width = 1280
height = 720
fps = 30
[encoder]
kind = "x264"
bitrate_kbps = 2000
[job]
mode = "static"
publish_url = "http://127.0.0.1:29393/ai/trickle/cam"
[supervisor]
listen = "127.0.0.1:29394"
TOML
sleep 0.3
$BIN run --config "$TMP/agent.toml" 2>"$TMP/err" & AGENT=$!
for _ in $(seq 1 100); do grep -q "READY" "$TMP/err" && break; sleep 0.05; done
ready=$(grep -o 'seconds=[0-9.]*' "$TMP/err" | head -1 | cut -d= -f2 || true)
tck=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' "/proc/$AGENT/stat"; }
sleep 2
c0=$(cpu); t0=$(date +%s.%N)
sleep "$SECS"
c1=$(cpu); t1=$(date +%s.%N)
rss=$(awk '/VmRSS/{print $2}' "/proc/$AGENT/status")
hwm=$(awk '/VmHWM/{print $2}' "/proc/$AGENT/status")
segs=$(curl -s http://127.0.0.1:29394/metrics | awk '/^trickle_edge_segments_published_total/{print $2}')
kill -TERM $AGENT; wait $AGENT || true
awk -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v tck="$tck" -v rss="$rss" -v hwm="$hwm" -v ready="$ready" -v segs="$segs" 'BEGIN {
  printf "run (static, 720p30 x264): %.1f%% CPU, RSS %.1f MB (peak %.1f MB), start -> READY %s s, %s segments\n",
    100*(c1-c0)/tck/(t1-t0), rss/1024, hwm/1024, ready, segs
  printf "BENCH agent_steady seconds=%s cpu_pct=%.1f rss_mb=%.1f hwm_mb=%.1f ready_s=%s segments=%s\n",
    t1-t0, 100*(c1-c0)/tck/(t1-t0), rss/1024, hwm/1024, ready, segs }'
