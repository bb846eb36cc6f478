//! Shutdown with a stuck output: bounded by the deadline, children killed,
//! GPIO lines left in their failsafe state.

mod support;

use std::time::Duration;

use serde_json::json;
use support::actions::{build, effect};
use support::time::{wait_until, within};
use support::tmp::temp_dir;
use trickle_edge::rules::OutputAction::{Activate, Deliver};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_and_ends_in_failsafe() {
    let dir = temp_dir("shutdown");
    // A grandchild in the child's process group must not outlive shutdown.
    let script = format!("sleep 100 & echo $! > {}/pid; wait", dir.display());
    let out = build(json!({
        "door": { "type": "gpio", "backend": "simulated", "line": "DOOR" },
        "slow": { "type": "exec", "argv": ["/bin/sh", "-c", script], "timeout": "1h" },
    }));
    let sim = out.simulated_gpio().clone();
    out.dispatch(effect("door", Activate, 1));
    out.dispatch(effect("slow", Deliver, 1));
    wait_until("door active", || sim.states_of("DOOR") == [false, true]).await;
    let pid_file = dir.join("pid");
    wait_until("child started", || {
        std::fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n'))
    })
    .await;
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    within(
        "shutdown, bounded by its deadline",
        out.shutdown(Duration::from_millis(200)),
    )
    .await;
    assert_eq!(sim.states_of("DOOR").last(), Some(&false));
    wait_until("grandchild killed", || {
        !trickle_edge::procfs::Proc::Pid(pid).is_alive()
    })
    .await;
}
