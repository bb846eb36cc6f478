#!/bin/bash
# PID 1 inside the QEMU VM of ci/vm-gpio.sh (on the payload disk, mounted
# read-only at /payload). Mounts what the tests need, loads gpio-sim, runs
# the test binary and reports through QEMU's isa-debug-exit device: port
# 0xf4 gets 0 when every test passed (QEMU exits 1) and 1 otherwise (QEMU
# exits 3). Any other QEMU exit status means the VM never reported.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8
say() { echo "vm-init: $*"; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }
report() {  # 0 = every test passed
  say "VM-RESULT rc=$1 uptime=$(uptime_s)s"
  sync
  if [ "$1" -eq 0 ]; then printf '\000' ; else printf '\001'; fi \
    | dd of=/dev/port bs=1 seek=244 count=1 conv=notrunc status=none
  # Only reached when QEMU has no isa-debug-exit device.
  echo o > /proc/sysrq-trigger
  sleep 10
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
# The kernel's gpio_value trace event times pulses (tests/vm/trace.rs).
mount -t tracefs tracefs /sys/kernel/tracing
say "root mounted at uptime $(uptime_s)s, kernel $(uname -r)"
ip link set lo up || { say "cannot bring up loopback"; report 1; }
modprobe configfs && mount -t configfs configfs /sys/kernel/config \
  || { say "no configfs"; report 1; }
# Built out of tree by ci/vm-gpio.sh (Debian's kernel has neither).
insmod /payload/modules/irq_sim.ko && insmod /payload/modules/gpio-sim.ko \
  || { say "insmod irq_sim/gpio-sim failed"; report 1; }
[ -d /sys/kernel/config/gpio-sim ] || { say "no /sys/kernel/config/gpio-sim after modprobe"; report 1; }

export TRICKLE_EDGE_VM=1 TRICKLE_EDGE_BIN=/payload/trickle-edge
export RUST_BACKTRACE=1
mapfile -t args < /payload/test-args
say "tests start at uptime $(uptime_s)s"
cd /tmp
rc=0
for t in /payload/tests/*; do
  say "running ${t##*/} --test-threads=1 ${args[*]}"
  "$t" --test-threads=1 --show-output "${args[@]}" || { say "${t##*/}: FAILED"; rc=1; }
done
report "$rc"
