#!/usr/bin/env bash
# A burst of detections in one data segment through `subscribe --rules` into
# a webhook and an MQTT output at QoS 1 (issue 15 item 4): how many each
# peer received, in order or not, the time from publish to the last arrival,
# and the subscriber's peak RSS (from /usr/bin/time -v) and per-output
# summary. The peers (bench/burst_peers.py) are a Python webhook receiver,
# WEBHOOK_DELAY_MS per POST (default 0: Python's own pace), and a QoS 1
# subscriber on a local mosquitto. Prints one line per output.
# Usage: bash bench/output_burst.sh   (TRICKLE_EDGE_BIN=path runs another
# build; default ./target/release/trickle-edge; BURST_ITEMS=N, default 20000;
# BURST_OLD=1 for a build older than `spill_dir`, which refuses the key)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${TRICKLE_EDGE_BIN:-./target/release/trickle-edge}
N=${BURST_ITEMS:-20000}
PORT=${BURST_PORT:-29397}
HOOK_PORT=$((PORT + 1))
BROKER_PORT=$((PORT + 2))
URL="http://127.0.0.1:$PORT/ai/trickle/data"
TMP=$(mktemp -d)
trap 'kill $SRV $BROKER $PEERS 2>/dev/null || true; wait 2>/dev/null; rm -rf "$TMP"' EXIT
$BIN serve --listen "127.0.0.1:$PORT" --channel data=application/jsonl >/dev/null 2>&1 & SRV=$!
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\nmax_inflight_messages 0\n' \
  "$BROKER_PORT" > "$TMP/mosquitto.conf"
mosquitto -c "$TMP/mosquitto.conf" >/dev/null 2>&1 & BROKER=$!
awk -v n="$N" 'BEGIN { for (i = 0; i < n; i++) printf "[{\"type\":\"detection\",\"n\":%d}]\n", i }' > "$TMP/burst.jsonl"
SPILL="spill_dir = \"$TMP/spill\""
[ "${BURST_OLD:-0}" = 1 ] && SPILL=""
cat > "$TMP/rules.toml" <<TOML
[outputs.hook]
type = "webhook"
url = "http://127.0.0.1:$HOOK_PORT/hook"
$SPILL

[outputs.bus]
type = "mqtt"
broker = "mqtt://127.0.0.1:$BROKER_PORT"
qos = 1
$SPILL

[[rules]]
name = "any"
match = { type = "detection" }
then = [{ output = "hook" }, { output = "bus" }]
TOML
sleep 0.3
python3 bench/burst_peers.py "$HOOK_PORT" "$BROKER_PORT" "$N" "$TMP/ready" > "$TMP/peers" & PEERS=$!
for _ in $(seq 100); do [ -e "$TMP/ready" ] && break; sleep 0.1; done
/usr/bin/time -v $BIN subscribe "$URL" --from 0 --rules "$TMP/rules.toml" 2>"$TMP/err" & SUB=$!
sleep 1
t0=$(date +%s.%N)
$BIN publish "$URL" --content-type application/jsonl --file "$TMP/burst.jsonl" >/dev/null 2>&1
wait $PEERS || true
curl -s -X DELETE "$URL" >/dev/null
wait $SUB || true
rss=$(awk -F': ' '/Maximum resident set size/{print $2}' "$TMP/err")
for out in hook bus; do
  peer=$([ "$out" = hook ] && echo webhook || echo mqtt)
  line=$(grep "^$peer:" "$TMP/peers")
  at=$(sed 's/.*last_at=//' <<<"$line")
  summary=$(grep -E "^output $out:" "$TMP/err" || echo "output $out: (no per-output summary)")
  took=$(awk "BEGIN { if ($at > 0) printf \"%.2fs\", $at - $t0; else print \"n/a\" }")
  echo "${line% last_at=*} publish_to_last=$took subscriber_peak_rss_kib=$rss $summary"
done
