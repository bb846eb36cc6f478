//! Simulated GPIO: transitions, pulses, failsafe, and a stuck line.

mod support;

use std::time::Duration;

use serde_json::json;
use support::actions::{build, effect};
use support::time::wait_until;
use trickle_edge::actions::Dispatched;
use trickle_edge::rules::OutputAction::{Activate, Deactivate, Deliver, Pulse};

fn two_lines() -> trickle_edge::actions::Outputs {
    build(json!({
        "door": { "type": "gpio", "backend": "simulated", "line": "GPIO17" },
        "siren": { "type": "gpio", "backend": "simulated", "line": 5, "failsafe": "active" },
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_applies_failsafe_states() {
    let out = two_lines();
    let sim = out.simulated_gpio();
    assert_eq!(sim.states_of("GPIO17"), [false]);
    assert_eq!(sim.states_of("5"), [true]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activate_deactivate_and_pulse() {
    let out = two_lines();
    let sim = out.simulated_gpio().clone();
    assert_eq!(
        out.dispatch(effect("door", Activate, 1)),
        Dispatched::Queued
    );
    wait_until("door active", || sim.states_of("GPIO17") == [false, true]).await;
    // Repeating a state does not write again; Deliver means nothing to a line.
    out.dispatch(effect("door", Activate, 2));
    out.dispatch(effect("door", Deliver, 3));
    out.dispatch(effect("door", Deactivate, 4));
    wait_until("door inactive", || {
        sim.states_of("GPIO17") == [false, true, false]
    })
    .await;
    // The line is written before the effect is counted: wait for the count.
    wait_until("three effects counted", || {
        out.counters_of("door").unwrap().sent == 3
    })
    .await;
    assert_eq!(out.counters_of("door").unwrap().sent, 3);

    out.dispatch(effect("door", Pulse { ms: 200 }, 5));
    wait_until("pulse set and cleared", || {
        sim.states_of("GPIO17") == [false, true, false, true, false]
    })
    .await;
    let t: Vec<_> = sim
        .transitions()
        .into_iter()
        .filter(|t| &*t.line == "GPIO17")
        .collect();
    assert!(
        t[4].at - t[3].at >= Duration::from_millis(200),
        "pulse cleared early"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_pulse_extends_running_pulse() {
    let out = two_lines();
    let sim = out.simulated_gpio().clone();
    out.dispatch(effect("door", Pulse { ms: 1_500 }, 1));
    wait_until("pulse started", || sim.states_of("GPIO17") == [false, true]).await;
    let second = tokio::time::Instant::now();
    out.dispatch(effect("door", Pulse { ms: 3_000 }, 2));
    wait_until("pulse ended", || sim.states_of("GPIO17").len() == 3).await;
    // One set, one clear: the second pulse extended the first.
    assert_eq!(sim.states_of("GPIO17"), [false, true, false]);
    let cleared = sim.transitions().last().unwrap().at;
    assert!(
        cleared >= second + Duration::from_millis(3_000),
        "extension ignored"
    );
    // A shorter pulse never shortens a running one.
    out.dispatch(effect("door", Pulse { ms: 2_000 }, 3));
    wait_until("pulse 2 started", || sim.states_of("GPIO17").len() == 4).await;
    let third = tokio::time::Instant::now();
    out.dispatch(effect("door", Pulse { ms: 10 }, 4));
    wait_until("pulse 2 ended", || sim.states_of("GPIO17").len() == 5).await;
    assert!(
        sim.transitions().last().unwrap().at >= third,
        "short pulse cut a long one"
    );
    assert_eq!(out.counters_of("door").unwrap().sent, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failsafe_resets_lines_and_cancels_pulses() {
    let out = two_lines();
    let sim = out.simulated_gpio().clone();
    out.dispatch(effect("door", Activate, 1));
    out.dispatch(effect("siren", Deactivate, 1));
    wait_until("both driven", || {
        sim.states_of("GPIO17") == [false, true] && sim.states_of("5") == [true, false]
    })
    .await;
    out.failsafe().await;
    // Applied by the time failsafe() returns.
    assert_eq!(sim.states_of("GPIO17").last(), Some(&false));
    assert_eq!(sim.states_of("5").last(), Some(&true));

    // A pulse running on an active-failsafe line must not clear it afterwards.
    let before = sim.states_of("5").len();
    out.dispatch(effect("siren", Deactivate, 2));
    out.dispatch(effect("siren", Pulse { ms: 300 }, 3));
    wait_until("siren pulse started", || {
        sim.states_of("5")[before..] == [false, true]
    })
    .await;
    // The pulse armed its end 300 ms after it set the line, at the latest.
    let pulse_end = sim
        .transitions()
        .into_iter()
        .rfind(|t| &*t.line == "5" && t.active)
        .unwrap()
        .at
        + Duration::from_millis(300);
    out.failsafe().await;
    let after = sim.states_of("5").len();
    // A negative check needs the pulse's deadline to pass; then a marker
    // effect goes through the line's own task, which also ends pulses, so
    // once the marker is counted that task has had its turn after the
    // deadline. Activate on an active line writes the same (active) state.
    tokio::time::sleep_until(pulse_end + Duration::from_millis(100)).await;
    let sent = out.counters_of("siren").unwrap().sent;
    out.dispatch(effect("siren", Activate, 4));
    wait_until("marker effect applied on the siren line", || {
        out.counters_of("siren").unwrap().sent == sent + 1
    })
    .await;
    let since = sim.states_of("5")[after..].to_vec();
    assert!(
        since.iter().all(|&active| active),
        "pulse end fired after failsafe: {since:?}"
    );
    assert_eq!(sim.states_of("5").last(), Some(&true));

    // The output keeps working after a failsafe.
    out.dispatch(effect("door", Activate, 4));
    wait_until("door active again", || {
        sim.states_of("GPIO17").last() == Some(&true)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_applies_failsafe() {
    let out = two_lines();
    let sim = out.simulated_gpio().clone();
    out.dispatch(effect("door", Activate, 1));
    out.dispatch(effect("siren", Deactivate, 1));
    wait_until("both driven", || {
        sim.states_of("GPIO17").last() == Some(&true) && sim.states_of("5").last() == Some(&false)
    })
    .await;
    drop(out);
    assert_eq!(sim.states_of("GPIO17").last(), Some(&false));
    assert_eq!(sim.states_of("5").last(), Some(&true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_line_does_not_stall_other_outputs() {
    let out = build(json!({
        "stuck": { "type": "gpio", "backend": "simulated", "line": "STUCK", "write_timeout": "200ms" },
        "fine": { "type": "gpio", "backend": "simulated", "line": "FINE" },
    }));
    let sim = out.simulated_gpio().clone();
    sim.stall("STUCK");
    out.dispatch(effect("stuck", Activate, 1));
    out.dispatch(effect("fine", Activate, 1));
    wait_until("fine line driven", || {
        sim.states_of("FINE") == [false, true]
    })
    .await;
    wait_until("stuck write timed out", || {
        let c = out.counters_of("stuck").unwrap();
        c.timeouts == 1 && c.failed == 1
    })
    .await;
    // While the first call is still stuck, later writes fail fast instead of
    // piling up blocking threads.
    out.dispatch(effect("stuck", Deactivate, 2));
    out.dispatch(effect("stuck", Activate, 3));
    wait_until("later writes refused", || {
        out.counters_of("stuck").unwrap().failed >= 2
    })
    .await;
    // failsafe() still returns, and the healthy line still gets it.
    out.dispatch(effect("fine", Activate, 2));
    out.failsafe().await;
    assert_eq!(sim.states_of("FINE").last(), Some(&false));
    sim.unstall("STUCK");
    // The stuck call finally lands (stale "active"), then the failsafe that
    // could not be applied earlier is retried on top of it.
    wait_until("failsafe retried after the stuck call", || {
        sim.states_of("STUCK") == [false, true, false]
    })
    .await;
    out.dispatch(effect("stuck", Activate, 4));
    wait_until("stuck line recovered", || {
        sim.states_of("STUCK").last() == Some(&true)
    })
    .await;
    wait_until("recovery counted", || {
        out.counters_of("stuck").unwrap().sent >= 1
    })
    .await;
}
