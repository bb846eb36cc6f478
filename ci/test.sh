#!/usr/bin/env bash
# Installs what the tests need, then runs every test: formatting and lints,
# deployment checks (systemd units, Debian package, the install steps on a
# bare Debian root, aarch64 build under qemu), GPIO and V4L2 tests on a real
# kernel booted under QEMU (gpio-sim, vivid), then cargo's unit,
# integration and interop tests (Livepeer's Python SDK, a real pytrickle
# worker) last, so the run
# ends with cargo's summary lines. Nothing is skipped silently: a stage that
# cannot run fails the run under CI (CI set), and says so loudly elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
t_start=$(date +%s)
stage() { printf '\n=== %s (%d s into the run)\n' "$*" "$(( $(date +%s) - t_start ))" >&2; }

stage "install (ci/setup.sh)"
bash ci/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

stage "cargo fmt --check"
cargo fmt --check
stage "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings

TRICKLE_EDGE_INTEROP_PYTHON="$(bash ci/interop-venv.sh)"
export TRICKLE_EDGE_INTEROP_PYTHON
stage "pytrickle 0.1.6 worker venv (ci/pytrickle-venv.sh)"
TRICKLE_EDGE_PYTRICKLE_PYTHON="$(bash ci/pytrickle-venv.sh)"
export TRICKLE_EDGE_PYTRICKLE_PYTHON

stage "systemd units (ci/systemd-check.sh)"
bash ci/systemd-check.sh
stage "amd64 Debian package (ci/deb.sh)"
bash ci/deb.sh
stage "install steps on bare Debian roots (ci/fresh-root.sh)"
bash ci/fresh-root.sh
stage "aarch64 build under qemu (ci/cross-aarch64.sh)"
# Exit 3: an ingredient (such as an aarch64 standard library) cannot be had
# here. Under CI that fails the run; elsewhere it is reported and the rest runs.
rc=0
bash ci/cross-aarch64.sh || rc=$?
if [ "$rc" -eq 3 ] && [ -z "${CI:-}" ]; then
  echo "WARNING: ci/cross-aarch64.sh could not run (exit 3, see MISSING above); the aarch64 build and arm64 .deb were NOT checked" >&2
elif [ "$rc" -ne 0 ]; then
  echo "ci/cross-aarch64.sh failed with exit code $rc" >&2
  exit "$rc"
fi

stage "GPIO and V4L2 on a real kernel under QEMU (ci/vm-gpio.sh)"
bash ci/vm-gpio.sh

stage "fuzz targets, 30 s each (ci/fuzz.sh)"
bash ci/fuzz.sh

stage "cargo test"
cargo build --all-targets --locked 2>&1 | tail -n 3
echo "ci/test.sh: stages before cargo test took $(( $(date +%s) - t_start )) s" >&2
# Every test binary runs even after one fails, and a failure prints its panic
# message without a backtrace, so the end of the log names what failed and why.
RUST_BACKTRACE=0 cargo test --locked --no-fail-fast -- --test-threads=2 2>&1
