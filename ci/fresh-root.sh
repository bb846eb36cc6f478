#!/usr/bin/env bash
# Proves the install steps on a bare Debian bookworm system (as root, no
# Docker): two fresh `mmdebstrap --variant=minbase bookworm` roots, entered
# with chroot.
#
#   Root A ("deb"):   apt-get install ./trickle-edge_*_amd64.deb, then
#                     `trickle-edge check --config /etc/trickle-edge/config.toml`
#                     and `timeout 60 trickle-edge demo --duration 10`.
#   Root B ("setup"): a copy of this working tree (tracked and untracked,
#                     not-ignored files, so uncommitted work is tested),
#                     `bash ci/setup.sh`, a release build, then the README's
#                     `bash ci/demo.sh --duration 10`.
#   Both demos must print `summary: segments=N ... gpio_transitions=M ...`
#   with N > 0 and M > 0 (and exit 0); otherwise the whole demo output and
#   the reason are printed and the script exits 1.
#
#   bash ci/fresh-root.sh [PATH/TO/trickle-edge_VERSION_amd64.deb]
#
# The .deb defaults to the newest ${CARGO_TARGET_DIR:-target}/debian/
# trickle-edge_*_amd64.deb (built by `bash ci/deb.sh`; not built here).
#
# Environment:
#   FRESH_ROOT_ONLY=deb|setup  run one half only (default: both)
#   FRESH_ROOT_CACHE     cache dir (default ${XDG_CACHE_HOME:-~/.cache}/
#                        trickle-edge-fresh-root): minbase tarball, apt
#                        archives, cargo registry, root B's target dir, logs
#   FRESH_ROOT_MAX_AGE_DAYS  rebuild the minbase tarball when older (7)
#   FRESH_ROOT_VERBOSE=1 stream the output of each step (always in logs/)
#   DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR  mirror URIs (default: the host's
#                        bookworm / bookworm-security entries in /etc/apt)
#   TMPDIR               where the roots are made (removed at exit)
#
# Exit codes: 0 both halves passed; 1 a check failed (the message says
# which); 2 bad usage; 3 an ingredient is missing (not root, no .deb, no
# mirror, no rustup toolchain); 4 teardown refused to delete a root that
# still had something mounted in it (it is left in place, named).
#
# How the roots are made and entered:
# - mmdebstrap is given the host's own mirror explicitly (with no mirror it
#   would use deb.debian.org plus security.debian.org), plus the host's apt
#   proxy and Check-Valid-Until/Check-Date settings (`apt-config dump`); the
#   proxy environment variables are passed into the roots too.
# - /proc, a private /dev (tmpfs with the usual nodes, its own devpts and
#   /dev/shm; no host /dev), /etc/resolv.conf (a copy). No /sys. A
#   policy-rc.d that forbids starting services (mosquitto, installed by
#   ci/setup.sh, would otherwise start a daemon inside the chroot).
# - Commands run with `env -i` and a plain root environment (HOME=root's home,
#   standard PATH), so nothing of this host's shell environment leaks in.
# - Rust cannot be installed in the root (its download server is not
#   reachable), so the host's rustup toolchain is bind-mounted READ-ONLY:
#   the rustup home at ~/.rustup and the directory holding the cargo
#   proxies at ~/.cargo/bin of root's home in the root (the rustup default
#   paths there); ~/.cargo/env is a copy of the host's.
#   ci/setup.sh then finds $HOME/.cargo/bin/cargo and does not run rustup.
#   cargo in root B also gets CARGO_HTTP_CAINFO pointing at a copy of the
#   host's CA bundle (a TLS-intercepting egress proxy's CA is only there);
#   nothing else in the roots sees it.
# - Every mount is private and undone at exit (EXIT/INT/TERM/HUP trap,
#   failures included): processes still running inside a root are killed,
#   mounts are unmounted deepest first (lazily only as a last resort, which
#   detaches them before anything is deleted), then findmnt must list
#   nothing under the work dir and no recorded bind target may still be
#   the same inode as its host source; otherwise nothing is deleted
#   (exit 4). rm also runs with --one-file-system.
#
# Caches (all under FRESH_ROOT_CACHE, shared between runs and both roots;
# a lock serialises concurrent runs):
# - minbase-bookworm.tar: made once, unpacked per root; remade when older
#   than FRESH_ROOT_MAX_AGE_DAYS or when the sources/apt options change.
# - apt-archives/: bind-mounted at /var/cache/apt/archives in both roots;
#   the roots get APT::Keep-Downloaded-Packages "true" (minbase sets nothing
#   that deletes them; checked). `apt-get update` still runs in each root.
# - cargo-registry/: bind-mounted at ~/.cargo/registry in root B (crates are
#   downloaded from crates.io once).
# - target-<rustc version>/: root B's target dir (bind-mounted at the
#   copy's target/; the two newest keys are kept). Not keyed by Cargo.lock:
#   cargo rebuilds just the dependencies a changed lock names, where a new
#   key would rebuild every crate.
#   Dependencies are reused, but src/main.rs and src/lib.rs of the copy are
#   touched before the build, so trickle-edge itself is compiled and the
#   binary relinked inside the root every run, against the root's
#   GStreamer libraries; the script checks that the binary is newer than
#   the build's start and shows what it links (ldd).
# - logs/: each step's output from the last run.
# Root B builds with `cargo build --release --locked` as its own timed
# phase first; ci/demo.sh then runs as is (its setup.sh and cargo build are
# no-ops by then), so the demo's time is not mixed with the build's.
# Single-quoted $VARS below are meant for the shell inside the root.
# shellcheck disable=SC2016
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

say() { printf 'fresh-root: %s\n' "$*" >&2; }
indent() { sed -u 's/^/fresh-root:   | /' >&2; }
die() { say "FAIL: $*"; exit 1; }
missing() { say "MISSING: $*"; exit 3; }

case "${1:-}" in -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
[ $# -le 1 ] || { say "usage: bash ci/fresh-root.sh [FILE.deb]"; exit 2; }
ONLY=${FRESH_ROOT_ONLY:-both}
case "$ONLY" in deb|setup|both) ;; *) say "FRESH_ROOT_ONLY must be deb, setup or both (got '$ONLY')"; exit 2 ;; esac
[ "$(id -u)" -eq 0 ] || missing "root (mmdebstrap --mode=root, mount and chroot need it); run as root"
[ "$(dpkg --print-architecture)" = amd64 ] || missing "an amd64 host (the roots are native amd64)"

export DEBIAN_FRONTEND=noninteractive
CACHE=${FRESH_ROOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/trickle-edge-fresh-root}
MAX_AGE_DAYS=${FRESH_ROOT_MAX_AGE_DAYS:-7}
VERBOSE=${FRESH_ROOT_VERBOSE:-0}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd -P)
LOGS=$CACHE/logs

# --- timing ---------------------------------------------------------------------
now_ms() { local t=${EPOCHREALTIME//[^0-9]/}; echo $(( t / 1000 )); }
fmt_ms() { printf '%d.%d s' $(( $1 / 1000 )) $(( $1 % 1000 / 100 )); }
T_START=$(now_ms)
PH_NAME=
phase_end() {  # [STATUS]
  [ -n "$PH_NAME" ] || return 0
  local ms=$(( $(now_ms) - PH_T0 ))
  printf '%s\t%s\t%s\n' "$PH_NAME" "$ms" "${1:-ok}" >> "$PHASES"
  say "   ... $PH_NAME: $(fmt_ms "$ms")${1:+ ($1)}"
  PH_NAME=
}
phase() { phase_end; PH_NAME=$1; PH_T0=$(now_ms); say "$1"; }

# --- work dir, mounts and teardown -------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/trickle-edge-fresh-root.XXXXXX")
WORK=$(cd "$WORK" && pwd -P)
# findmnt escapes unusual characters; keep the path plain so its output
# compares byte for byte.
case "$WORK" in /?*/*) ;; *) say "unexpected work dir '$WORK'"; exit 1 ;; esac
if [[ ! "$WORK" =~ ^[A-Za-z0-9._/+-]+$ ]]; then
  rmdir "$WORK"; missing "a TMPDIR path of plain characters (got '$WORK')"
fi
PHASES=$WORK/phases.tsv
BINDS=$WORK/binds.tsv      # "host source <TAB> target in a root", one a line
: > "$PHASES"; : > "$BINDS"

mounts_under() {  # mount points at or below $1, deepest first
  findmnt -rn -o TARGET | awk -v p="$1" '$0 == p || index($0, p "/") == 1' | sort -r
}
procs_in() {  # pids of processes whose root directory is at or below $1
  local p r
  for p in /proc/[0-9]*; do
    r=$(readlink "$p/root" 2>/dev/null) || continue
    case "$r" in "$1"|"$1"/*) echo "${p#/proc/}" ;; esac
  done
}
teardown() {  # DIR: stop what runs in it, unmount everything in it, delete it
  local dir=$1 pids m left src dst
  [ -d "$dir" ] || return 0
  pids=$(procs_in "$dir" | tr '\n' ' ')
  if [ -n "${pids// /}" ]; then
    say "stopping processes still running in $dir: $pids"
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    sleep 2
    pids=$(procs_in "$dir" | tr '\n' ' ')
    # shellcheck disable=SC2086
    [ -z "${pids// /}" ] || kill -KILL $pids 2>/dev/null || true
    sleep 0.5
  fi
  for _ in 1 2 3; do
    while read -r m; do
      [ -n "$m" ] || continue
      umount "$m" 2>/dev/null || { sleep 1; umount "$m" 2>/dev/null; } \
        || { say "lazy unmount of busy $m"; umount -l "$m" || true; }
    done < <(mounts_under "$dir")
    [ -n "$(mounts_under "$dir")" ] || break
  done
  left=$(mounts_under "$dir")
  if [ -n "$left" ]; then
    say "REFUSING to delete $dir: still mounted there:"; printf '%s\n' "$left" | indent
    return 4
  fi
  # Explicit guard for the bind mounts (host toolchain, caches): deleting
  # through a live one would delete the host's files.
  while IFS=$'\t' read -r src dst; do
    case "$dst" in "$dir"|"$dir"/*) ;; *) continue ;; esac
    if [ -e "$dst" ] && [ "$(stat -c %d:%i "$dst")" = "$(stat -c %d:%i "$src")" ]; then
      say "REFUSING to delete $dir: $dst is still the host's $src"
      return 4
    fi
  done < "$BINDS"
  rm -rf --one-file-system "$dir"
}

print_times() {
  [ -s "$PHASES" ] || return 0
  say "times:"
  local name ms st
  while IFS=$'\t' read -r name ms st; do
    printf 'fresh-root:   %-60s %9s%s\n' "$name" "$(fmt_ms "$ms")" "$([ "$st" = ok ] || echo "  ($st)")" >&2
  done < "$PHASES"
}
on_exit() {
  local rc=$? t
  set +e
  trap - INT TERM HUP
  if [ "$rc" -ne 0 ]; then phase_end FAILED; else phase_end; fi
  print_times
  say "total: $(fmt_ms $(( $(now_ms) - T_START )))"
  teardown "$WORK"; t=$?
  if [ "$t" -ne 0 ]; then
    say "work dir $WORK left in place (something is still mounted in it; see above)"
    [ "$rc" -ne 0 ] || rc=4
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM
trap 'say "hangup"; exit 129' HUP

exec 9> "$CACHE/.lock"
if ! flock -n 9; then say "waiting for another run holding $CACHE/.lock"; flock 9; fi

safe_target() {  # DST must be a plain path inside a root of ours (no symlinks)
  case "$1" in "$WORK"/roots/?*/?*) ;; *) die "refusing to mount on $1 (outside $WORK/roots)" ;; esac
  [ "$(realpath -m "$1")" = "$1" ] || die "refusing to mount on $1 (a symlink in the path)"
}
bind() {  # SRC DST [ro]
  local src dst=$2
  src=$(realpath -e "$1")
  safe_target "$dst"
  mkdir -p "$dst"
  printf '%s\t%s\n' "$src" "$dst" >> "$BINDS"
  mount --bind "$src" "$dst"
  mount --make-private "$dst"
  if [ "${3:-}" = ro ]; then
    mount -o remount,bind,ro "$dst"
    findmnt -n -o OPTIONS --mountpoint "$dst" | tr ',' '\n' | grep -qx ro \
      || die "could not make the bind mount $dst read-only"
  fi
}
mount_fs() {  # TYPE OPTIONS DST
  safe_target "$3"
  mkdir -p "$3"
  mount -t "$1" -o "$2" "$1" "$3"
  mount --make-private "$3"
}
make_dev() {  # a private /dev: tmpfs, device nodes, devpts, shm
  local d=$1/dev n
  mount_fs tmpfs mode=0755,nosuid,size=4m "$d"
  for n in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
    IFS=: read -r name maj min <<< "$n"
    if ! mknod -m 0666 "$d/$name" c "$maj" "$min" 2>/dev/null; then
      : > "$d/$name"; bind "/dev/$name" "$d/$name"   # no CAP_MKNOD: the host's node
    fi
  done
  ln -s /proc/self/fd "$d/fd"
  ln -s /proc/self/fd/0 "$d/stdin"; ln -s /proc/self/fd/1 "$d/stdout"; ln -s /proc/self/fd/2 "$d/stderr"
  mount_fs devpts newinstance,ptmxmode=0666,mode=0620,gid=5 "$d/pts"
  ln -s pts/ptmx "$d/ptmx"
  mount_fs tmpfs mode=1777,nosuid,nodev "$d/shm"
}

# --- apt sources and options for the roots -------------------------------------------
. ci/apt-sources.sh  # sources_uri (the working directory is the repository root)
MIRROR=${DEBIAN_MIRROR:-$(sources_uri bookworm)}
[ -n "$MIRROR" ] || missing "a Debian bookworm apt source (none in /etc/apt/sources.list{,.d}; set DEBIAN_MIRROR)"
SEC_MIRROR=${DEBIAN_SECURITY_MIRROR:-$(sources_uri bookworm-security)}
SOURCES=$WORK/sources.list
{
  echo "deb $MIRROR bookworm main"
  echo "deb $MIRROR bookworm-updates main"
  [ -z "$SEC_MIRROR" ] || echo "deb $SEC_MIRROR bookworm-security main"
} > "$SOURCES"
# The host's apt proxy and date-check settings (mmdebstrap does not read the
# host's apt configuration).
APTOPTS=$WORK/apt-host.conf
apt-config dump 2>/dev/null \
  | grep -E '^Acquire::(https?|ftp)::Proxy(::[^ ]+)? |^Acquire::Check-(Valid-Until|Date) ' > "$APTOPTS" || true
PROXY_ENV=()
for v in http_proxy https_proxy ftp_proxy no_proxy all_proxy HTTP_PROXY HTTPS_PROXY FTP_PROXY NO_PROXY ALL_PROXY; do
  [ -z "${!v:-}" ] || PROXY_ENV+=("$v=${!v}")
done
in_root() {  # ROOT CMD...
  local r=$1; shift
  chroot "$r" "${ROOT_ENV[@]}" "$@"
}
step() {  # LOGNAME CMD...: run, output to logs/LOGNAME.log; on failure show its end
  local name=$1 log=$LOGS/$1.log rc=0; shift
  if [ "$VERBOSE" = 1 ]; then
    "$@" 2>&1 | tee "$log" | indent || rc=$?
  else
    "$@" > "$log" 2>&1 || rc=$?
  fi
  if [ "$rc" -ne 0 ]; then
    say "'$name' exited with $rc; last lines of $log:"
    tail -n 40 "$log" | indent
    die "$name (exit $rc)"
  fi
}

# --- the .deb ------------------------------------------------------------------------
DEB=
if [ "$ONLY" != setup ]; then
  if [ $# -eq 1 ]; then
    DEB=$1
  else
    tdir=${CARGO_TARGET_DIR:-target}
    DEB=$(find "$tdir/debian" -maxdepth 1 -name 'trickle-edge_*_amd64.deb' -printf '%T@ %p\n' 2>/dev/null \
          | sort -rn | head -1 | cut -d' ' -f2- || true)
    [ -n "$DEB" ] || missing "$tdir/debian/trickle-edge_*_amd64.deb (build it with: bash ci/deb.sh), or pass a .deb"
  fi
  [ -f "$DEB" ] || missing "the package $DEB"
  DEB=$(realpath "$DEB")
  [ "$(dpkg-deb -f "$DEB" Package 2>/dev/null)" = trickle-edge ] || die "$DEB is not a trickle-edge package"
  [ "$(dpkg-deb -f "$DEB" Architecture)" = amd64 ] || die "$DEB is not amd64"
  newest_src=$(git ls-files -z -- src Cargo.toml Cargo.lock 2>/dev/null | xargs -0 -r stat -c %Y 2>/dev/null | sort -n | tail -1 || true)
  if [ -n "$newest_src" ] && [ "$newest_src" -gt "$(stat -c %Y "$DEB")" ]; then
    say "warning: $DEB is older than the newest file in src/ (rebuild with bash ci/deb.sh)"
  fi
fi

# --- host tools --------------------------------------------------------------------------
if ! command -v mmdebstrap >/dev/null; then
  say "installing mmdebstrap"
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends mmdebstrap; } > "$WORK/apt-host.log" 2>&1 \
    || { indent < "$WORK/apt-host.log"; missing "the Debian package mmdebstrap (apt-get install failed)"; }
fi
for t in chroot findmnt flock mount umount tar; do
  command -v "$t" >/dev/null || missing "$t on the host"
done

mkdir -p "$LOGS" "$CACHE/apt-archives/partial" "$CACHE/cargo-registry"
say "cache $CACHE; roots under $WORK; mirror $MIRROR${SEC_MIRROR:+ (security $SEC_MIRROR)}"

# --- the minbase tarball ----------------------------------------------------------------
TARBALL=$CACHE/minbase-bookworm.tar
key=$( { cat "$SOURCES" "$APTOPTS"; mmdebstrap --version; } | sha256sum | cut -c1-16)
phase "minbase tarball"
if [ -f "$TARBALL" ] && [ "$(cat "$TARBALL.key" 2>/dev/null)" = "$key" ] \
   && [ -n "$(find "$TARBALL" -mtime "-$MAX_AGE_DAYS" 2>/dev/null)" ]; then
  say "   cached: $TARBALL ($(( ($(date +%s) - $(stat -c %Y "$TARBALL")) / 3600 )) h old)"
  PH_NAME="minbase tarball (cached)"
else
  say "   mmdebstrap --variant=minbase bookworm (sources: $(paste -sd';' "$SOURCES"))"
  mm=(mmdebstrap --mode=root --variant=minbase --format=tar)
  [ ! -s "$APTOPTS" ] || mm+=("--aptopt=$APTOPTS")
  rm -f "$TARBALL.tmp"
  step mmdebstrap "${mm[@]}" bookworm "$TARBALL.tmp" "$SOURCES"
  mv -f "$TARBALL.tmp" "$TARBALL"
  echo "$key" > "$TARBALL.key"
  PH_NAME="minbase tarball (mmdebstrap)"
fi
phase_end
# root's home inside the roots, from their own /etc/passwd
IN_HOME=$(tar -xOf "$TARBALL" ./etc/passwd | awk -F: '$1 == "root" {print $6; exit}')
case "$IN_HOME" in /?*) ;; *) die "no home directory for root in the minbase tarball's /etc/passwd" ;; esac

# A clean root environment: nothing of this host's shell environment but
# the proxy variables (and, in root B, CARGO_HTTP_CAINFO) gets in.
ROOT_ENV=(/usr/bin/env -i HOME="$IN_HOME" USER=root LOGNAME=root SHELL=/bin/bash
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  LANG=C.UTF-8 TERM="${TERM:-dumb}" DEBIAN_FRONTEND=noninteractive
  ${PROXY_ENV[@]+"${PROXY_ENV[@]}"})

# --- one fresh root ------------------------------------------------------------------------
new_root() {  # NAME: unpack, enter-able, with the apt cache; prints nothing
  local r=$WORK/roots/$1
  mkdir -p "$r"
  tar -C "$r" --numeric-owner -xpf "$TARBALL"
  rm -f "$r/etc/resolv.conf"; cp -L /etc/resolv.conf "$r/etc/resolv.conf"
  printf '#!/bin/sh\n# fresh-root: no services start inside the chroot\nexit 101\n' > "$r/usr/sbin/policy-rc.d"
  chmod 0755 "$r/usr/sbin/policy-rc.d"
  printf 'APT::Keep-Downloaded-Packages "true";\nBinary::apt::APT::Keep-Downloaded-Packages "true";\n' \
    > "$r/etc/apt/apt.conf.d/99fresh-root-keep-debs"
  mount_fs proc nosuid,nodev,noexec "$r/proc"
  make_dev "$r"
  bind "$CACHE/apt-archives" "$r/var/cache/apt/archives"
  if in_root "$r" apt-config dump | grep -qiE 'Post-Invoke.*(archives|apt-get clean)|Keep-Downloaded-Packages "(false|0|no)"'; then
    say "warning: the root's apt configuration deletes downloaded packages (apt cache will not fill):"
    in_root "$r" apt-config dump | grep -iE 'Post-Invoke|Keep-Downloaded' | indent
  fi
}

check_summary() {  # LABEL OUTPUT-FILE RC: the demo's summary line must show work done
  local label=$1 out=$2 rc=$3 line seg gpio why=
  line=$(grep -aE '^summary: ' "$out" | tail -1 || true)
  seg=$(printf '%s' "$line" | sed -nE 's/.*[ :]segments=([0-9]+).*/\1/p')
  gpio=$(printf '%s' "$line" | sed -nE 's/.* gpio_transitions=([0-9]+).*/\1/p')
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then why="the demo did not stop by itself (killed by timeout, exit $rc)"
  elif [ -z "$line" ]; then why="no 'summary:' line in the demo's output (exit $rc)"
  elif [ -z "$seg" ] || [ -z "$gpio" ]; then why="cannot read segments=/gpio_transitions= from: $line"
  elif [ "$seg" -eq 0 ]; then why="the demo published no segments ($line)"
  elif [ "$gpio" -eq 0 ]; then why="the simulated GPIO line never changed ($line)"
  elif [ "$rc" -ne 0 ]; then why="the demo exited with $rc after: $line"
  fi
  if [ -n "$why" ]; then
    say "$label: the demo's whole output:"
    indent < "$out"
    die "$label: $why"
  fi
  say "   $line"
}

half_deb() {
  local r=$WORK/roots/deb rc=0 out=$LOGS/deb-demo.log base
  base=$(basename "$DEB")
  phase "A: unpack a fresh root"
  new_root deb
  install -m 0644 "$DEB" "$r/tmp/$base"
  phase "A: apt-get update"
  step deb-apt-update in_root "$r" apt-get update
  phase "A: apt-get install ./$base"
  step deb-apt-install in_root "$r" apt-get install -y --no-install-recommends "/tmp/$base"
  say "   installed: $(in_root "$r" dpkg-query -W -f='${Package} ${Version}' trickle-edge);" \
      "$(in_root "$r" dpkg-query -W -f='${db:Status-Abbrev}\n' | grep -c '^ii') packages in the root"
  phase "A: trickle-edge check"
  step deb-check in_root "$r" trickle-edge check --config /etc/trickle-edge/config.toml
  say "   check OK ($(wc -l < "$LOGS/deb-check.log") lines of resolved config)"
  phase "A: timeout 60 trickle-edge demo --duration 10"
  timeout -k 5 90 chroot "$r" "${ROOT_ENV[@]}" \
    sh -c 'cd "$HOME" && exec timeout 60 trickle-edge demo --duration 10' > "$out" 2>&1 < /dev/null || rc=$?
  check_summary "root A (.deb)" "$out" "$rc"
  phase_end
}

half_setup() {
  # shellcheck disable=SC1091
  [ ! -f "$HOME/.cargo/env" ] || . "$HOME/.cargo/env"
  local r=$WORK/roots/setup rc=0 out=$LOGS/setup-demo.log src rustup_home cargo_bin rver tkey tdir t0 bin host_ca
  rustup_home=$(rustup show home 2>/dev/null || echo "${RUSTUP_HOME:-$HOME/.rustup}")
  cargo_bin=$(dirname "$(command -v cargo 2>/dev/null || echo "$HOME/.cargo/bin/cargo")")
  if [ ! -x "$cargo_bin/rustup" ] || [ ! -d "$rustup_home/toolchains" ]; then
    missing "a rustup toolchain on the host (rustup home $rustup_home, cargo in $cargo_bin)"
  fi

  phase "B: unpack a fresh root"
  new_root setup
  src=$r$IN_HOME/trickle-edge
  mkdir -p "$src"
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z -co --exclude-standard \
      | tar -C "$REPO" --null -T - --ignore-failed-read -cf - | tar -C "$src" -xf -
  else
    tar -C "$REPO" --exclude=./target --exclude=./.git -cf - . | tar -C "$src" -xf -
  fi
  if [ ! -f "$src/ci/setup.sh" ] || [ ! -f "$src/Cargo.lock" ]; then
    die "the copy of the tree in root B lacks ci/setup.sh or Cargo.lock"
  fi
  say "   copied $(find "$src" -type f | wc -l) files of the working tree to $IN_HOME/trickle-edge"
  bind "$rustup_home" "$r$IN_HOME/.rustup" ro
  bind "$cargo_bin" "$r$IN_HOME/.cargo/bin" ro
  if [ -f "$HOME/.cargo/env" ]; then
    cp "$HOME/.cargo/env" "$r$IN_HOME/.cargo/env"
  else
    printf '#!/bin/sh\ncase ":${PATH}:" in *:"$HOME/.cargo/bin":*) ;; *) export PATH="$HOME/.cargo/bin:$PATH" ;; esac\n' \
      > "$r$IN_HOME/.cargo/env"
  fi
  bind "$CACHE/cargo-registry" "$r$IN_HOME/.cargo/registry"
  # cargo reaches crates.io through whatever this host's network needs (a
  # TLS-intercepting egress proxy adds its CA to the host's bundle): give
  # cargo, and only cargo, the host's CA bundle. The agent is not affected.
  host_ca=${CARGO_HTTP_CAINFO:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
  if [ -r "$host_ca" ]; then
    install -m 0644 "$host_ca" "$r/etc/fresh-root-host-ca.crt"
    ROOT_ENV+=(CARGO_HTTP_CAINFO=/etc/fresh-root-host-ca.crt)
  fi
  # The toolchain the root will use (rustup's default there; no override).
  rver=$(in_root "$r" sh -c '. "$HOME/.cargo/env" && cd "$HOME/trickle-edge" && rustc -V' 2>&1) \
    || { printf '%s\n' "$rver" | indent; die "root B: the host's rustup toolchain does not run in the root"; }
  rver=$(printf '%s' "$rver" | awk '/^rustc /{print $2; exit}')
  [ -n "$rver" ] || die "root B: cannot read the rustc version in the root"
  tkey=target-$rver
  tdir=$CACHE/$tkey
  # Target dir cache: keep the two newest keys.
  mkdir -p "$tdir"; touch "$tdir"
  find "$CACHE" -maxdepth 1 -name 'target-*' -type d -printf '%T@ %p\n' | sort -rn | tail -n +3 | cut -d' ' -f2- \
    | while read -r old; do
        mountpoint -q "$old" || { say "   dropping old target cache $(basename "$old")"; rm -rf --one-file-system "$old"; }
      done
  if [ -n "$(ls -A "$tdir")" ]; then say "   target dir: cached $tkey"; else say "   target dir: new $tkey"; fi
  bind "$tdir" "$src/target"

  phase "B: bash ci/setup.sh"
  step setup-setup in_root "$r" bash -c 'cd "$HOME/trickle-edge" && bash ci/setup.sh'
  in_root "$r" bash -c '. "$HOME/.cargo/env" && command -v cargo && cargo -V && rustc -V' > "$LOGS/setup-cargo.log" 2>&1 \
    || { indent < "$LOGS/setup-cargo.log"; die "root B: no working cargo after sourcing \$HOME/.cargo/env"; }
  say "   $(paste -sd' ' "$LOGS/setup-cargo.log");" \
      "$(in_root "$r" dpkg-query -W -f='${db:Status-Abbrev}\n' | grep -c '^ii') packages in the root"

  phase "B: cargo build --release --locked (trickle-edge recompiled)"
  touch "$src/src/main.rs" "$src/src/lib.rs"
  t0=$(date +%s)
  step setup-build in_root "$r" bash -c '. "$HOME/.cargo/env" && cd "$HOME/trickle-edge" && cargo build --release --locked'
  bin=$src/target/release/trickle-edge
  [ -x "$bin" ] || die "root B: no target/release/trickle-edge after the build"
  [ "$(stat -c %Y "$bin")" -ge "$t0" ] || die "root B: target/release/trickle-edge was not relinked by this build"
  say "   $(grep -cE '^ *Compiling ' "$LOGS/setup-build.log") crates compiled; $(grep -E '^ *Finished ' "$LOGS/setup-build.log" | sed 's/^ *//')"
  in_root "$r" sh -c 'ldd "$HOME/trickle-edge/target/release/trickle-edge"' | grep -E 'libgst(reamer|app|base)-1' | sed 's/ (0x.*//; s/^[[:space:]]*//' | indent

  phase "B: bash ci/demo.sh --duration 10"
  timeout -k 5 300 chroot "$r" "${ROOT_ENV[@]}" \
    bash -c 'cd "$HOME/trickle-edge" && exec bash ci/demo.sh --duration 10' > "$out" 2>&1 < /dev/null || rc=$?
  check_summary "root B (ci/setup.sh + ci/demo.sh)" "$out" "$rc"
  phase_end
}

run_half() {  # NAME FUNCTION ROOT: in a subshell, so the other half still runs
  local rc
  set +e
  (
    HALF_ROOT=$3
    trap 'rc=$?; if [ "$rc" -ne 0 ]; then phase_end FAILED; fi; phase_end
          teardown "$HALF_ROOT" || rc=4; exit "$rc"' EXIT
    trap 'exit 130' INT; trap 'exit 143' TERM; trap 'exit 129' HUP
    set -e
    "$2"
  )
  rc=$?
  set -e
  RESULTS+=("$1: $([ "$rc" -eq 0 ] && echo OK || echo "FAILED (exit $rc)")")
  [ "$rc" -eq 0 ] || FAILED=$(( FAILED > rc ? FAILED : rc ))
}
RESULTS=(); FAILED=0
[ "$ONLY" = setup ] || run_half "root A (.deb install + demo)" half_deb "$WORK/roots/deb"
[ "$ONLY" = deb ] || run_half "root B (ci/setup.sh + ci/demo.sh)" half_setup "$WORK/roots/setup"
for l in "${RESULTS[@]}"; do say "$l"; done
say "logs: $LOGS"
if [ "$FAILED" -ne 0 ]; then
  say "FAIL: see the messages above"
  exit "$FAILED"
fi
say "OK"
