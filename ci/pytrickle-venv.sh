#!/usr/bin/env bash
# Creates the Python venv holding pytrickle 0.1.6 (a real Livepeer worker
# framework, the peer of the worker-mode interop tests) under
# target/pytrickle-venv. Idempotent. Prints the venv's python path.
#
# pytrickle pulls torch (with its CUDA libraries; the tests run it on the
# CPU), so the first run takes minutes. PyAV is pinned to the newest release
# that both pytrickle accepts and has a wheel for this Python, so pip never
# builds it from source.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$PWD/target/pytrickle-venv"
check='import importlib.metadata as m, pytrickle, av; assert m.version("pytrickle") == "0.1.6"'
if ! "$venv/bin/python" -c "$check" >/dev/null 2>&1; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check --only-binary=av "av==14.2.0" "pytrickle==0.1.6" >&2
  "$venv/bin/python" -c "$check" >&2
fi
echo "$venv/bin/python"
