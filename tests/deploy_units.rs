//! The packaged systemd units agree with the agent: systemd's watchdog
//! (`WatchdogSec=`) must outlast the agent's ping interval
//! (`supervisor.watchdog_interval`), or systemd kills a healthy agent.
//!
//! The interval is checked both as the agent's built-in default
//! (`SupervisorConfig::default()`, the value the agent uses when the config
//! leaves it out) and as set in `examples/config.toml`, the file the package
//! installs as /etc/trickle-edge/config.toml.

use std::path::{Path, PathBuf};
use std::time::Duration;

use trickle_edge::config::SupervisorConfig;
use trickle_edge::duration::parse_duration;

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_file(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// The values of `key=` in the `[Service]` section, in order (comments and
/// other sections skipped).
fn service_values(unit: &str, key: &str) -> Vec<String> {
    let mut section = "";
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if section != "[Service]" {
            continue;
        }
        if let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            out.push(v.trim().to_owned());
        }
    }
    out
}

fn service_value(unit: &str, key: &str) -> String {
    let values = service_values(unit, key);
    assert_eq!(
        values.len(),
        1,
        "expected exactly one {key}= in [Service], got {values:?}"
    );
    values.into_iter().next().unwrap()
}

/// A systemd time span as used in unit files: "30s", "1min 30s", "500ms",
/// "2m", or a bare number of seconds (systemd.time(7)).
fn systemd_timespan(s: &str) -> Duration {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Duration::from_secs(secs);
    }
    let mut total = Duration::ZERO;
    for part in s.split_whitespace() {
        let split = part
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(part.len());
        let (num, unit) = part.split_at(split);
        let num: f64 = num
            .parse()
            .unwrap_or_else(|_| panic!("bad time span {s:?}"));
        let unit_secs = match unit {
            "us" | "usec" => 1e-6,
            "ms" | "msec" => 1e-3,
            "" | "s" | "sec" | "second" | "seconds" => 1.0,
            "m" | "min" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hour" | "hours" => 3600.0,
            _ => panic!("unknown unit {unit:?} in time span {s:?}"),
        };
        total += Duration::from_secs_f64(num * unit_secs);
    }
    total
}

/// The agent's watchdog ping intervals to check against: its built-in
/// default, and the packaged example config's value when it sets one.
fn agent_watchdog_intervals() -> Vec<(Duration, String)> {
    let default = SupervisorConfig::default().watchdog_interval;
    let mut out = vec![(default, format!("built-in default {default:?}"))];
    let example = repo_file("examples/config.toml");
    if let Ok(text) = std::fs::read_to_string(&example) {
        let doc: toml::Table = text.parse().expect("examples/config.toml is valid TOML");
        if let Some(v) = doc
            .get("supervisor")
            .and_then(|s| s.get("watchdog_interval"))
            .and_then(|v| v.as_str())
        {
            let d = parse_duration(v).expect("supervisor.watchdog_interval parses");
            out.push((
                d,
                format!("examples/config.toml supervisor.watchdog_interval = {v:?}"),
            ));
        }
    }
    out
}

#[test]
fn timespan_parser_reads_systemd_forms() {
    assert_eq!(systemd_timespan("30s"), Duration::from_secs(30));
    assert_eq!(systemd_timespan("30"), Duration::from_secs(30));
    assert_eq!(systemd_timespan("1min 30s"), Duration::from_secs(90));
    assert_eq!(systemd_timespan("500ms"), Duration::from_millis(500));
}

#[test]
fn watchdog_outlasts_the_agent_ping_interval() {
    for (interval, source) in agent_watchdog_intervals() {
        for unit_path in [
            "systemd/trickle-edge.service",
            "systemd/trickle-edge@.service",
        ] {
            let unit = read(unit_path);
            let watchdog = systemd_timespan(&service_value(&unit, "WatchdogSec"));
            assert!(
                watchdog > interval,
                "{unit_path}: WatchdogSec {watchdog:?} must be longer than the agent's ping interval {interval:?} ({source})"
            );
            // One late or lost ping must not get a healthy agent killed (the
            // config documents "keep it under half of WatchdogSec").
            assert!(
                watchdog >= 2 * interval,
                "{unit_path}: WatchdogSec {watchdog:?} leaves no room for one missed ping every {interval:?} ({source})"
            );
        }
    }
}

#[test]
fn units_run_the_agent_as_a_notify_service() {
    let main = read("systemd/trickle-edge.service");
    assert_eq!(service_value(&main, "Type"), "notify");
    assert_eq!(service_value(&main, "NotifyAccess"), "main");
    assert_eq!(
        service_value(&main, "ExecStart"),
        "/usr/bin/trickle-edge run --config /etc/trickle-edge/config.toml"
    );
    assert_eq!(service_value(&main, "User"), "trickle-edge");

    let template = read("systemd/trickle-edge@.service");
    assert_eq!(service_value(&template, "Type"), "notify");
    assert_eq!(
        service_value(&template, "ExecStart"),
        "/usr/bin/trickle-edge run --config /etc/trickle-edge/%i.toml"
    );
    assert_eq!(
        service_value(&main, "WatchdogSec"),
        service_value(&template, "WatchdogSec")
    );

    // The agent exits within 5 s of SIGTERM: systemd must wait longer than
    // that before it sends SIGKILL.
    let stop = systemd_timespan(&service_value(&main, "TimeoutStopSec"));
    assert!(
        stop > Duration::from_secs(5),
        "TimeoutStopSec {stop:?} is not above 5 s"
    );
}

#[test]
fn the_service_user_exists_in_sysusers() {
    let sysusers = read("systemd/sysusers.d/trickle-edge.conf");
    let lines: Vec<Vec<&str>> = sysusers
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        lines
            .iter()
            .any(|f| f.len() >= 2 && f[0] == "u" && f[1] == "trickle-edge"),
        "sysusers.d must create the trickle-edge user"
    );
    for group in ["video", "gpio"] {
        assert!(
            lines
                .iter()
                .any(|f| f.len() >= 3 && f[0] == "m" && f[1] == "trickle-edge" && f[2] == group),
            "sysusers.d must add trickle-edge to {group}"
        );
    }
}
