#!/usr/bin/env bash
# Creates the Python venv holding Livepeer's SDK (the interop peer) under
# target/interop-venv. Idempotent. Prints the venv's python path.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$PWD/target/interop-venv"
if ! "$venv/bin/python" -c "import livepeer_gateway.trickle_publisher, livepeer_gateway.trickle_subscriber" >/dev/null 2>&1; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check --only-binary=:all: av >&2
  "$venv/bin/pip" install -q --disable-pip-version-check --ignore-requires-python livepeer-gateway >&2
fi
echo "$venv/bin/python"
