//! A reload that reconciles outputs instead of rebuilding them all: an
//! unchanged GPIO line keeps its state and handle (no pass through
//! failsafe), a changed one is released before it is requested again, and
//! a refused reload leaves the running outputs as they were. The simulated
//! backend refuses a second request for a held line, as the kernel does
//! (EBUSY), so these tests see what a board would.

mod support;

use std::time::Duration;

use serde_json::json;
use support::actions::{configs, effect};
use support::time::wait_until;
use trickle_edge::actions::{ActionError, Outputs, SimulatedGpio};
use trickle_edge::rules::OutputAction::{Activate, Deactivate};

fn outputs(sim: &SimulatedGpio, v: serde_json::Value) -> Outputs {
    Outputs::build_with(&configs(v), sim.clone()).expect("outputs build")
}

fn door_and_lamp() -> serde_json::Value {
    json!({
        "door": { "type": "gpio", "backend": "simulated", "line": "D" },
        "lamp": { "type": "gpio", "backend": "simulated", "line": "L" },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_line_is_refused_a_second_request_as_the_kernel_does() {
    let sim = SimulatedGpio::default();
    let first = outputs(&sim, door_and_lamp());
    let e = Outputs::build_with(&configs(door_and_lamp()), sim.clone())
        .err()
        .expect("the lines are held");
    assert!(matches!(e, ActionError::Device { .. }), "{e}");
    assert!(e.to_string().contains("already held"), "{e}");
    drop(first);
    assert!(!sim.is_held("D"), "dropping the outputs releases the lines");
    outputs(&sim, door_and_lamp());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_line_keeps_its_state_through_a_reload() {
    let sim = SimulatedGpio::default();
    let old = outputs(&sim, door_and_lamp());
    old.dispatch(effect("door", Activate, 1));
    wait_until("door active", || sim.states_of("D") == [false, true]).await;
    wait_until("counted", || old.counters_of("door").unwrap().sent == 1).await;

    // The reload changes the lamp and adds a log: the door is not touched.
    let dir = support::tmp::temp_dir("reconcile");
    let new_cfg = json!({
        "door": { "type": "gpio", "backend": "simulated", "line": "D" },
        "lamp": { "type": "gpio", "backend": "simulated", "line": "L", "failsafe": "active" },
        "events": { "type": "log", "path": dir.join("e.jsonl") },
    });
    let r = old.reconcile(&configs(new_cfg));
    assert!(r.refused.is_none(), "{:?}", r.refused);
    let new = r.outputs;
    // Retiring the old outputs, as the agent does, leaves the door alone.
    old.shutdown(Duration::from_secs(2)).await;
    assert_eq!(
        sim.states_of("D"),
        [false, true],
        "no failsafe glitch on the door"
    );
    // The changed lamp was released (failsafe inactive) and requested again
    // with its new failsafe (active).
    assert_eq!(sim.states_of("L"), [false, false, true]);
    // The door's task, queue and counters are the same ones.
    assert_eq!(new.counters_of("door").unwrap().sent, 1);
    new.dispatch(effect("door", Deactivate, 2));
    wait_until("door inactive", || {
        sim.states_of("D") == [false, true, false]
    })
    .await;
    wait_until("counted on", || new.counters_of("door").unwrap().sent == 2).await;
    new.shutdown(Duration::from_secs(2)).await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_output_takes_over_its_line() {
    let sim = SimulatedGpio::default();
    let old = outputs(&sim, door_and_lamp());
    let r = old.reconcile(&configs(json!({
        "gate": { "type": "gpio", "backend": "simulated", "line": "D" },
        "lamp": { "type": "gpio", "backend": "simulated", "line": "L" },
    })));
    assert!(r.refused.is_none(), "{:?}", r.refused);
    drop(old);
    let new = r.outputs;
    new.dispatch(effect("gate", Activate, 1));
    wait_until("gate drives line D", || {
        sim.states_of("D").last() == Some(&true)
    })
    .await;
    assert_eq!(sim.states_of("L"), [false], "the lamp was kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_reload_leaves_the_running_outputs_as_they_were() {
    let sim = SimulatedGpio::default();
    let old = outputs(&sim, door_and_lamp());
    old.dispatch(effect("lamp", Activate, 1));
    wait_until("lamp active", || sim.states_of("L") == [false, true]).await;

    // Refused by the text alone: nothing is released.
    let r = old.reconcile(&configs(json!({
        "door": { "type": "gpio", "backend": "simulated", "line": "D" },
        "lamp": { "type": "gpio", "backend": "simulated", "line": "L", "failsafe": "active" },
        "hook": { "type": "webhook", "url": "ftp://example.org/x" },
    })));
    let e = r.refused.expect("ftp:// is refused");
    assert!(e.to_string().contains("only http://"), "{e}");
    drop(old);
    let old = r.outputs;
    assert_eq!(sim.states_of("L"), [false, true], "nothing released");

    // Refused by the device: the lamp was released, then restored.
    let r = old.reconcile(&configs(json!({
        "door": { "type": "gpio", "backend": "simulated", "line": "D" },
        "lamp": { "type": "gpio", "backend": "simulated", "line": "L", "failsafe": "active" },
        "extra": { "type": "gpio", "backend": "simulated", "line": "D" },
    })));
    let e = r.refused.expect("line D is held by the kept door");
    assert!(e.to_string().contains("output `extra`"), "{e}");
    assert!(r.not_restored.is_empty(), "{:?}", r.not_restored);
    drop(old);
    let restored = r.outputs;
    let names: Vec<_> = restored.kinds().map(|(n, _)| n.to_string()).collect();
    assert_eq!(names, ["door", "lamp"]);
    // The lamp is back with its old config (failsafe inactive) and works.
    assert_eq!(sim.states_of("L").last(), Some(&false));
    restored.dispatch(effect("lamp", Activate, 2));
    wait_until("restored lamp works", || {
        sim.states_of("L").last() == Some(&true)
    })
    .await;
}
