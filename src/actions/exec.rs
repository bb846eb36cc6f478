//! `type = "exec"`: runs a program for each effect, never through a shell.
//!
//! The item JSON goes to stdin; stdout and stderr are read to the end but
//! only the first `output_cap` bytes are kept, so a child that floods its
//! output neither blocks on a full pipe nor grows our memory. At `timeout`
//! the child's process group is killed and the child reaped, so no zombie
//! and no orphaned grandchild outlives the effect.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::timeout;

use super::config::ExecConfig;
use super::counters::Counters;
use super::error::ActionError;
use super::json::item_json;
use super::queue::Queue;
use crate::rules::Effect;

/// How long to wait for the output pipes to close after the child exited: a
/// grandchild that inherited them may keep them open indefinitely.
const PIPE_GRACE: Duration = Duration::from_secs(1);

/// Finds the program as `run` would start it: a path with a `/` as it is,
/// a bare name through `PATH`. It must be an executable file. Found at
/// check time so a typo is not discovered at the first fire.
pub(crate) fn find_program(output: &str, cfg: &ExecConfig) -> Result<PathBuf, ActionError> {
    use std::os::unix::fs::PermissionsExt;
    let invalid = |reason: String| ActionError::Invalid {
        output: output.into(),
        field: "argv",
        reason,
    };
    let program = cfg.argv.first().map(String::as_str).unwrap_or_default();
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = Path::new(program);
        return match std::fs::metadata(p) {
            Err(e) => Err(invalid(format!("program {program:?}: {e}"))),
            Ok(_) if !executable(p) => Err(invalid(format!(
                "program {program:?} is not an executable file"
            ))),
            Ok(_) => Ok(p.to_path_buf()),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| executable(candidate))
        .ok_or_else(|| {
            invalid(format!(
                "program {program:?} not found in PATH ({})",
                path.to_string_lossy()
            ))
        })
}

pub(crate) fn validate(output: &str, cfg: &ExecConfig) -> Result<(), ActionError> {
    let invalid = |field, reason: &str| ActionError::Invalid {
        output: output.into(),
        field,
        reason: reason.into(),
    };
    match cfg.argv.first() {
        None => return Err(invalid("argv", "must name a program")),
        Some(p) if p.is_empty() => return Err(invalid("argv", "program must not be empty")),
        _ => {}
    }
    if cfg.max_concurrent == 0 {
        return Err(invalid("max_concurrent", "must be at least 1"));
    }
    if cfg.timeout.is_zero() {
        return Err(invalid("timeout", "must be more than 0"));
    }
    Ok(())
}

/// The output's task: at most `max_concurrent` children at once; effects
/// beyond that wait in the queue (which drops the newest when full).
pub(crate) async fn run(
    output: Arc<str>,
    cfg: ExecConfig,
    queue: Arc<Queue>,
    counters: Arc<Counters>,
) {
    let cfg = Arc::new(cfg);
    let slots = Arc::new(Semaphore::new(cfg.max_concurrent));
    // Dropping the set (task aborted) aborts the runs, whose children are
    // killed on drop.
    let mut running = JoinSet::new();
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        while running.try_join_next().is_some() {}
        let Some(effect) = queue.pop().await else {
            break;
        };
        let (output, cfg, counters) = (output.clone(), cfg.clone(), counters.clone());
        running.spawn(async move {
            run_one(&output, &cfg, &effect, &counters).await;
            drop(slot);
        });
    }
    while running.join_next().await.is_some() {}
}

/// What one run produced, for the log line.
struct Captured {
    kept: Vec<u8>,
    total: u64,
}

async fn run_one(output: &str, cfg: &ExecConfig, effect: &Effect, counters: &Counters) {
    let stdin_json = {
        let mut v = serde_json::to_vec(&item_json(&effect.rule, effect.item.as_deref()))
            .unwrap_or_default();
        v.push(b'\n');
        v
    };
    let mut cmd = Command::new(&cfg.argv[0]);
    cmd.args(&cfg.argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            counters.failed();
            tracing::warn!(output, program = %cfg.argv[0], error = %e, "exec: cannot start program");
            return;
        }
    };
    let pid = child.id();
    // If this run is aborted (shutdown deadline, drop), the group dies too.
    let mut group_guard = KillGroupOnDrop(pid);
    // A child that never reads stdin must not block us: write in a task
    // (a broken pipe is fine) and abort it when the child is gone.
    let writer = child.stdin.take().map(|mut stdin| {
        tokio::spawn(async move {
            let _ = stdin.write_all(&stdin_json).await;
        })
    });
    let stdout = child
        .stdout
        .take()
        .map(|r| tokio::spawn(capture(r, cfg.output_cap)));
    let stderr = child
        .stderr
        .take()
        .map(|r| tokio::spawn(capture(r, cfg.output_cap)));

    let (status, timed_out) = match timeout(cfg.timeout, child.wait()).await {
        Ok(status) => (status, false),
        Err(_) => {
            if let Some(pid) = pid {
                kill_group(pid).await;
            }
            let _ = child.start_kill();
            (child.wait().await, true)
        }
    };
    group_guard.0 = None;
    if let Some(w) = writer {
        w.abort();
    }
    let stdout = finish_capture(stdout).await;
    let stderr = finish_capture(stderr).await;

    let show = |c: &Captured| String::from_utf8_lossy(&c.kept).into_owned();
    match status {
        Ok(s) if s.success() && !timed_out => {
            counters.sent();
            tracing::info!(output, rule = %effect.rule, status = %describe(&s), stdout = %show(&stdout), stdout_bytes = stdout.total, stderr = %show(&stderr), stderr_bytes = stderr.total, "exec finished");
        }
        Ok(s) => {
            counters.failed();
            if timed_out {
                counters.timeout();
            }
            tracing::warn!(output, rule = %effect.rule, status = %describe(&s), timed_out, timeout = ?cfg.timeout, stdout = %show(&stdout), stdout_bytes = stdout.total, stderr = %show(&stderr), stderr_bytes = stderr.total, "exec failed");
        }
        Err(e) => {
            counters.failed();
            tracing::warn!(output, rule = %effect.rule, error = %e, "exec: waiting for child failed");
        }
    }
}

fn describe(s: &ExitStatus) -> String {
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => "unknown".into(),
    }
}

/// Reads to EOF, keeping at most `cap` bytes.
async fn capture(mut r: impl AsyncRead + Unpin, cap: usize) -> Captured {
    let mut kept = Vec::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                total += n as u64;
                let room = cap.saturating_sub(kept.len()).min(n);
                kept.extend_from_slice(&buf[..room]);
            }
        }
    }
    Captured { kept, total }
}

async fn finish_capture(task: Option<tokio::task::JoinHandle<Captured>>) -> Captured {
    let empty = || Captured {
        kept: Vec::new(),
        total: 0,
    };
    let Some(mut task) = task else { return empty() };
    match timeout(PIPE_GRACE, &mut task).await {
        Ok(Ok(c)) => c,
        _ => {
            task.abort();
            empty()
        }
    }
}

/// Kills the child's process group unless disarmed (set to `None`).
struct KillGroupOnDrop(Option<u32>);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// SIGKILL to the child's whole process group (it leads its own group).
///
/// Neither std nor tokio can signal a group and this crate carries no libc
/// binding and no unsafe code, so this runs procps `kill` with a fixed argv;
/// if that is missing, `start_kill` still kills the child itself. Swap in
/// `rustix::process::kill_process_group` if such a dependency is admitted.
async fn kill_group(pid: u32) {
    let r = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match timeout(Duration::from_secs(2), r).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::debug!(pid, error = %e, "exec: cannot run `kill` for the process group")
        }
        Err(_) => tracing::debug!(pid, "exec: `kill` for the process group timed out"),
    }
}
