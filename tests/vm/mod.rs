//! The VM side of `tests/vm_gpio.rs`: the check that a test runs inside the
//! QEMU VM of `ci/vm-gpio.sh`, gpio-sim chips made through configfs, and the
//! agent run as a process. Shared by `vm_gpio` and `vm_v4l2`, each using
//! part of it: hence the `dead_code` allowance, as in `tests/support`.
#![allow(dead_code)]

pub mod agent;
pub mod gpio_sim;
pub mod trace;

use std::path::PathBuf;

/// Fails (never skips) unless this runs inside the VM: its init sets
/// `TRICKLE_EDGE_VM=1` and has loaded gpio-sim.
pub fn inside_vm() {
    assert_eq!(
        std::env::var("TRICKLE_EDGE_VM").as_deref(),
        Ok("1"),
        "tests/vm_gpio.rs runs only inside the QEMU VM with gpio-sim: bash ci/vm-gpio.sh"
    );
    assert!(
        std::path::Path::new(gpio_sim::CONFIGFS).is_dir(),
        "{} missing: gpio-sim is not loaded (bash ci/vm-gpio.sh loads it)",
        gpio_sim::CONFIGFS
    );
}

/// The `trickle-edge` binary copied into the VM (`TRICKLE_EDGE_BIN`, set by
/// the VM's init).
pub fn agent_bin() -> PathBuf {
    std::env::var_os("TRICKLE_EDGE_BIN")
        .map(PathBuf::from)
        .expect("TRICKLE_EDGE_BIN (set by the VM's init)")
}
