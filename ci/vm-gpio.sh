#!/usr/bin/env bash
# GPIO and V4L2 on a real Linux kernel: boots Debian's kernel under QEMU
# (TCG: no KVM needed) with gpio-sim, and runs tests/vm_gpio.rs inside it
# through the real gpiocdev output code and the real `trickle-edge` binary,
# then tests/vm_v4l2.rs against the kernel's vivid virtual camera.
#
#   bash ci/vm-gpio.sh [TEST-NAME-FILTER...]
#
# Prints the VM's console (the tests' output and their summary), the times
# of each phase, and exits 0 only when the VM reported that every test
# passed: the VM's init writes the result to QEMU's isa-debug-exit port
# (QEMU then exits 1 = passed, 3 = failed); any other end (timeout, panic,
# no report) is a failure too.
#
# What it builds, all from Debian's registry by name and version, cached
# under ${XDG_CACHE_HOME:-~/.cache}/trickle-edge-vm:
# - kernel-KVER/: vmlinuz, a module subset (boot: virtio, ext4; tests:
#   configfs, vivid and its media deps) from linux-image-KVER-unsigned, and
#   busybox from busybox-static, for the initramfs. Extracted with
#   `apt-get download` + `dpkg-deb -x`: nothing is installed on the host.
# - gpio-sim-KVER-HASH/: gpio-sim.ko and irq_sim.ko, built out of tree
#   (Debian builds neither) from linux-source-6.1 against the matching
#   linux-headers-KVER; irq_sim's one call to irq_to_desc() (not exported
#   to modules) becomes generic_handle_irq(), which is. The source
#   extraction is deleted after the build.
# - root-HASH.img: an ext4 image of `mmdebstrap --variant=minbase bookworm`
#   plus the GStreamer runtime, kmod and iproute2, with the kernel's module
#   subset above under /lib/modules/KVER; keyed by package list, mirror and
#   kernel. QEMU opens it with snapshot=on (never written).
# - Per run (not cached): the initramfs (busybox + boot modules + the
#   /init in ci/vm/initramfs-init) and the payload disk: the test binary
#   (`cargo test --features vm-tests --test vm_gpio --no-run`), the
#   trickle-edge binary, gpio-sim.ko + irq_sim.ko and ci/vm/vm-init.sh
#   (the VM's init=).
#
# Host packages it installs itself (apt-get install, idempotent):
# qemu-system-x86, mmdebstrap, e2fsprogs, cpio, kmod, gcc-12, make,
# linux-source-6.1=KPKG and linux-headers-KVER=KPKG.
#
# Environment:
#   VM_KERNEL_ABI (57) and VM_KERNEL_VERSION (6.1.192-3): the Debian kernel
#     (linux-image-6.1.0-ABI-amd64-unsigned at that version)
#   VM_TIMEOUT  seconds the VM may run before it counts as not reporting (1200)
#   VM_MEMORY   MiB of guest memory (1024); VM_SMP vCPUs (2)
#   DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR  (default: the host's apt sources)
#   CARGO_TARGET_DIR  where the test binaries are built (target)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

say() { printf 'vm-gpio: %s\n' "$*" >&2; }
die() { say "FAIL: $*"; exit 1; }

case "${1:-}" in -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
[ "$(id -u)" -eq 0 ] || die "run as root (apt-get, mmdebstrap and the root image's file owners need it)"
[ "$(dpkg --print-architecture)" = amd64 ] || die "an amd64 host is needed (the VM is x86_64)"

ABI=${VM_KERNEL_ABI:-57}
KPKG=${VM_KERNEL_VERSION:-6.1.192-3}
KVER=6.1.0-$ABI-amd64
TIMEOUT=${VM_TIMEOUT:-1200}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/trickle-edge-vm
export DEBIAN_FRONTEND=noninteractive
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd -P)
exec 9> "$CACHE/.lock"
flock -n 9 || { say "waiting for another run holding $CACHE/.lock"; flock 9; }

# --- timing ----------------------------------------------------------------------
now_ms() { local t=${EPOCHREALTIME//[^0-9]/}; echo $(( t / 1000 )); }
fmt_ms() { printf '%d.%d s' $(( $1 / 1000 )) $(( $1 % 1000 / 100 )); }
T_START=$(now_ms)
TIMES=()
PH_NAME=
phase_end() {
  [ -n "$PH_NAME" ] || return 0
  local ms=$(( $(now_ms) - PH_T0 ))
  TIMES+=("$(printf '%-58s %9s' "$PH_NAME" "$(fmt_ms "$ms")")")
  PH_NAME=
}
phase() { phase_end; PH_NAME=$1; PH_T0=$(now_ms); say "$1"; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/trickle-edge-vm.XXXXXX")
on_exit() {
  local rc=$?
  set +e
  phase_end
  say "times:"
  for t in "${TIMES[@]}"; do say "  $t"; done
  say "  total $(fmt_ms $(( $(now_ms) - T_START )))"
  rm -rf --one-file-system "$WORK"
  exit "$rc"
}
trap on_exit EXIT

apt_install() {  # PKG[=VERSION]...: only those not installed at that version
  local want=() p name ver have
  for p in "$@"; do
    name=${p%%=*}; ver=; [ "$name" = "$p" ] || ver=${p#*=}
    have=$(dpkg-query -W -f='${db:Status-Abbrev} ${Version}' "$name" 2>/dev/null || true)
    case "$have" in "ii "*) [ -z "$ver" ] || [ "${have#ii  }" = "$ver" ] && continue ;; esac
    want+=("$p")
  done
  [ ${#want[@]} -gt 0 ] || return 0
  say "   apt-get install ${want[*]}"
  local a=(apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${want[@]}")
  "${a[@]}" > "$WORK/apt.log" 2>&1 \
    || { apt-get -o DPkg::Lock::Timeout=900 update -qq >> "$WORK/apt.log" 2>&1 && "${a[@]}" >> "$WORK/apt.log" 2>&1; } \
    || { tail -n 30 "$WORK/apt.log" >&2; die "apt-get install ${want[*]}"; }
}

phase "host packages"
apt_install qemu-system-x86 mmdebstrap e2fsprogs cpio kmod gcc-12 make xz-utils \
  "linux-source-6.1=$KPKG" "linux-headers-$KVER=$KPKG"
HEADERS=/usr/src/linux-headers-$KVER
[ -f "$HEADERS/Module.symvers" ] || die "no $HEADERS/Module.symvers after installing linux-headers-$KVER"

# --- kernel, its modules, busybox --------------------------------------------------
# Modules loaded by the initramfs (in modules.dep order) and those the root
# gets (modprobe'd by the tests), each with its dependencies.
BOOT_MODULES=(virtio_pci virtio_blk crc32c_generic ext4)
ROOT_MODULES=(configfs vivid)
KDIR=$CACHE/kernel-$KVER-$KPKG
mod_closure() {  # MODULES_DIR NAME...: .ko paths (relative), dependencies first
  local dir=$1; shift
  awk -v want="$*" '
    { sub(":", "", $1); deps[$1] = ""; for (i = 2; i <= NF; i++) deps[$1] = deps[$1] " " $i
      n = $1; sub(/.*\//, "", n); sub(/\.ko(\.[a-z]+)?$/, "", n); gsub("-", "_", n); path[n] = $1 }
    function visit(p,   d, k, i) { if (p in seen) return; seen[p] = 1
      k = split(deps[p], d, " "); for (i = 1; i <= k; i++) visit(d[i]); print p }
    END { k = split(want, w, " "); for (i = 1; i <= k; i++) {
            if (!(w[i] in path)) { print "MISSING " w[i]; continue } visit(path[w[i]]) } }' "$dir/modules.dep"
}
phase "kernel $KVER ($KPKG): vmlinuz, modules, busybox"
if [ -f "$KDIR/done" ]; then
  PH_NAME="kernel $KVER (cached)"
else
  rm -rf "$KDIR"; mkdir -p "$WORK/deb" "$KDIR"
  ( cd "$WORK/deb" && apt-get download -qq "linux-image-$KVER-unsigned=$KPKG" busybox-static ) > "$WORK/apt.log" 2>&1 \
    || { cat "$WORK/apt.log" >&2; die "apt-get download linux-image-$KVER-unsigned=$KPKG busybox-static"; }
  for d in "$WORK"/deb/*.deb; do dpkg-deb -x "$d" "$WORK/x"; done
  [ -f "$WORK/x/boot/vmlinuz-$KVER" ] || die "no boot/vmlinuz-$KVER in linux-image-$KVER-unsigned"
  cp "$WORK/x/boot/vmlinuz-$KVER" "$KDIR/vmlinuz"
  cp "$WORK/x/bin/busybox" "$KDIR/busybox"
  depmod -b "$WORK/x" "$KVER"
  src=$WORK/x/lib/modules/$KVER
  for set in boot root; do
    if [ $set = boot ]; then names=("${BOOT_MODULES[@]}"); else names=("${ROOT_MODULES[@]}"); fi
    mod_closure "$src" "${names[@]}" > "$KDIR/$set.list"
    ! grep '^MISSING' "$KDIR/$set.list" || die "modules not in linux-image-$KVER-unsigned (see above)"
    while read -r m; do install -D -m 0644 "$src/$m" "$KDIR/modules/$m"; done < "$KDIR/$set.list"
  done
  cp "$src"/modules.builtin* "$src/modules.order" "$KDIR/modules/"
  rm -rf "$WORK/x" "$WORK/deb"
  touch "$KDIR/done"
fi

# --- gpio-sim and irq_sim, out of tree ------------------------------------------------
# Keyed by the kernel and the build steps between the two markers below.
SIMKEY=$(sed -n '/^# >>> gpio-sim build/,/^# <<< gpio-sim build/p' "$0" | sha256sum | cut -c1-12)
SIMDIR=$CACHE/gpio-sim-$KVER-$KPKG-$SIMKEY
phase "gpio-sim + irq_sim modules (out of tree, against linux-headers-$KVER)"
# >>> gpio-sim build
if [ -f "$SIMDIR/gpio-sim.ko" ] && [ -f "$SIMDIR/irq_sim.ko" ]; then
  PH_NAME="gpio-sim + irq_sim modules (cached)"
else
  b=$WORK/kbuild; mkdir -p "$b"
  tar -C "$WORK" -xJf /usr/src/linux-source-6.1.tar.xz \
    linux-source-6.1/drivers/gpio/gpio-sim.c linux-source-6.1/drivers/gpio/gpiolib.h \
    linux-source-6.1/kernel/irq/irq_sim.c
  cp "$WORK"/linux-source-6.1/drivers/gpio/{gpio-sim.c,gpiolib.h} "$WORK/linux-source-6.1/kernel/irq/irq_sim.c" "$b/"
  rm -rf "$WORK/linux-source-6.1"
  # irq_to_desc() is not exported to modules; generic_handle_irq() looks the
  # descriptor up and runs the same flow handler (handle_simple_irq, set in
  # irq_sim_domain_map).
  grep -q 'handle_simple_irq(irq_to_desc(irqnum));' "$b/irq_sim.c" \
    || die "linux-source-6.1 $KPKG: irq_sim.c no longer calls handle_simple_irq(irq_to_desc(irqnum))"
  sed -i 's/handle_simple_irq(irq_to_desc(irqnum));/generic_handle_irq(irqnum);/' "$b/irq_sim.c"
  printf '\n#include <linux/module.h>\nMODULE_LICENSE("GPL");\nMODULE_DESCRIPTION("irq_sim built as a module for trickle-edge CI");\n' >> "$b/irq_sim.c"
  printf '# irq_sim is built in when CONFIG_IRQ_SIM=y; Debian leaves it out.\nobj-m := irq_sim.o gpio-sim.o\n' > "$b/Kbuild"
  make -C "$HEADERS" M="$b" modules > "$WORK/kbuild.log" 2>&1 || { tail -n 40 "$WORK/kbuild.log" >&2; die "building gpio-sim/irq_sim"; }
  grep -q 'WARNING: modpost: .*undefined' "$WORK/kbuild.log" && { grep modpost "$WORK/kbuild.log" >&2; die "undefined symbols in gpio-sim/irq_sim"; }
  mkdir -p "$SIMDIR"; cp "$b/gpio-sim.ko" "$b/irq_sim.ko" "$SIMDIR/"
  rm -rf "$b"
  find "$CACHE" -maxdepth 1 -name 'gpio-sim-*' -type d ! -path "$SIMDIR" -exec rm -rf {} +
fi
# <<< gpio-sim build

# --- the root image --------------------------------------------------------------------
. ci/apt-sources.sh  # sources_uri (the working directory is the repository root)
MIRROR=${DEBIAN_MIRROR:-$(sources_uri bookworm)}
[ -n "$MIRROR" ] || die "no Debian bookworm apt source (set DEBIAN_MIRROR)"
SEC_MIRROR=${DEBIAN_SECURITY_MIRROR:-$(sources_uri bookworm-security)}
{
  echo "deb $MIRROR bookworm main"
  echo "deb $MIRROR bookworm-updates main"
  [ -z "$SEC_MIRROR" ] || echo "deb $SEC_MIRROR bookworm-security main"
} > "$WORK/sources.list"
apt-config dump 2>/dev/null \
  | grep -E '^Acquire::(https?|ftp)::Proxy(::[^ ]+)? |^Acquire::Check-(Valid-Until|Date) ' > "$WORK/apt-host.conf" || true
# The GStreamer runtime the agent and the tests' decoder use (as in
# ci/setup.sh), and what vm-init.sh runs.
ROOT_PACKAGES=(kmod iproute2 procps mount
  libgstreamer1.0-0 libgstreamer-plugins-base1.0-0 gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
  gstreamer1.0-libav gstreamer1.0-tools v4l-utils)
ROOTKEY=$( { printf '%s\n' "${ROOT_PACKAGES[@]}"; cat "$WORK/sources.list" "$WORK/apt-host.conf";
             echo "$KVER $KPKG"; cat "$KDIR/root.list"; mmdebstrap --version; } | sha256sum | cut -c1-16)
ROOTIMG=$CACHE/root-$ROOTKEY.img
phase "root image (mmdebstrap minbase + GStreamer + modules)"
if [ -f "$ROOTIMG" ]; then
  PH_NAME="root image (cached root-$ROOTKEY.img)"
else
  r=$WORK/root
  mm=(mmdebstrap --mode=root --variant=minbase --include="$(IFS=,; echo "${ROOT_PACKAGES[*]}")")
  [ ! -s "$WORK/apt-host.conf" ] || mm+=("--aptopt=$WORK/apt-host.conf")
  # The GStreamer registry is made once here, not by the first test under TCG.
  mm+=(--customize-hook='chroot "$1" env HOME=/root gst-inspect-1.0 > /dev/null'
       --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*_Packages "$1"/usr/share/doc "$1"/usr/share/man')
  "${mm[@]}" bookworm "$r" "$WORK/sources.list" > "$WORK/mmdebstrap.log" 2>&1 \
    || { tail -n 40 "$WORK/mmdebstrap.log" >&2; die "mmdebstrap"; }
  m=$r/lib/modules/$KVER
  mkdir -p "$m"
  cp -a "$KDIR/modules/." "$m/"
  depmod -b "$r" "$KVER"
  echo trickle-edge-vm > "$r/etc/hostname"
  size_mb=$(( $(du -sm "$r" | cut -f1) * 5 / 4 + 200 ))
  mke2fs -q -t ext4 -L vm-root -d "$r" "$ROOTIMG.tmp" "${size_mb}M" || die "mke2fs of the root image"
  mv "$ROOTIMG.tmp" "$ROOTIMG"
  rm -rf --one-file-system "$r"
  find "$CACHE" -maxdepth 1 -name 'root-*.img' ! -path "$ROOTIMG" -delete
fi

# --- per run: initramfs and payload ------------------------------------------------------
phase "initramfs"
i=$WORK/initramfs
mkdir -p "$i/bin" "$i/modules"
cp "$KDIR/busybox" "$i/bin/busybox"
install -m 0755 ci/vm/initramfs-init "$i/init"
: > "$i/modules.list"
while read -r m; do cp "$KDIR/modules/$m" "$i/modules/"; basename "$m" >> "$i/modules.list"; done < "$KDIR/boot.list"
( cd "$i" && find . | cpio -o -H newc --quiet | gzip -1 ) > "$WORK/initrd.gz"

phase "test binaries (cargo test --features vm-tests --test vm_gpio --test vm_v4l2 --no-run)"
# shellcheck disable=SC1091
[ ! -f "$HOME/.cargo/env" ] || . "$HOME/.cargo/env"
cargo test --locked --features vm-tests --test vm_gpio --test vm_v4l2 --no-run --message-format=json-render-diagnostics \
  > "$WORK/cargo.json" || die "building the VM tests"
executable() {  # KIND NAME: the path cargo's JSON gives for that target
  { grep -E "\"target\":\{\"kind\":\[\"$1\"\][^}]*\"name\":\"$2\"" "$WORK/cargo.json" || true; } \
    | grep -o '"executable":"[^"]*"' | tail -1 | cut -d'"' -f4
}
p=$WORK/payload
mkdir -p "$p/tests"
for t in vm_gpio vm_v4l2; do
  bin=$(executable test "$t")
  [ -x "$bin" ] || die "no $t test binary in cargo's output"
  cp "$bin" "$p/tests/$t"
done
AGENTBIN=$(executable bin trickle-edge)
[ -x "$AGENTBIN" ] || die "no trickle-edge binary in cargo's output"
cp "$AGENTBIN" "$p/trickle-edge"
# Out-of-tree modules travel with the payload, so rebuilding them does not
# invalidate the root image; vm-init.sh insmods them.
mkdir -p "$p/modules"; cp "$SIMDIR/irq_sim.ko" "$SIMDIR/gpio-sim.ko" "$p/modules/"
install -m 0755 ci/vm/vm-init.sh "$p/vm-init.sh"
printf '%s\n' "$@" > "$p/test-args"
mke2fs -q -t ext4 -L vm-payload -d "$p" "$WORK/payload.img" "$(( $(du -sm "$p" | cut -f1) + 32 ))M"

# --- boot and run ----------------------------------------------------------------------
phase "VM: boot + tests (qemu-system-x86_64 -accel tcg)"
qemu=(qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m "${VM_MEMORY:-1024}" -smp "${VM_SMP:-2}"
  -nographic -no-reboot -nic none -device isa-debug-exit,iobase=0xf4,iosize=0x04
  -kernel "$KDIR/vmlinuz" -initrd "$WORK/initrd.gz"
  -append "console=ttyS0 panic=-1 quiet loglevel=4 init=/payload/vm-init.sh"
  -drive "file=$ROOTIMG,if=virtio,format=raw,snapshot=on"
  -drive "file=$WORK/payload.img,if=virtio,format=raw,readonly=on")
t0=$(now_ms); t_init=; t_tests=; t_result=; result=
set +e
timeout -k 10 "$TIMEOUT" "${qemu[@]}" < /dev/null 2>&1 | {
  while IFS= read -r line; do
    line=${line%$'\r'}
    printf '%s\n' "$line"
    case "$line" in
      *"vm-init: root mounted"*) echo "init $(( $(now_ms) - t0 ))" >> "$WORK/marks" ;;
      *"vm-init: tests start"*) echo "tests $(( $(now_ms) - t0 ))" >> "$WORK/marks" ;;
      *"vm-init: VM-RESULT"*) echo "result $(( $(now_ms) - t0 ))" >> "$WORK/marks" ;;
    esac
  done
}
rc=${PIPESTATUS[0]}
set -e
phase_end
mark() { [ -f "$WORK/marks" ] || return 0; awk -v k="$1" '$1 == k {print $2}' "$WORK/marks"; }
t_init=$(mark init); t_tests=$(mark tests); t_result=$(mark result)
[ -z "$t_init" ] || TIMES+=("$(printf '%-58s %9s' "  VM: qemu start -> root mounted (boot)" "$(fmt_ms "$t_init")")")
[ -z "$t_tests" ] || TIMES+=("$(printf '%-58s %9s' "  VM: qemu start -> tests start" "$(fmt_ms "$t_tests")")")
[ -z "$t_result" ] || TIMES+=("$(printf '%-58s %9s' "  VM: qemu start -> result (boot-to-result)" "$(fmt_ms "$t_result")")")
case "$rc" in
  1) say "OK: every test passed inside the VM" ;;
  3) die "tests failed inside the VM (see their output above)" ;;
  124|137) die "the VM did not report within ${TIMEOUT}s (VM_TIMEOUT)" ;;
  *) die "the VM ended without reporting (qemu exit $rc)" ;;
esac
