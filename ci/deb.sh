#!/usr/bin/env bash
# Builds the amd64 Debian package with cargo-deb and checks what is in it:
# the binary, both systemd units, sysusers.d, the board presets, the example
# config as a conffile, the maintainer scripts and the dependencies.
#
#   bash ci/deb.sh            # .deb in $CARGO_TARGET_DIR/debian (or target/debian)
#
# Environment:
#   DEB_PLACEHOLDERS=1  if examples/config.toml or boards/*.toml are missing,
#                       package a copy of the tree (outside the repo) with
#                       placeholder files instead of failing (for trying the
#                       packaging before those files exist).
# Exit codes: 0 built and checked; 3 an input file is missing; else failure.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CARGO_DEB_VERSION=3.8.0

[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
say() { printf 'deb: %s\n' "$*" >&2; }

if [ "$(cargo deb --version 2>/dev/null | awk '{print $NF}')" != "$CARGO_DEB_VERSION" ]; then
  say "installing cargo-deb $CARGO_DEB_VERSION"
  cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --quiet
fi
command -v dpkg-shlibdeps >/dev/null || {
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends dpkg-dev >/dev/null
}

SRC=$ROOT
missing_inputs=()
[ -f examples/config.toml ] || missing_inputs+=(examples/config.toml)
compgen -G 'boards/*.toml' >/dev/null || missing_inputs+=('boards/*.toml')
if [ ${#missing_inputs[@]} -gt 0 ]; then
  if [ "${DEB_PLACEHOLDERS:-0}" != 1 ]; then
    say "MISSING: ${missing_inputs[*]} (packaged as /etc/trickle-edge/config.toml and"
    say "         /usr/share/trickle-edge/boards/); set DEB_PLACEHOLDERS=1 to try with placeholders"
    exit 3
  fi
  SRC=$(mktemp -d "${TMPDIR:-/tmp}/trickle-edge-deb-src.XXXXXX")
  trap 'rm -rf "$SRC"' EXIT
  say "placeholders for ${missing_inputs[*]} in a copy of the tree: $SRC"
  tar -C "$ROOT" --exclude=./target --exclude=./.git -cf - . | tar -C "$SRC" -xf -
  mkdir -p "$SRC/examples" "$SRC/boards"
  [ -f "$SRC/examples/config.toml" ] || printf '# placeholder example config (ci/deb.sh)\n' > "$SRC/examples/config.toml"
  compgen -G "$SRC/boards/*.toml" >/dev/null || printf '# placeholder board preset (ci/deb.sh)\n' > "$SRC/boards/placeholder.toml"
fi

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$CARGO_TARGET_DIR/debian
mkdir -p "$OUT"
rm -f "$OUT"/trickle-edge_*_amd64.deb
t0=$(date +%s)
(cd "$SRC" && cargo deb --locked --output "$OUT")
DEB=$(ls "$OUT"/trickle-edge_*_amd64.deb)
say "built $DEB in $(( $(date +%s) - t0 )) s ($(stat -c %s "$DEB") bytes)"

# --- contents ------------------------------------------------------------------
fail=0
check() { if eval "$2"; then say "ok: $1"; else say "FAIL: $1"; fail=1; fi; }
contents=$(dpkg-deb -c "$DEB" | awk '{print $NF}')
has() { printf '%s\n' "$contents" | grep -qxF "./$1"; }
for p in usr/bin/trickle-edge \
         lib/systemd/system/trickle-edge.service \
         lib/systemd/system/trickle-edge@.service \
         usr/lib/sysusers.d/trickle-edge.conf \
         etc/trickle-edge/config.toml \
         usr/share/doc/trickle-edge/deploy.md; do
  check "contains /$p" "has '$p'"
done
for b in "$SRC"/boards/*.toml; do
  check "contains board preset $(basename "$b")" "has 'usr/share/trickle-edge/boards/$(basename "$b")'"
done
check "binary is 0755" "dpkg-deb -c '$DEB' | grep -E '^-rwxr-xr-x .* \./usr/bin/trickle-edge$' >/dev/null"

# --- control -------------------------------------------------------------------
info=$(dpkg-deb -I "$DEB")
conffiles=$(dpkg-deb -I "$DEB" conffiles 2>/dev/null || true)
check "conffile /etc/trickle-edge/config.toml" "printf '%s\n' \"\$conffiles\" | grep -qxF /etc/trickle-edge/config.toml"
depends=$(dpkg-deb -f "$DEB" Depends)
for d in libc6 systemd ca-certificates libgstreamer1.0-0 libgstreamer-plugins-base1.0-0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad; do
  check "Depends: $d" "printf '%s' \"\$depends\" | grep -qE '(^|[ ,|])$d( |,|$)'"
done
recommends=$(dpkg-deb -f "$DEB" Recommends)
for d in gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-x; do
  check "Recommends: $d" "printf '%s' \"\$recommends\" | grep -qE '(^|[ ,])$d( |,|$)'"
done
check "Architecture: amd64" "[ \"\$(dpkg-deb -f '$DEB' Architecture)\" = amd64 ]"
for s in postinst prerm postrm; do
  check "maintainer script $s" "printf '%s\n' \"\$info\" | grep -qE '^ +[0-9]+ bytes, +[0-9]+ lines +\\* +$s '"
done
check "postinst runs systemd-sysusers" "dpkg-deb -I '$DEB' postinst | grep -q systemd-sysusers"
check "postinst does not enable or start on install" "! dpkg-deb -I '$DEB' postinst | grep -vE '^[[:space:]]*(#|echo )' | grep -qE 'systemctl (enable|start)|deb-systemd-(invoke start|helper enable)'"

# --- the packaged binary runs ----------------------------------------------------
x=$(mktemp -d "${TMPDIR:-/tmp}/trickle-edge-deb-x.XXXXXX")
dpkg-deb -x "$DEB" "$x"
check "packaged binary runs (--version)" "'$x/usr/bin/trickle-edge' --version | grep -q '^trickle-edge '"
rm -rf "$x"

printf '%s\n' "$info" | sed -n '/^ Package:/,$p' | sed 's/^/deb:   /' >&2
printf 'deb: conffiles: %s\n' "$conffiles" >&2
[ "$fail" -eq 0 ] && say "OK"
exit "$fail"
