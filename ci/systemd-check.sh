#!/usr/bin/env bash
# Checks the systemd units offline (no running systemd needed):
#   - `systemd-analyze verify` on trickle-edge.service and an instance of
#     trickle-edge@.service, inside a throwaway root that holds the host's
#     stock units, /bin/kill and a placeholder /usr/bin/trickle-edge (nothing
#     is installed on the host);
#   - `systemd-analyze security --offline=yes`: prints each unit's exposure
#     and fails above MAX_EXPOSURE (default 2.0, "OK" in systemd's words);
#   - the template's sandbox matches the main unit's, line for line, apart
#     from the per-instance paths;
#   - sysusers.d syntax (`systemd-sysusers --dry-run` in the throwaway root).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MAX_EXPOSURE=${MAX_EXPOSURE:-2.0}

if ! command -v systemd-analyze >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi
echo "systemd-check: $(systemd-analyze --version | head -1)"

R=$(mktemp -d "${TMPDIR:-/tmp}/trickle-edge-units.XXXXXX")
trap 'rm -rf "$R"' EXIT
mkdir -p "$R/usr/lib/systemd/system" "$R/usr/bin" "$R/bin" "$R/etc/trickle-edge"
# Stock targets (network-online.target, multi-user.target, ...) and slices.
cp -a /usr/lib/systemd/system/. "$R/usr/lib/systemd/system/" 2>/dev/null || cp -a /lib/systemd/system/. "$R/usr/lib/systemd/system/"
cp "$(type -P kill)" "$R/bin/kill"
printf '#!/bin/sh\n# placeholder for systemd-analyze verify\nexit 0\n' > "$R/usr/bin/trickle-edge"
chmod 0755 "$R/usr/bin/trickle-edge"
cp systemd/trickle-edge.service systemd/trickle-edge@.service "$R/usr/lib/systemd/system/"
touch "$R/etc/trickle-edge/config.toml" "$R/etc/trickle-edge/front.toml"

fail=0
units=(trickle-edge.service trickle-edge@front.service)
for u in "${units[@]}"; do
  out=$(systemd-analyze verify --root="$R" "$u" 2>&1) || { echo "$out"; echo "systemd-check: FAIL verify $u"; fail=1; continue; }
  # verify exits 0 on warnings (unknown keys, bad values): any line about
  # our units is a failure.
  if printf '%s\n' "$out" | grep -q 'trickle-edge'; then
    echo "$out"; echo "systemd-check: FAIL verify $u printed warnings"; fail=1
  else
    echo "systemd-check: verify $u: clean"
  fi
done

for u in "${units[@]}"; do
  report=$(systemd-analyze security --offline=yes --root="$R" "$u" 2>&1) || true
  level=$(printf '%s\n' "$report" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' | tail -1)
  if [ -z "$level" ]; then
    echo "$report"; echo "systemd-check: FAIL no exposure level for $u"; fail=1; continue
  fi
  echo "systemd-check: exposure $u = $level (max $MAX_EXPOSURE)"
  # The items still open, for the log.
  printf '%s\n' "$report" | grep '✗' | awk '{ $1=""; print "    open:" $0 }' | cut -c1-120
  if awk -v l="$level" -v m="$MAX_EXPOSURE" 'BEGIN{exit !(l > m)}'; then
    echo "systemd-check: FAIL exposure $level > $MAX_EXPOSURE for $u"; fail=1
  fi
done

# The template must carry the same sandbox as the main unit.
norm() { grep -vE '^[[:space:]]*(#|$)' "$1" | grep -vE '^(Description|ConditionPathExists)='; }
if ! diff <(norm systemd/trickle-edge.service) \
          <(norm systemd/trickle-edge@.service | sed -e 's#/%i\.toml#/config.toml#g' -e 's#/%i$##' -e 's#=trickle-edge/%i$#=trickle-edge#'); then
  echo "systemd-check: FAIL trickle-edge@.service differs from trickle-edge.service beyond the per-instance paths"; fail=1
else
  echo "systemd-check: template sandbox matches the main unit"
fi

if out=$(systemd-sysusers --dry-run --root="$R" "$ROOT/systemd/sysusers.d/trickle-edge.conf" 2>&1); then
  echo "systemd-check: sysusers.d parses ($(printf '%s\n' "$out" | grep -c . ) actions on an empty root)"
else
  echo "$out"; echo "systemd-check: FAIL sysusers.d/trickle-edge.conf"; fail=1
fi

[ "$fail" -eq 0 ] && echo "systemd-check: OK"
exit "$fail"
