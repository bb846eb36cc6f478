#!/usr/bin/env bash
# Installs what is needed and runs the embedded demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --locked
exec ./target/release/trickle-edge demo "$@"
