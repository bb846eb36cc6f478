#!/usr/bin/env bash
# Cross-builds the release binary for aarch64-unknown-linux-gnu WITHOUT Docker
# (Debian bookworm x86_64 host, as root), then runs `trickle-edge --version`
# and the tests that need no GStreamer runtime under qemu-aarch64-static.
#
# How it gets an aarch64 standard library when `rustup target add` cannot
# reach its download server: Debian ships the standard library *source* of
# each Rust release as the architecture-independent package `rust-src`
# (trixie-backports carries one per release). The script picks the one whose
# version equals the host `rustc -V` exactly, unpacks it, and builds std for
# aarch64 with cargo's `-Zbuild-std` (unlocked on the stable compiler with
# RUSTC_BOOTSTRAP=1, for this script only). The std's own crates.io
# dependencies come from crates.io as usual. If the target std is already
# installed (`rustup target add aarch64-unknown-linux-gnu` worked), that is
# used instead and no rust-src is needed.
#
# The GStreamer/GLib arm64 libraries are not co-installable with the host's
# amd64 -dev packages, so they are downloaded with a private apt
# configuration (the host's dpkg architecture list and package state are not
# touched) and unpacked with `dpkg-deb -x` into a sysroot; pkg-config and the
# linker (`aarch64-linux-gnu-gcc --sysroot`) are pointed at it.
#
# Exit codes: 0 built and tested; 3 an ingredient is missing (the message
# names it exactly); anything else: a build or test failure.
#
# Environment:
#   CROSS_WORK          work dir (default ~/.cache/trickle-edge-cross-aarch64,
#                       kept between runs): sysroot, apt state, toolchain
#                       view, target dir
#   CROSS_SKIP_TESTS=1  build and run --version only
#   DEBIAN_MIRROR       Debian mirror URI for the private apt config (default:
#                       the URI of the host's own bookworm entry)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

TARGET=aarch64-unknown-linux-gnu
DEB_ARCH=arm64
GNU_TRIPLE=aarch64-linux-gnu
export DEBIAN_FRONTEND=noninteractive

CROSS_WORK=${CROSS_WORK:-${XDG_CACHE_HOME:-$HOME/.cache}/trickle-edge-cross-aarch64}
mkdir -p "$CROSS_WORK"
SYSROOT=$CROSS_WORK/sysroot
APTDIR=$CROSS_WORK/apt
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CROSS_WORK/target}

say() { printf 'cross-aarch64: %s\n' "$*" >&2; }
missing() { say "MISSING: $*"; exit 3; }

[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
command -v cargo >/dev/null || missing "cargo (run ci/setup.sh first)"

# --- 1. host tools -----------------------------------------------------------
need=()
for p in gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static pkg-config binutils-aarch64-linux-gnu; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
    || missing "Debian packages ${need[*]} (apt-get install failed)"
fi

# --- 2. private apt configuration (arm64 + trixie-backports for rust-src) ----
mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  # The host's own Debian mirror: deb822 (.sources) or one-line format.
  mirror=$(awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm([ \n]|$)/ && !/security/ {
                 if (match($0, /URIs:[ \t]*[^ \t\n]+/)) { s=substr($0,RSTART,RLENGTH); sub(/URIs:[ \t]*/,"",s); print s; exit } }' \
             /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=$(grep -hE '^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?[a-z]+://[^ ]+[[:space:]]+bookworm[[:space:]]' \
             /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
             | sed -E 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//' | awk '{print $1; exit}' || true)
fi
[ -n "$mirror" ] || missing "a Debian bookworm apt source (none found in /etc/apt; set DEBIAN_MIRROR)"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
mkdir -p "$APTDIR"/{lists/partial,cache/archives/partial,etc/sources.list.d,etc/preferences.d}
: > "$APTDIR/status"
cat > "$APTDIR/etc/sources.list" <<EOF
deb [signed-by=$keyring] $mirror bookworm main
deb [signed-by=$keyring] $mirror bookworm-updates main
deb [signed-by=$keyring] $mirror trixie-backports main
EOF
# trixie-backports is only for rust-src (architecture "all", no dependencies).
cat > "$APTDIR/etc/preferences.d/backports" <<'EOF'
Package: *
Pin: release n=trixie-backports
Pin-Priority: 1
EOF
APT=(-o "Dir::Etc::sourcelist=$APTDIR/etc/sources.list"
     -o "Dir::Etc::sourceparts=$APTDIR/etc/sources.list.d"
     -o "Dir::Etc::preferencesparts=$APTDIR/etc/preferences.d"
     -o "Dir::State::Lists=$APTDIR/lists"
     -o "Dir::State::status=$APTDIR/status"
     -o "Dir::Cache=$APTDIR/cache"
     -o "APT::Architecture=$DEB_ARCH" -o "APT::Architectures::=$DEB_ARCH"
     -o "APT::Sandbox::User=root" -o "Debug::NoLocking=1")
if [ -z "$(find "$APTDIR/lists" -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
  say "apt update (private lists in $APTDIR, mirror $mirror)"
  apt-get "${APT[@]}" update -qq || missing "Debian package lists for $DEB_ARCH from $mirror"
fi

# --- 3. an aarch64 standard library for this exact rustc -------------------
RUSTC_REAL=$(rustup which rustc 2>/dev/null || command -v rustc)
RUST_VER=$("$RUSTC_REAL" -V | awk '{print $2}')
HOST_SYSROOT=$("$RUSTC_REAL" --print sysroot)
BUILD_STD=()
if [ -d "$HOST_SYSROOT/lib/rustlib/$TARGET/lib" ]; then
  say "using the installed $TARGET standard library (rustc $RUST_VER)"
  CARGO_BIN=cargo
else
  # A private view of the toolchain (hard links, falling back to copies) with
  # the source beside it: rustc finds the std source via its own sysroot.
  TC=$CROSS_WORK/toolchain-$RUST_VER
  SRC_ROOT=$CROSS_WORK/rust-src-$RUST_VER
  if [ ! -f "$SRC_ROOT/library/std/Cargo.toml" ]; then
    ver=$(apt-cache "${APT[@]}" madison rust-src 2>/dev/null \
          | awk -v v="$RUST_VER" -F'|' '{gsub(/ /,"",$2); if (index($2, v "+") == 1) {print $2; exit}}')
    [ -n "$ver" ] || missing "an aarch64 Rust standard library for rustc $RUST_VER: \
'rustup target add $TARGET' needs its download server, and no Debian 'rust-src' \
package of version $RUST_VER (the std source, for -Zbuild-std) is in bookworm, \
bookworm-updates or trixie-backports (apt-cache madison rust-src)"
    say "fetching Debian rust-src $ver (std source for -Zbuild-std)"
    dl=$(mktemp -d "$CROSS_WORK/dl.XXXXXX")
    (cd "$dl" && apt-get "${APT[@]}" download "rust-src=$ver" >/dev/null) \
      || missing "Debian package rust-src=$ver (download failed)"
    rm -rf "$SRC_ROOT.tmp" && mkdir -p "$SRC_ROOT.tmp"
    dpkg-deb -x "$dl"/rust-src_*.deb "$SRC_ROOT.tmp"
    [ -f "$SRC_ROOT.tmp/usr/src/rustc-$RUST_VER/library/std/Cargo.toml" ] \
      || missing "library/std in rust-src $ver (unexpected layout)"
    rm -rf "$SRC_ROOT" && mv "$SRC_ROOT.tmp/usr/src/rustc-$RUST_VER" "$SRC_ROOT"
    rm -rf "$SRC_ROOT.tmp" "$dl"
  fi
  if [ "$(readlink -f "$TC/lib/rustlib/src/rust" 2>/dev/null)" != "$(readlink -f "$SRC_ROOT")" ] \
     || ! "$TC/bin/rustc" -V >/dev/null 2>&1; then
    rm -rf "$TC" && mkdir -p "$TC"
    for d in bin lib libexec; do
      [ -d "$HOST_SYSROOT/$d" ] || continue
      cp -al "$HOST_SYSROOT/$d" "$TC/" 2>/dev/null || cp -a "$HOST_SYSROOT/$d" "$TC/"
    done
    rm -rf "$TC/lib/rustlib/src" && mkdir -p "$TC/lib/rustlib/src"
    ln -s "$SRC_ROOT" "$TC/lib/rustlib/src/rust"
  fi
  # Call this view's cargo directly: through the rustup proxy, cargo would
  # look for the std source in rustup's own sysroot.
  CARGO_BIN=$TC/bin/cargo
  export RUSTC=$TC/bin/rustc RUSTDOC=$TC/bin/rustdoc
  export RUSTC_BOOTSTRAP=1
  BUILD_STD=(-Zbuild-std=std,panic_abort)
  say "no prebuilt $TARGET std: building it from Debian rust-src $RUST_VER (-Zbuild-std)"
fi

# --- 4. arm64 GStreamer sysroot -------------------------------------------
# libgstrtspserver-1.0-dev: the tests link the RTSP test server (a dev-dependency).
SYSROOT_PKGS=(libc6-dev libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstrtspserver-1.0-dev)
stamp="$SYSROOT/.trickle-edge-sysroot"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${SYSROOT_PKGS[*]}" ]; then
  say "downloading arm64 ${SYSROOT_PKGS[*]} and their dependencies"
  rm -f "$APTDIR"/cache/archives/*.deb
  # Empty dpkg status: apt resolves the whole closure as for an empty arm64
  # system and only downloads it.
  apt-get "${APT[@]}" install -y -qq --download-only --no-install-recommends \
      "${SYSROOT_PKGS[@]}" >/dev/null \
    || missing "arm64 packages ${SYSROOT_PKGS[*]} (apt download failed)"
  rm -rf "$SYSROOT" && mkdir -p "$SYSROOT"
  for deb in "$APTDIR"/cache/archives/*.deb; do dpkg-deb -x "$deb" "$SYSROOT"; done
  # Absolute symlinks would point into the host: make them sysroot-relative.
  find "$SYSROOT" -type l -lname '/*' | while read -r l; do
    t=$(readlink "$l"); ln -sfn "$(realpath -m --relative-to="$(dirname "$l")" "$SYSROOT$t")" "$l"
  done
  echo "${SYSROOT_PKGS[*]}" > "$stamp"
fi
for pc in gstreamer-1.0 gstreamer-app-1.0 gstreamer-base-1.0 glib-2.0; do
  f=$(find "$SYSROOT/usr/lib/$GNU_TRIPLE/pkgconfig" "$SYSROOT/usr/share/pkgconfig" -name "$pc.pc" 2>/dev/null | head -1)
  [ -n "$f" ] || missing "$pc.pc for arm64 in the sysroot $SYSROOT"
done

# --- 5. build ------------------------------------------------------------------
export PKG_CONFIG_ALLOW_CROSS=1
export PKG_CONFIG_SYSROOT_DIR=$SYSROOT
export PKG_CONFIG_LIBDIR=$SYSROOT/usr/lib/$GNU_TRIPLE/pkgconfig:$SYSROOT/usr/share/pkgconfig
export PKG_CONFIG_PATH=
export CC_aarch64_unknown_linux_gnu=$GNU_TRIPLE-gcc
export AR_aarch64_unknown_linux_gnu=$GNU_TRIPLE-ar
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=$GNU_TRIPLE-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C link-arg=--sysroot=$SYSROOT"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64-static -L $SYSROOT"

say "cargo build --release --target $TARGET (target dir $CARGO_TARGET_DIR)"
t0=$(date +%s)
"$CARGO_BIN" build --release --locked --target "$TARGET" "${BUILD_STD[@]}" --bin trickle-edge
t1=$(date +%s)
BIN=$CARGO_TARGET_DIR/$TARGET/release/trickle-edge
STRIPPED=$CROSS_WORK/trickle-edge-$TARGET
cp "$BIN" "$STRIPPED" && $GNU_TRIPLE-strip "$STRIPPED"
size=$(stat -c %s "$STRIPPED")
say "build time $((t1 - t0)) s; stripped size $size bytes ($(awk -v s="$size" 'BEGIN{printf "%.2f", s/1048576}') MiB): $STRIPPED"
file "$STRIPPED" 2>/dev/null | sed 's/^/cross-aarch64: /' >&2 || true
[ "$size" -lt $((8 * 1024 * 1024)) ] || { say "FAIL: stripped binary is over 8 MiB"; exit 1; }

ver_out=$(qemu-aarch64-static -L "$SYSROOT" "$STRIPPED" --version)
say "qemu: $ver_out"
case "$ver_out" in "trickle-edge "*) ;; *) say "FAIL: unexpected --version output"; exit 1 ;; esac

# --- 6. tests that need no GStreamer runtime, under qemu ----------------------
if [ "${CROSS_SKIP_TESTS:-0}" != 1 ]; then
  # Unit tests (media:: ones initialise GStreamer, whose arm64 plugins are not
  # in the sysroot) and integration tests that use no GStreamer.
  TEST_STD=()
  [ ${#BUILD_STD[@]} -eq 0 ] || TEST_STD=(-Zbuild-std)
  t2=$(date +%s)
  "$CARGO_BIN" test --locked --target "$TARGET" "${TEST_STD[@]}" --lib \
    --test deploy_units --test rules_timing \
    -- --test-threads=2 --skip media::
  say "tests under qemu took $(( $(date +%s) - t2 )) s"
fi
# --- 7. the arm64 Debian package (cargo-deb is installed by ci/deb.sh) ------
CARGO_DEB=$(command -v cargo-deb || echo "$HOME/.cargo/bin/cargo-deb")
if [ -x "$CARGO_DEB" ]; then
  DEB_OUT=$CROSS_WORK/debian
  mkdir -p "$DEB_OUT"
  rm -f "$DEB_OUT"/trickle-edge_*_arm64.deb
  # Already stripped by the release profile; the host's strip cannot read arm64.
  (cd "$ROOT" && "$CARGO_BIN" deb --locked --target "$TARGET" --no-build --no-strip --output "$DEB_OUT" >&2)
  ADEB=$(ls "$DEB_OUT"/trickle-edge_*_arm64.deb)
  [ "$(dpkg-deb -f "$ADEB" Architecture)" = arm64 ] || { say "FAIL: $ADEB is not arm64"; exit 1; }
  for p in usr/bin/trickle-edge lib/systemd/system/trickle-edge.service etc/trickle-edge/config.toml; do
    dpkg-deb -c "$ADEB" | awk '{print $NF}' | grep -qxF "./$p" || { say "FAIL: $ADEB lacks /$p"; exit 1; }
  done
  dpkg-deb -I "$ADEB" conffiles | grep -qxF /etc/trickle-edge/config.toml || { say "FAIL: config is not a conffile"; exit 1; }
  x=$(mktemp -d)
  dpkg-deb -x "$ADEB" "$x"
  qemu-aarch64-static -L "$SYSROOT" "$x/usr/bin/trickle-edge" --version | grep -q '^trickle-edge ' || { say "FAIL: packaged arm64 binary does not run"; exit 1; }
  rm -rf "$x"
  say "arm64 package $(basename "$ADEB") ($(stat -c %s "$ADEB") bytes): contents and conffiles checked, binary runs under qemu"
else
  missing "cargo-deb (ci/deb.sh installs it), so the arm64 package cannot be built"
fi
say "OK"
