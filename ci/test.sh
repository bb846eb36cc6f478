#!/usr/bin/env bash
# Installs what the tests need, then runs every test (unit, integration,
# interop with Livepeer's Python SDK).
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
TRICKLE_EDGE_INTEROP_PYTHON="$(bash ci/interop-venv.sh)"
export TRICKLE_EDGE_INTEROP_PYTHON
cargo build --all-targets --locked 2>&1 | tail -n 3
cargo test --locked -- --test-threads=2 2>&1
