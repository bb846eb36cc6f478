//! Config parsing (the shape of `[outputs.NAME]` tables) and build errors.

mod support;

use std::time::Duration;

use serde_json::json;
use support::actions::{build, configs, effect};
use trickle_edge::actions::{
    ActionError, Drive, Failsafe, GpioBackend, LineSpec, OutputConfig, Outputs, parse_duration,
};

#[test]
fn parses_every_type_with_defaults() {
    let c = configs(json!({
        "door": { "type": "gpio", "chip": "pinctrl-rp1", "line": "GPIO17", "drive": "open-drain", "bias": "pull-up" },
        "relay": { "type": "gpio", "backend": "simulated", "line": 4, "failsafe": "active", "active_low": true },
        "events": { "type": "log", "path": "/tmp/e.jsonl" },
        "cmd": { "type": "exec", "argv": ["/usr/bin/true"], "timeout": "2s" },
        "hook": { "type": "webhook", "url": "http://127.0.0.1:9/x" },
        "bus": { "type": "mqtt", "broker": "mqtt://127.0.0.1:1883", "password": "s3cret", "username": "u" },
    }));
    let OutputConfig::Gpio(door) = &c["door"] else {
        panic!()
    };
    assert_eq!(door.backend, GpioBackend::Gpiocdev);
    assert_eq!(door.line, Some(LineSpec::Name("GPIO17".into())));
    assert_eq!(door.drive, Drive::OpenDrain);
    assert_eq!(door.failsafe, Failsafe::Inactive);
    assert_eq!(door.queue, 64);
    let OutputConfig::Gpio(relay) = &c["relay"] else {
        panic!()
    };
    assert_eq!(relay.line, Some(LineSpec::Offset(4)));
    assert_eq!(relay.failsafe, Failsafe::Active);
    let OutputConfig::Log(log) = &c["events"] else {
        panic!()
    };
    assert_eq!(
        (log.max_bytes, log.max_files, log.fsync_interval),
        (10 << 20, 5, Duration::from_secs(1))
    );
    let OutputConfig::Exec(cmd) = &c["cmd"] else {
        panic!()
    };
    assert_eq!(
        (cmd.timeout, cmd.max_concurrent, cmd.output_cap),
        (Duration::from_secs(2), 2, 64 * 1024)
    );
    let OutputConfig::Webhook(hook) = &c["hook"] else {
        panic!()
    };
    assert_eq!(
        (hook.retry_min, hook.retry_max, hook.max_attempts),
        (Duration::from_millis(200), Duration::from_secs(10), 5)
    );
    let OutputConfig::Mqtt(bus) = &c["bus"] else {
        panic!()
    };
    assert_eq!(
        (bus.topic.as_str(), bus.qos, bus.retain),
        ("trickle-edge/{output}/{rule}", 0, false)
    );
    assert!(
        !format!("{bus:?}").contains("s3cret"),
        "password leaked into Debug"
    );
}

#[test]
fn rejects_unknown_fields_types_and_bad_durations() {
    let parse = |v| {
        serde_json::from_value::<OutputConfig>(v)
            .unwrap_err()
            .to_string()
    };
    assert!(parse(json!({ "type": "log", "path": "/x", "colour": "red" })).contains("colour"));
    assert!(parse(json!({ "type": "smoke", "path": "/x" })).contains("smoke"));
    assert!(parse(json!({ "type": "exec", "argv": ["x"], "timeout": "10" })).contains("\"10\""));
    assert!(parse(json!({ "type": "gpio", "drive": "sideways" })).contains("sideways"));
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
}

#[tokio::test]
async fn gpiocdev_errors_name_output_and_field() {
    // No chip is needed to reject these; a missing chip is reported by name.
    let err = Outputs::build(&configs(
        json!({ "door": { "type": "gpio", "chip": "/dev/gpiochip0" } }),
    ))
    .err()
    .unwrap();
    assert!(
        matches!(&err, ActionError::Device { output, field: "line", .. } if output == "door"),
        "{err}"
    );
    let err = Outputs::build(&configs(json!({ "door": { "type": "gpio", "line": 17 } })))
        .err()
        .unwrap();
    assert!(
        matches!(&err, ActionError::Device { field: "chip", .. }),
        "{err}"
    );
    let err = Outputs::build(&configs(
        json!({ "door": { "type": "gpio", "chip": "no-such-label", "line": 17 } }),
    ))
    .err()
    .unwrap();
    assert!(
        err.to_string().starts_with("output `door`: `chip`:")
            && err.to_string().contains("no-such-label"),
        "{err}"
    );
}

#[tokio::test]
async fn unknown_output_and_full_queue_are_counted() {
    let dir = support::tmp::temp_dir("cfg");
    let out = build(json!({
        "events": { "type": "log", "path": dir.join("e"), "queue": 1 },
        "cmd": { "type": "exec", "argv": ["/bin/true"], "queue": 1 },
    }));
    use trickle_edge::actions::Dispatched;
    use trickle_edge::rules::OutputAction::Deliver;
    assert_eq!(
        out.dispatch(effect("nope", Deliver, 1)),
        Dispatched::UnknownOutput
    );
    assert_eq!(out.unrouted(), 1);
    // Current-thread runtime: the tasks cannot run between these calls.
    assert_eq!(out.dispatch(effect("cmd", Deliver, 1)), Dispatched::Queued);
    assert_eq!(out.dispatch(effect("cmd", Deliver, 2)), Dispatched::Dropped);
    let cmd = out.counters_of("cmd").unwrap();
    assert_eq!((cmd.fired, cmd.dropped), (2, 1));
    // A log is a record: what its queue cannot hold goes to its overflow file.
    assert_eq!(
        out.dispatch(effect("events", Deliver, 1)),
        Dispatched::Queued
    );
    assert_eq!(
        out.dispatch(effect("events", Deliver, 2)),
        Dispatched::Spilled
    );
    let events = out.counters_of("events").unwrap();
    assert_eq!((events.fired, events.spilled, events.dropped), (2, 1, 0));
}
