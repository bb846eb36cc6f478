//! GPIO outputs on a real Linux kernel: chips made with gpio-sim (configfs),
//! driven through the real gpiocdev output code and the real `trickle-edge`
//! binary, observed through gpio-sim's sysfs view of each line.
//!
//! Runs only inside the QEMU VM of `bash ci/vm-gpio.sh`, which builds this
//! file with `--features vm-tests` (`required-features` in Cargo.toml keeps
//! it out of a plain `cargo test`, whose kernel has no gpio-sim). Outside
//! that VM every test fails, naming the script.

mod support;
mod vm;

use std::time::{Duration, Instant};

use serde_json::json;
use support::actions::{build, configs, effect};
use support::time::{wait_until, wait_until_for, within};
use support::tmp::temp_dir;
use trickle_edge::actions::Outputs;
use trickle_edge::rules::OutputAction::{Activate, Deactivate, Pulse};
use vm::agent::{Setup, signal};
use vm::gpio_sim::{Bank, SimDevice};

/// Agent runs under TCG start a GStreamer pipeline and a job: slow.
const AGENT_WAIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_line_on_a_simulated_chip_is_set_and_cleared() {
    vm::inside_vm();
    let dev = SimDevice::create(
        "set-clear",
        &[Bank::new("sim-set-clear", 8).line(3, "SC_DOOR")],
    );
    let out = build(json!({
        "door": { "type": "gpio", "line": "SC_DOOR" },
    }));
    let line = dev.line(0, 3);
    assert!(!line.value(), "failsafe inactive at start-up");
    out.dispatch(effect("door", Activate, 1));
    wait_until("SC_DOOR high", || line.value()).await;
    out.dispatch(effect("door", Deactivate, 2));
    wait_until("SC_DOOR low", || !line.value()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_are_found_by_name_across_chips_by_chip_label_and_by_chip_name() {
    vm::inside_vm();
    // A Raspberry Pi 5 header chip and an expander on one device, a second
    // device with another chip: names are unique across all of them.
    let board = SimDevice::create(
        "find-board",
        &[
            Bank::new("pinctrl-rp1", 54)
                .line(17, "GPIO17")
                .line(27, "GPIO27"),
            Bank::new("find-expander", 8).line(2, "FIND_RELAY2"),
        ],
    );
    let other = SimDevice::create(
        "find-other",
        &[Bank::new("find-other", 8).line(5, "FIND_LAMP")],
    );
    let out = build(json!({
        "by_name_anywhere": { "type": "gpio", "line": "FIND_RELAY2" },
        "by_label_and_name": { "type": "gpio", "chip": "pinctrl-rp1", "line": "GPIO17" },
        "by_label_and_offset": { "type": "gpio", "chip": "pinctrl-rp1", "line": 4 },
        "by_chip_name": { "type": "gpio", "chip": other.chip_name(0), "line": 5 },
        "by_chip_path": { "type": "gpio", "chip": format!("/dev/{}", other.chip_name(0)), "line": 6 },
    }));
    let lines = [
        ("by_name_anywhere", board.line(1, 2)),
        ("by_label_and_name", board.line(0, 17)),
        ("by_label_and_offset", board.line(0, 4)),
        ("by_chip_name", other.line(0, 5)),
        ("by_chip_path", other.line(0, 6)),
    ];
    let untouched = [board.line(0, 27), board.line(1, 0), other.line(0, 0)];
    for (i, (name, line)) in lines.iter().enumerate() {
        assert!(!line.value(), "{name} starts inactive");
        out.dispatch(effect(name, Activate, i as i64));
        wait_until(format!("{name} high"), || line.value()).await;
    }
    for line in &untouched {
        assert!(!line.value(), "a line no output names stays low");
    }
    assert_eq!(board.label(0), "pinctrl-rp1");
    // A name no chip has: the error says so and names the output.
    let e = Outputs::build(&configs(json!({
        "ghost": { "type": "gpio", "line": "NO_SUCH_LINE" },
    })))
    .err()
    .expect("an unknown line name is refused");
    assert!(
        e.to_string().contains("ghost") && e.to_string().contains("NO_SUCH_LINE"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_pulses_of_10_ms_measured_on_the_line() {
    vm::inside_vm();
    let dev = SimDevice::create("pulse", &[Bank::new("sim-pulse", 4).line(0, "PULSE_LINE")]);
    let out = build(json!({ "strobe": { "type": "gpio", "line": "PULSE_LINE" } }));
    // The kernel timestamps every value the line is set to (the gpio_value
    // trace event): no sampler that a busy host could deschedule past a
    // whole pulse.
    let trace = vm::trace::GpioValueTrace::start();
    const PULSES: usize = 100;
    for i in 0..PULSES {
        out.dispatch(effect("strobe", Pulse { ms: 10 }, i as i64));
        // Next pulse once this one has ended: each is set and cleared alone.
        let t0 = Instant::now();
        loop {
            let sets = trace.sets();
            if sets.iter().filter(|s| !s.1).count() > i {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "pulse {i} not seen ending: {sets:?}; counters {:?}",
                out.counters_of("strobe")
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let sets = trace.stop();
    let levels: Vec<bool> = sets.iter().map(|s| s.1).collect();
    assert_eq!(
        levels.len(),
        2 * PULSES,
        "every pulse set and cleared once: {sets:?}"
    );
    let widths: Vec<f64> = sets
        .chunks(2)
        .map(|p| {
            assert!(
                p[0].1 && !p[1].1,
                "a pulse is a set then a clear: {levels:?}"
            );
            (p[1].0 - p[0].0) * 1e3
        })
        .collect();
    assert!(!dev.line(0, 0).value(), "the line ends low");
    // The pulse is timed from when the set landed: never shorter on the
    // wire, however slow the kernel call (the trace clock is CLOCK_MONOTONIC).
    let shortest = widths.iter().cloned().fold(f64::MAX, f64::min);
    assert!(
        shortest >= 10.0,
        "a pulse shorter than 10 ms on the wire: {shortest:.3} ms"
    );
    let err: Vec<f64> = widths.iter().map(|w| w - 10.0).collect();
    let mean = err.iter().sum::<f64>() / err.len() as f64;
    let mean_abs = err.iter().map(|e| e.abs()).sum::<f64>() / err.len() as f64;
    let mut sorted = widths.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    println!(
        "pulse-width: {PULSES} pulses of 10 ms on a gpio-sim line (kernel gpio_value trace): \
         width min {:.2} ms, median {:.2} ms, p95 {:.2} ms, max {:.2} ms; \
         error mean {mean:+.2} ms, mean |error| {mean_abs:.2} ms",
        sorted[0],
        sorted[PULSES / 2],
        sorted[PULSES * 95 / 100],
        sorted[PULSES - 1],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_low_inverts_the_level_on_the_wire() {
    vm::inside_vm();
    let dev = SimDevice::create(
        "active-low",
        &[Bank::new("sim-active-low", 4).line(1, "AL_RELAY")],
    );
    let out = build(json!({ "relay": { "type": "gpio", "line": "AL_RELAY", "active_low": true } }));
    let line = dev.line(0, 1);
    assert!(
        line.value(),
        "inactive (failsafe) is high on an active-low line"
    );
    out.dispatch(effect("relay", Activate, 1));
    wait_until("active drives the wire low", || !line.value()).await;
    out.dispatch(effect("relay", Deactivate, 2));
    wait_until("inactive lets it high", || line.value()).await;
    let info = gpiocdev::Chip::from_path(format!("/dev/{}", dev.chip_name(0)))
        .unwrap()
        .line_info(1)
        .unwrap();
    assert!(
        info.active_low,
        "the kernel holds the request as active-low: {info:?}"
    );
    out.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bias_and_drive_reach_the_kernel() {
    vm::inside_vm();
    let dev = SimDevice::create(
        "bias-drive",
        &[Bank::new("sim-bias-drive", 4)
            .line(0, "BD_PULLUP")
            .line(1, "BD_PULLDOWN")
            .line(2, "BD_OPEN_DRAIN")
            .line(3, "BD_OPEN_SOURCE")],
    );
    let out = build(json!({
        "up": { "type": "gpio", "line": "BD_PULLUP", "bias": "pull-up" },
        "down": { "type": "gpio", "line": "BD_PULLDOWN", "bias": "pull-down" },
        "od": { "type": "gpio", "line": "BD_OPEN_DRAIN", "drive": "open-drain", "bias": "pull-up" },
        "os": { "type": "gpio", "line": "BD_OPEN_SOURCE", "drive": "open-source" },
    }));
    let chip = gpiocdev::Chip::from_path(format!("/dev/{}", dev.chip_name(0))).unwrap();
    let info = |o: u32| chip.line_info(o).unwrap();
    // gpio-sim applies the bias as its pull.
    assert_eq!(dev.line(0, 0).pull(), "pull-up");
    assert_eq!(dev.line(0, 1).pull(), "pull-down");
    assert_eq!(
        info(0).bias,
        Some(gpiocdev::line::Bias::PullUp),
        "{:?}",
        info(0)
    );
    assert_eq!(
        info(1).bias,
        Some(gpiocdev::line::Bias::PullDown),
        "{:?}",
        info(1)
    );
    assert_eq!(
        info(2).drive,
        Some(gpiocdev::line::Drive::OpenDrain),
        "{:?}",
        info(2)
    );
    assert_eq!(
        info(3).drive,
        Some(gpiocdev::line::Drive::OpenSource),
        "{:?}",
        info(3)
    );
    assert_eq!(info(2).consumer, "trickle-edge");
    // gpio-sim has no open-drain/source hardware: the kernel emulates it by
    // switching the line to input for the released level, which gpio-sim's
    // sysfs does not show (it keeps the last driven value). What it shows:
    // the driven levels, and every write accepted by the kernel.
    assert!(!dev.line(0, 2).value(), "open-drain inactive: driven low");
    out.dispatch(effect("od", Activate, 1));
    out.dispatch(effect("od", Deactivate, 2));
    out.dispatch(effect("os", Activate, 3));
    wait_until("open-source active: driven high", || dev.line(0, 3).value()).await;
    wait_until("every write counted", || {
        out.counters_of("od").unwrap().sent == 2 && out.counters_of("os").unwrap().sent == 1
    })
    .await;
    assert!(
        !dev.line(0, 2).value(),
        "open-drain inactive again: driven low"
    );
    for o in ["od", "os"] {
        assert_eq!(out.counters_of(o).unwrap().failed, 0, "{o}");
    }
    out.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_held_by_another_process_is_refused_naming_its_consumer() {
    vm::inside_vm();
    let dev = SimDevice::create("held", &[Bank::new("sim-held", 4).line(2, "HELD_STRIKE")]);
    let chip = format!("/dev/{}", dev.chip_name(0));
    // Another holder of the line (a daemon of the board, say).
    let holder = gpiocdev::Request::builder()
        .on_chip(&chip)
        .with_consumer("door-daemon")
        .with_line(2)
        .as_output(gpiocdev::line::Value::Inactive)
        .request()
        .expect("the other holder requests the line");
    let e = Outputs::build(&configs(json!({
        "strike": { "type": "gpio", "line": "HELD_STRIKE" },
    })))
    .err()
    .expect("a held line is refused");
    let msg = e.to_string();
    assert!(
        msg.contains("strike") && msg.contains("HELD_STRIKE") && msg.contains("door-daemon"),
        "the error names the output, the line and who holds it: {msg}"
    );

    // The agent binary refuses to start the same way, before any job.
    let setup = Setup::new(temp_dir("vm-held"));
    setup.write_config(
        r#"
[outputs.strike]
type = "gpio"
line = "HELD_STRIKE"
"#,
    );
    let mut agent = setup.agent();
    let status = within("the agent exits", agent.child.wait()).await.unwrap();
    assert!(!status.success(), "the agent must not run with a held line");
    wait_until("stderr read", || agent.logged("door-daemon")).await;
    drop(holder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failsafe_on_a_clean_stop() {
    vm::inside_vm();
    let dev = SimDevice::create("stop", &[Bank::new("sim-stop", 4).line(0, "STOP_RELAY")]);
    let line = dev.line(0, 0);
    // Pulled up while nobody drives it: every write of the agent (start-up
    // failsafe, rule, failsafe at stop) shows as a change, and so does the
    // release at exit.
    std::fs::write(line.value_path().with_file_name("pull"), "pull-up").unwrap();
    let setup = Setup::new(temp_dir("vm-stop"));
    setup.write_config(
        r#"
[outputs.relay]
type = "gpio"
line = "STOP_RELAY"
[[rules]]
name = "relay-on-ball"
match = { type = "detection", label = "ball" }
then = [{ output = "relay", action = "set" }, { output = "events" }]
"#,
    );
    let watch = line.watch();
    let _worker = setup.worker();
    let mut agent = setup.agent();
    wait_until_for(AGENT_WAIT, "the rule sets the relay", || {
        watch.levels() == [true, false, true]
    })
    .await;
    signal(&agent.child, "-TERM");
    let status = within("the agent stops", agent.child.wait()).await.unwrap();
    assert!(status.success(), "exit {status}:\n{}", agent.stderr());
    wait_until("released", || watch.levels().len() >= 5).await;
    assert_eq!(
        watch.stop().iter().map(|c| c.1).collect::<Vec<_>>(),
        [true, false, true, false, true],
        "pull-up, start-up failsafe, rule, failsafe at stop, released:\n{}",
        agent.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_ends_when_detections_stop() {
    vm::inside_vm();
    let dev = SimDevice::create("hold", &[Bank::new("sim-hold", 4).line(0, "HOLD_LAMP")]);
    let lamp = dev.line(0, 0);
    // A pipeline is declared dead only after a minute here: the lamp must
    // go off at the end of its hold, not by a failsafe.
    let setup = Setup::new(temp_dir("vm-hold")).pipeline_dead_after("60s");
    setup.write_config(
        r#"
[outputs.lamp]
type = "gpio"
line = "HOLD_LAMP"
[[rules]]
name = "ball-seen"
match = { type = "detection", label = "ball" }
hold = "1s"
then = [{ output = "lamp", action = "hold" }, { output = "events" }]
"#,
    );
    let watch = lamp.watch();
    let worker = setup.worker();
    let mut agent = setup.agent();
    wait_until_for(AGENT_WAIT, "the rule turns the lamp on", || {
        watch.levels() == [false, true]
    })
    .await;
    // The worker freezes: no more detections.
    signal(&worker, "-STOP");
    wait_until_for(AGENT_WAIT, "the hold runs out", || {
        watch.levels() == [false, true, false]
    })
    .await;
    assert!(
        !agent.logged("pipeline dead"),
        "the lamp went off by its hold, not a failsafe:\n{}",
        agent.stderr()
    );
    signal(&worker, "-CONT");
    signal(&agent.child, "-TERM");
    within("the agent stops", agent.child.wait()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failsafe_follows_a_dead_pipeline() {
    vm::inside_vm();
    let dev = SimDevice::create("dead", &[Bank::new("sim-dead", 4).line(1, "DEAD_SIREN")]);
    let siren = dev.line(0, 1);
    let setup = Setup::new(temp_dir("vm-dead")).pipeline_dead_after("6s");
    // The siren is on while the system is not known to be working
    // (failsafe active) and cleared by detections.
    setup.write_config(
        r#"
[outputs.siren]
type = "gpio"
line = "DEAD_SIREN"
failsafe = "active"
[[rules]]
name = "ball-seen"
match = { type = "detection", label = "ball" }
then = [{ output = "siren", action = "clear" }, { output = "events" }]
"#,
    );
    let watch = siren.watch();
    let worker = setup.worker();
    let mut agent = setup.agent();
    wait_until_for(AGENT_WAIT, "the rule clears the siren", || {
        watch.levels() == [false, true, false]
    })
    .await;
    // The worker freezes: no more pipeline events.
    signal(&worker, "-STOP");
    wait_until_for(AGENT_WAIT, "failsafe after the pipeline died", || {
        watch.levels() == [false, true, false, true]
    })
    .await;
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "the agent keeps running"
    );
    wait_until("pipeline death logged", || agent.logged("pipeline dead")).await;
    signal(&worker, "-CONT");
    signal(&agent.child, "-TERM");
    within("the agent stops", agent.child.wait()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_sigkill_starts_in_failsafe() {
    vm::inside_vm();
    let dev = SimDevice::create("kill", &[Bank::new("sim-kill", 4).line(3, "KILL_SIREN")]);
    let line = dev.line(0, 3);
    let config = r#"
[outputs.siren]
type = "gpio"
line = "KILL_SIREN"
failsafe = "active"
[[rules]]
name = "all-clear"
match = { type = "detection", label = "ball" }
then = [{ output = "siren", action = "clear" }, { output = "events" }]
"#;
    let watch = line.watch();
    for round in 1..=2 {
        let setup = Setup::new(temp_dir("vm-kill"));
        setup.write_config(config);
        let _worker = setup.worker();
        let mut agent = setup.agent();
        // Pulled down (gpio-sim's default) until requested; the request
        // itself sets the failsafe (on), then the rule clears it.
        let want: Vec<bool> = [false, true]
            .into_iter()
            .cycle()
            .take(1 + 2 * round)
            .collect();
        wait_until_for(
            AGENT_WAIT,
            format!("round {round}: failsafe then cleared"),
            || watch.levels() == want,
        )
        .await;
        signal(&agent.child, "-KILL");
        agent.child.wait().await.unwrap();
    }
    let levels: Vec<bool> = watch.stop().iter().map(|c| c.1).collect();
    assert_eq!(levels, [false, true, false, true, false]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_changed_rule_keeps_an_active_line_without_a_glitch() {
    vm::inside_vm();
    let dev = SimDevice::create(
        "reload",
        &[Bank::new("sim-reload", 4)
            .line(0, "RELOAD_RELAY")
            .line(1, "RELOAD_LAMP")],
    );
    let (relay, lamp) = (dev.line(0, 0), dev.line(0, 1));
    let setup = Setup::new(temp_dir("vm-reload"));
    let config = |rule: &str, lamp_failsafe: &str| {
        format!(
            r#"
[outputs.relay]
type = "gpio"
line = "RELOAD_RELAY"
[outputs.lamp]
type = "gpio"
line = "RELOAD_LAMP"
failsafe = "{lamp_failsafe}"
[[rules]]
name = "{rule}"
match = {{ type = "detection", label = "ball" }}
then = [{{ output = "relay", action = "set" }}, {{ output = "events" }}]
"#
        )
    };
    setup.write_config(&config("first-rule", "inactive"));
    let _worker = setup.worker();
    let mut agent = setup.agent();
    wait_until_for(AGENT_WAIT, "the first rule sets the relay", || {
        relay.value() && setup.fired("first-rule")
    })
    .await;
    let watch = relay.watch();
    // A changed rule and a changed output (the lamp's failsafe): the lamp
    // is released and requested again, the relay is not touched.
    setup.write_config(&config("second-rule", "active"));
    signal(&agent.child, "-HUP");
    wait_until_for(AGENT_WAIT, "the reloaded rule fires", || {
        setup.fired("second-rule")
    })
    .await;
    wait_until("the lamp has its new failsafe", || lamp.value()).await;
    let samples = watch.samples();
    let levels: Vec<bool> = watch.stop().iter().map(|c| c.1).collect();
    assert_eq!(
        levels,
        [true],
        "the relay never left active ({samples} samples)"
    );
    let stderr = agent.stderr();
    for bad in ["busy", "Busy", "refused"] {
        assert!(
            !stderr.contains(bad),
            "{bad:?} in the agent's log:\n{stderr}"
        );
    }
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "reload keeps the process"
    );
    signal(&agent.child, "-TERM");
    within("the agent stops", agent.child.wait()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chip_that_goes_away_is_reported_and_recovered_when_it_returns() {
    vm::inside_vm();
    let dev = SimDevice::create("gone", &[Bank::new("sim-gone", 4).line(2, "GONE_LINE")]);
    let out = build(json!({ "lamp": { "type": "gpio", "line": "GONE_LINE" } }));
    out.dispatch(effect("lamp", Activate, 1));
    wait_until("lamp on", || dev.line(0, 2).value()).await;

    dev.set_live(false);
    out.dispatch(effect("lamp", Deactivate, 2));
    wait_until("the write to a vanished chip counts as failed", || {
        out.counters_of("lamp").unwrap().failed >= 1
    })
    .await;
    assert_eq!(
        out.lost_gpio_outputs(),
        ["lamp"],
        "the output is marked failed while its chip is gone"
    );

    dev.set_live(true);
    // Back: the line is requested again (at its failsafe, inactive) and the
    // next effect lands.
    let t0 = Instant::now();
    wait_until_for(Duration::from_secs(30), "the output recovers", || {
        out.lost_gpio_outputs().is_empty()
    })
    .await;
    println!("chip returned: output recovered after {:?}", t0.elapsed());
    out.dispatch(effect("lamp", Activate, 3));
    wait_until("lamp on again", || dev.line(0, 2).value()).await;
}

/// `probe` and `check` of the real binary against real chips: what a user
/// runs to find the names a config takes, and what tells them a name is
/// wrong before the agent starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_lists_named_lines_and_check_refuses_a_line_the_chip_lacks() {
    vm::inside_vm();
    let board = SimDevice::create(
        "probe-board",
        &[
            Bank::new("pinctrl-rp1", 32)
                .line(17, "GPIO17")
                .line(27, "GPIO27"),
            Bank::new("probe-expander", 4).line(1, "PROBE_RELAY"),
        ],
    );
    let run = |args: &[&str]| {
        let out = std::process::Command::new(vm::agent_bin())
            .args(args)
            .output()
            .expect("run trickle-edge");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("$ trickle-edge {}\n{text}", args.join(" "));
        (out.status.success(), text)
    };

    let (ok, probe) = run(&["probe"]);
    assert!(ok, "probe fails:\n{probe}");
    for want in [
        format!("/dev/{} label=pinctrl-rp1 lines=32", board.chip_name(0)),
        "17=GPIO17 27=GPIO27".to_string(),
        format!("/dev/{} label=probe-expander lines=4", board.chip_name(1)),
        "1=PROBE_RELAY".to_string(),
    ] {
        assert!(probe.contains(&want), "probe lacks {want:?}:\n{probe}");
    }

    let setup = Setup::new(temp_dir("vm-check"));
    setup.write_config(
        r#"
[outputs.relay]
type = "gpio"
chip = "pinctrl-rp1"
line = "GPIO71"
"#,
    );
    let config = setup.config.display().to_string();
    let text = std::fs::read_to_string(&setup.config).unwrap();
    let row = 1 + text
        .lines()
        .position(|l| l == r#"line = "GPIO71""#)
        .unwrap();
    let (ok, wrong) = run(&["check", "--config", &config]);
    assert!(!ok, "check accepts a line the chip lacks:\n{wrong}");
    for want in [
        format!("{config}:{row}:1"),
        "GPIO71".to_string(),
        "GPIO17, GPIO27".to_string(),
        "did you mean `GPIO17`".to_string(),
    ] {
        assert!(
            wrong.contains(&want),
            "check's error lacks {want:?}:\n{wrong}"
        );
    }

    setup.write_config(
        r#"
[outputs.relay]
type = "gpio"
chip = "pinctrl-rp1"
line = "GPIO17"
"#,
    );
    let (ok, right) = run(&["check", "--config", &config]);
    assert!(ok, "check refuses a line the chip has:\n{right}");
}
