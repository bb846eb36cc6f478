#!/usr/bin/env bash
# `job.mode = "livepeer"` against the stand-in orchestrator and signer, in
# the release profile (`cargo bench --bench livepeer`): job start
# (GetOrchestrator -> first segment accepted), failover gap (last segment
# accepted on A -> first on B after A closed the publish channel), and the
# payment loop's CPU and memory over LP_PAY_SECONDS (default 180),
# extrapolated to an hour. Prints a summary line and a `BENCH livepeer_*`
# twin of each for bench/run.
# Usage: bash bench/livepeer.sh [runs] [payment seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
export LP_RUNS=${1:-${LP_RUNS:-5}} LP_PAY_SECONDS=${2:-${LP_PAY_SECONDS:-180}}
cargo bench --locked --bench livepeer 2>/dev/null | grep -E '^(BENCH |job start|failover gap|payment loop)'
