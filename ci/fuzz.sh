#!/usr/bin/env bash
# Builds the fuzz targets in fuzz/ and runs each one briefly with cargo-fuzz
# (libFuzzer); fails on any crash, panic, timeout or leak it finds, leaving
# the input in fuzz/artifacts/TARGET/. Prints each target's executions,
# exec/s and coverage. Corpora are seeded from the repository's fixtures
# (fuzz/seeds/, tests/fixtures/data-channel/, examples/config.toml,
# boards/*.toml) into fuzz/corpus/, which grows across runs on one machine.
#
# Usage: bash ci/fuzz.sh [TARGET...]
#   FUZZ_SECONDS   seconds per target (default 30)
#   FUZZ_SANITIZER address (default) or none
#   FUZZ_TARGET_DIR  the instrumented build (default ~/.cache/trickle-edge-fuzz/target)
#
# The machine has a stable toolchain only: cargo-fuzz's `-Zsanitizer` and
# `-Cllvm-args` flags need nightly, so RUSTC_BOOTSTRAP=1 lets stable rustc
# take them (this affects only the fuzz build, in its own target dir).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${FUZZ_SECONDS:-30}
SANITIZER=${FUZZ_SANITIZER:-address}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(data_decoder config rules server_requests)
export RUSTC_BOOTSTRAP=1
# The fuzz crate keeps its own target dir (instrumented builds of every
# dependency): never the main build's.
unset CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR
# The instrumented build of every dependency is slow (minutes on 2 cores):
# keep it in the user's cache, not in the clone, so a fresh clone (as CI
# makes) rebuilds only the crate itself.
FUZZ_TARGET_DIR=${FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/trickle-edge-fuzz/target}
mkdir -p "$FUZZ_TARGET_DIR"
CARGO_FUZZ_VERSION=0.13.2
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
if [ "$(cargo fuzz --version 2>/dev/null | awk '{print $NF}')" != "$CARGO_FUZZ_VERSION" ]; then
  echo "ci/fuzz.sh: installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --quiet
fi

seed() {
  local corpus=fuzz/corpus
  mkdir -p "$corpus"/{data_decoder,config,rules,server_requests}
  cp fuzz/seeds/rules/* "$corpus/rules/"
  cp fuzz/seeds/server_requests/* "$corpus/server_requests/"
  # data_decoder: 3 header bytes (content type, limits, chunk size), then a
  # fixture. Content types index the target's table: 0 jsonl, 2 json,
  # 4 text/plain, 6 none (sniffed). Limits 0x7c: 64 KiB lines, depth 64;
  # 0x13: 128 B lines, depth 10.
  local f ct name
  for f in tests/fixtures/data-channel/good/* tests/fixtures/data-channel/bad/*; do
    case "$f" in
      *.jsonl) ct='\x00' ;;
      *.json) ct='\x02' ;;
      *.txt) ct='\x04' ;;
      *) ct='\x06' ;;
    esac
    name=$(basename "$(dirname "$f")")-$(basename "$f")
    { printf "$ct"'\x7c\x3f'; cat "$f"; } >"$corpus/data_decoder/$name"
    { printf '\x06\x13\x07'; cat "$f"; } >"$corpus/data_decoder/small-$name"
  done
  # config: the example, and each board preset under a minimal job.
  cp examples/config.toml "$corpus/config/example.toml"
  for f in boards/*.toml; do
    name=$(basename "$f" .toml)
    printf 'board = "%s"\n[job]\nmode = "static"\npublish_url = "http://127.0.0.1:2939/ai/trickle/cam"\n' "$name" \
      >"$corpus/config/board-$name.toml"
    cp "$f" "$corpus/config/preset-$name.toml"
  done
  # rules: the example's rules and each good fixture's lines as items.
  for f in tests/fixtures/data-channel/good/*.json*; do
    { sed -n '/^\[\[rules\]\]/,$p' examples/config.toml; echo '---'; tr -d '\r' <"$f"; echo; echo '+1500'; } \
      >"$corpus/rules/example-$(basename "$f")"
  done
}

seed
echo "ci/fuzz.sh: building ${TARGETS[*]} (sanitizer $SANITIZER)" >&2
# One `cargo fuzz build` builds every target (it takes at most one name).
(cd fuzz && cargo fuzz build -s "$SANITIZER" --target-dir "$FUZZ_TARGET_DIR") || {
  echo "ci/fuzz.sh: cargo fuzz build failed" >&2; exit 1; }
failed=()
for t in "${TARGETS[@]}"; do
  log=$(mktemp)
  echo "=== fuzz $t: ${SECONDS_EACH} s" >&2
  rc=0
  (cd fuzz && cargo fuzz run -s "$SANITIZER" --target-dir "$FUZZ_TARGET_DIR" "$t" "corpus/$t" -- \
      -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 2>&1) >"$log" || rc=$?
  runs=$(awk '/stat::number_of_executed_units/{print $2}' "$log")
  speed=$(awk '/stat::average_exec_per_sec/{print $2}' "$log")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  corp=$(grep -o 'corp: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  echo "fuzz $t: ${runs:-?} execs, ${speed:-?} exec/s, coverage ${cov:-?} edges (${ft:-?} features), corpus ${corp:-?} inputs, rc $rc"
  if [ "$rc" -ne 0 ]; then
    grep -E 'panicked|ERROR|SUMMARY|Test unit written|artifact_prefix|Crash|Timeout|leak' "$log" | head -20 >&2 || true
    tail -n 30 "$log" >&2
    failed+=("$t")
  fi
  rm -f "$log"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "ci/fuzz.sh: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
