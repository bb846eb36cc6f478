#!/usr/bin/env bash
# 100,000 detections in one data segment through `subscribe --rules` into a
# log output (issue 15 item 4): lines logged, wall time and peak RSS of the
# subscriber (from /usr/bin/time -v). Prints one summary line.
# Usage: bash bench/log_burst.sh   (TRICKLE_EDGE_BIN=path runs another build,
# e.g. an older commit's; default ./target/release/trickle-edge)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${TRICKLE_EDGE_BIN:-./target/release/trickle-edge}
N=${BURST_ITEMS:-100000}
PORT=${BURST_PORT:-29395}
URL="http://127.0.0.1:$PORT/ai/trickle/data"
TMP=$(mktemp -d)
trap 'kill $SRV 2>/dev/null || true; rm -rf "$TMP"' EXIT
$BIN serve --listen "127.0.0.1:$PORT" --channel data=application/jsonl >/dev/null 2>&1 & SRV=$!
awk -v n="$N" 'BEGIN { for (i = 0; i < n; i++) printf "[{\"type\":\"detection\",\"n\":%d}]\n", i }' > "$TMP/burst.jsonl"
cat > "$TMP/rules.toml" <<TOML
[outputs.fires]
type = "log"
path = "$TMP/fires.jsonl"
max_bytes = 1000000000

[[rules]]
name = "any"
match = { type = "detection" }
then = [{ output = "fires" }]
TOML
sleep 0.3
/usr/bin/time -v $BIN subscribe "$URL" --from 0 --rules "$TMP/rules.toml" 2>"$TMP/err" & SUB=$!
sleep 0.5
t0=$(date +%s.%N)
$BIN publish "$URL" --content-type application/jsonl --file "$TMP/burst.jsonl" >/dev/null 2>&1
# Wait until every line is logged, or until the log stops growing for 3 s.
last=-1; still=0
while :; do
  got=$(wc -l < "$TMP/fires.jsonl" 2>/dev/null || echo 0)
  [ "$got" -ge "$N" ] && break
  if [ "$got" -eq "$last" ]; then still=$((still + 1)); [ "$still" -ge 30 ] && break; else still=0; fi
  last=$got; sleep 0.1
done
t1=$(date +%s.%N)
curl -s -X DELETE "$URL" >/dev/null
wait $SUB || true
logged=$(wc -l < "$TMP/fires.jsonl")
rss=$(awk -F': ' '/Maximum resident set size/{print $2}' "$TMP/err")
wall=$(awk -F': ' '/Elapsed \(wall clock\)/{print $2}' "$TMP/err")
summary=$(grep -E '^output fires:' "$TMP/err" || echo "output fires: (no per-output summary)")
echo "logged=$logged of $N publish_to_logged=$(awk "BEGIN { printf \"%.2f\", $t1 - $t0 }")s subscriber_wall=$wall peak_rss_kib=$rss $summary"
