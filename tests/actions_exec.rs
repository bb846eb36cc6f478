//! exec output: timeouts, floods, concurrency, and no shell in between.

mod support;

use std::path::Path;

use serde_json::json;
use support::actions::{build, configs, effect};
use support::time::{PATIENCE, wait_until, wait_until_for};
use support::tmp::temp_dir;
use trickle_edge::procfs::Proc;
use trickle_edge::rules::OutputAction::Deliver;

/// Alive and not a zombie (a process we forgot to reap shows as `Z`).
fn running(pid: u32) -> bool {
    Proc::Pid(pid).is_alive()
}

fn exists(pid: u32) -> bool {
    Proc::Pid(pid).state().is_some()
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn rss_kib() -> u64 {
    Proc::Current.rss_kib().expect("VmRSS in /proc/self/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_command_is_killed_with_its_group_and_reaped() {
    let dir = temp_dir("exec-hang");
    let script = format!(
        "echo $$ > {0}/sh.pid; sleep 100 & echo $! > {0}/sleep.pid; wait",
        dir.display()
    );
    let out = build(
        json!({ "hang": { "type": "exec", "argv": ["/bin/sh", "-c", script], "timeout": "500ms" } }),
    );
    out.dispatch(effect("hang", Deliver, 1));
    wait_until("pid files", || read_pid(&dir.join("sleep.pid")).is_some()).await;
    let sh = read_pid(&dir.join("sh.pid")).unwrap();
    let sleeper = read_pid(&dir.join("sleep.pid")).unwrap();
    wait_until("timeout counted", || {
        let c = out.counters_of("hang").unwrap();
        c.timeouts == 1 && c.failed == 1 && c.sent == 0
    })
    .await;
    // The direct child is reaped by us (no zombie left), the grandchild killed.
    wait_until("child reaped", || !exists(sh)).await;
    wait_until("grandchild killed", || !running(sleeper)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_output_neither_blocks_nor_grows_memory() {
    let out = build(json!({
        "flood": { "type": "exec", "argv": ["head", "-c", "100M", "/dev/zero"], "timeout": "120s" },
        "yes": { "type": "exec", "argv": ["yes"], "timeout": "1s" },
    }));
    let before = rss_kib();
    out.dispatch(effect("flood", Deliver, 1));
    out.dispatch(effect("yes", Deliver, 1));
    wait_until_for(PATIENCE * 4, "100 MB drained, child exited 0", || {
        out.counters_of("flood").unwrap().sent == 1
    })
    .await;
    wait_until("endless flood killed at timeout", || {
        let c = out.counters_of("yes").unwrap();
        c.timeouts == 1 && c.failed == 1
    })
    .await;
    let grown = rss_kib().saturating_sub(before);
    assert!(
        grown < 32 * 1024,
        "memory grew by {grown} KiB while draining a flood"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_max_concurrent_children_run() {
    let dir = temp_dir("exec-conc");
    let trace = dir.join("trace");
    let script = format!("echo + >> {0}; sleep 0.3; echo - >> {0}", trace.display());
    let out = build(
        json!({ "job": { "type": "exec", "argv": ["/bin/sh", "-c", script], "max_concurrent": 2 } }),
    );
    for seq in 0..6 {
        out.dispatch(effect("job", Deliver, seq));
    }
    wait_until("all 6 ran", || out.counters_of("job").unwrap().sent == 6).await;
    let text = std::fs::read_to_string(&trace).unwrap();
    let (mut now, mut peak) = (0i32, 0i32);
    for l in text.lines() {
        now += if l == "+" { 1 } else { -1 };
        peak = peak.max(now);
    }
    assert_eq!(now, 0, "unbalanced trace {text:?}");
    assert!(peak <= 2, "{peak} children ran at once: {text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argv_is_not_interpreted_by_a_shell_and_item_arrives_on_stdin() {
    let dir = temp_dir("exec-argv");
    let canary = dir.join("pwned");
    let literal = format!("$(touch {})", canary.display());
    // The script prints its *argument* ($1) verbatim; had the agent gone
    // through a shell, the substitution would have run before we got here.
    let script = format!(
        "printf '%s' \"$1\" > {0}/arg; cat > {0}/stdin",
        dir.display()
    );
    let out =
        build(json!({ "x": { "type": "exec", "argv": ["/bin/sh", "-c", script, "sh", literal] } }));
    out.dispatch(effect("x", Deliver, 42));
    wait_until("ran", || out.counters_of("x").unwrap().sent == 1).await;
    assert_eq!(std::fs::read_to_string(dir.join("arg")).unwrap(), literal);
    assert!(!canary.exists(), "argument was run by a shell");
    let stdin: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("stdin")).unwrap()).unwrap();
    assert_eq!(stdin["seq"], 42);
    assert_eq!(stdin["rule"], "rule-1");
    assert_eq!(stdin["type"], "detection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_counted() {
    let out = build(json!({
        "nonzero": { "type": "exec", "argv": ["false"] },
        "missing": { "type": "exec", "argv": ["/nonexistent/program"] },
    }));
    out.dispatch(effect("nonzero", Deliver, 1));
    out.dispatch(effect("missing", Deliver, 1));
    wait_until("both failed", || {
        out.counters_of("nonzero").unwrap().failed == 1
            && out.counters_of("missing").unwrap().failed == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_argv_is_rejected_at_build() {
    let cfg = configs(json!({ "x": { "type": "exec", "argv": [] } }));
    let err = trickle_edge::actions::Outputs::build(&cfg).err().unwrap();
    assert_eq!(err.to_string(), "output `x`: `argv`: must name a program");
}
