#!/usr/bin/env bash
# Creates the Python venv holding pytrickle 0.1.6 (a real Livepeer worker
# framework, the peer of the worker-mode interop tests) and links it at
# target/pytrickle-venv. Idempotent. Prints the venv's python path.
#
# pytrickle pulls torch (with its CUDA libraries; the tests run it on the
# CPU): about 6 GB and minutes to install. So the venv itself lives in the
# user's cache, keyed by what is pinned and the Python version, and a fresh
# clone (as CI makes) links the one already built instead of installing it
# again. PyAV is pinned to the newest release that both pytrickle accepts
# and has a wheel for this Python, so pip never builds it from source.
set -euo pipefail
cd "$(dirname "$0")/.."
pins=("av==14.2.0" "pytrickle==0.1.6")
py=$(python3 -c 'import sys; print(f"py{sys.version_info[0]}{sys.version_info[1]}")')
cache=${TRICKLE_EDGE_VENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/trickle-edge-venvs}
venv="$cache/pytrickle-0.1.6-av-14.2.0-$py"
link="$PWD/target/pytrickle-venv"
check='import importlib.metadata as m, pytrickle, av; assert m.version("pytrickle") == "0.1.6"'
if ! "$venv/bin/python" -c "$check" >/dev/null 2>&1; then
  rm -rf "$venv"
  mkdir -p "$cache"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check --only-binary=av "${pins[@]}" >&2
  "$venv/bin/python" -c "$check" >&2
fi
mkdir -p "$PWD/target"
if [ "$(readlink "$link" 2>/dev/null)" != "$venv" ]; then
  rm -rf "$link"
  ln -s "$venv" "$link"
fi
echo "$link/bin/python"
